"""tlkit.course: profiles, the notebooks' parameters cells, and the papermill runner
(failures, skips, --only, --resume) on tiny throwaway notebooks."""
from __future__ import annotations

import ast
import json
import sys
import types
from pathlib import Path

import pytest

import tlkit.course as course
from conftest import ROOT
from tlkit import TlkitError
from tlkit.cli import main
from tlkit.records import read_records

COMMON = {"profile", "seed", "data_dir", "weights_dir", "out_dir"}  # every notebook has these


# --------------------------------------------------------------------------- profiles

def test_resolve_applies_the_profile(capsys):
    ns = {**course.GPU["01"], "profile": "smoke", "seed": 3}
    settings = course.resolve("01", ns)
    for key, value in course.CHANGES["smoke"]["01"].items():
        assert ns[key] == value == settings[key]
    assert ns["label_smoothing"] == course.GPU["01"]["label_smoothing"]  # not in the profile
    assert settings["profile"] == "smoke" and settings["seed"] == 3
    printed = capsys.readouterr().out
    assert printed.startswith("settings: ") and "epochs=3" in printed and "profile='smoke'" in printed
    assert set(settings) == set(course.GPU["01"]) | {"profile", "seed"}


def test_resolve_keeps_values_the_user_changed():
    ns = {**course.GPU["01"], "profile": "smoke", "epochs": 7, "dataset": "flowers"}
    settings = course.resolve("01", ns)
    assert settings["epochs"] == 7 and settings["dataset"] == "flowers"
    assert settings["batch_size"] == course.CHANGES["smoke"]["01"]["batch_size"]


def test_resolve_profile_from_the_environment(monkeypatch):
    monkeypatch.setenv("TLKIT_PROFILE", "cpu")
    ns = {**course.GPU["04"], "profile": None}
    assert course.resolve("04", ns)["img_size"] == course.CHANGES["cpu"]["04"]["img_size"]
    assert ns["profile"] == "cpu"
    monkeypatch.delenv("TLKIT_PROFILE")
    ns = {**course.GPU["04"], "profile": None}
    assert course.resolve("04", ns) == {**course.GPU["04"], "profile": "gpu"}


def test_resolve_unknown_profile():
    with pytest.raises(TlkitError, match="unknown profile 'laptop': choose one of smoke, cpu, gpu"):
        course.resolve("01", {**course.GPU["01"], "profile": "laptop"})


def test_every_profile_change_is_a_setting():
    assert set(course.GPU) == set(course.DEPENDS) == {course.notebook_id(n) for n in course.NOTEBOOKS}
    for profile, changes in course.CHANGES.items():
        assert profile in course.PROFILES
        for nb, values in changes.items():
            assert set(values) <= set(course.GPU[nb]), (profile, nb, set(values) - set(course.GPU[nb]))


@pytest.mark.parametrize("name", course.NOTEBOOKS)
def test_gpu_settings_are_the_parameters_cell(name):
    """One source of truth: course.GPU is what each notebook's parameters cell says."""
    pm = pytest.importorskip("papermill")
    cell = {k: ast.literal_eval(v["default"])
            for k, v in pm.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb")).items()}
    assert COMMON <= set(cell)
    assert {k: v for k, v in cell.items() if k not in COMMON} == course.GPU[course.notebook_id(name)]


# --------------------------------------------------------------------------- the runner

TINY = ["01_first", "02_second", "03_third"]
TINY_DEPENDS = {"01": [], "02": ["01"], "03": ["02"]}


def _valid_record(name: str, accuracy: float) -> dict:
    return {"schema": 1, "kind": "scratch", "name": name, "created": "2026-01-01T00:00:00+00:00",
            "params": {}, "dataset": {"name": "synthetic"}, "model": {"base": "cnn"},
            "weights_source": "random", "history": {}, "wall_seconds": 1.0, "images_per_second": 1.0,
            "seed": 0, "hardware": {"cpu": "test", "cores": 1, "gpus": []}, "backend": "tensorflow",
            "versions": {}, "git_commit": None,
            "metrics": {"train_accuracy": 1.0, "train_loss": 0.1, "test_accuracy": accuracy,
                        "test_loss": 0.5}}


def _tiny_notebook(path: Path, nb: str, log: Path, accuracy: float = 0.5, fail: bool = False) -> None:
    """A notebook that writes one record (``NN_*.json``), notes that it ran, and may fail."""
    import nbformat

    params = nbformat.v4.new_code_cell('profile = None\nout_dir = "."\ndata_dir = None\nweights_dir = None')
    params.metadata["tags"] = ["parameters"]
    body = (f"import pathlib\nfrom tlkit.records import write_record\n"
            f"with open({str(log)!r}, 'a') as f:\n    f.write({nb!r} + '\\n')\n"
            f"write_record({_valid_record(nb, accuracy)!r}, pathlib.Path(out_dir) / 'records' / '{nb}_run.json')\n"
            + ("raise RuntimeError('boom in ' + profile)\n" if fail else ""))
    meta = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"},
            "language_info": {"name": "python"}}
    nbformat.write(nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)], metadata=meta), path)


@pytest.fixture
def tiny_course(tmp_path, monkeypatch):
    """Three tiny source notebooks (02 depends on 01, 03 on 02) in place of the course."""
    monkeypatch.setattr(course, "NOTEBOOKS", TINY)
    monkeypatch.setattr(course, "DEPENDS", TINY_DEPENDS)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # run_course drops it; restored after the test
    src = tmp_path / "src"
    src.mkdir()
    return src, tmp_path / "out", tmp_path / "ran.log"


def _statuses(summary: dict) -> dict[str, str]:
    return {course.notebook_id(r["notebook"]): r["status"] for r in summary["notebooks"]}


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.json"))


def test_runner_failures_only_and_resume(tiny_course):
    pytest.importorskip("papermill")
    src, out, ran = tiny_course
    _tiny_notebook(src / "01_first.ipynb", "01", ran, accuracy=0.61)
    _tiny_notebook(src / "02_second.ipynb", "02", ran, fail=True)
    _tiny_notebook(src / "03_third.ipynb", "03", ran)
    lines = []
    run = dict(out=out, notebooks=src, log=lambda *a, **k: lines.append(" ".join(map(str, a))))

    # 02 fails after writing a record: the record goes aside, 03 is skipped
    s1 = course.run_course("smoke", **run)
    assert _statuses(s1) == {"01": "ok", "02": "failed", "03": "skipped"}
    assert s1["notebooks"][2]["reason"] == "depends on notebook(s) not ok: 02 (failed)"
    assert s1["failed"] == ["02", "03"] and "boom in smoke" in s1["notebooks"][1]["error"]
    assert _names(out / "records") == ["01_run.json"]
    assert _names(out / "failed" / "02_second") == ["02_run.json"]
    assert json.loads((out / "summary.json").read_text()) == s1
    assert any("FAILED in cell" in line and "boom" in line for line in lines)
    assert ran.read_text().split() == ["01", "02"]

    # --only 02 after a fix: 01 keeps its old entry, 03 its old status
    _tiny_notebook(src / "02_second.ipynb", "02", ran)
    s2 = course.run_course("smoke", only=["02"], **run)
    assert _statuses(s2) == {"01": "ok", "02": "ok", "03": "skipped"} and s2["failed"] == ["03"]
    assert s2["notebooks"][0] == s1["notebooks"][0]  # status, seconds and time of the earlier run
    assert s2["seconds"] == round(sum(r["seconds"] for r in s2["notebooks"]), 1)
    assert _names(out / "records") == ["01_run.json", "02_run.json"]
    assert not (out / "failed" / "02_second").exists()
    assert ran.read_text().split() == ["01", "02", "02"]

    # --resume: only the notebook not ok yet runs
    s3 = course.run_course("smoke", resume=True, **run)
    assert _statuses(s3) == {"01": "ok", "02": "ok", "03": "ok"} and s3["failed"] == []
    assert ran.read_text().split() == ["01", "02", "02", "03"]
    assert any("kept (--resume)" in line for line in lines)
    assert "| 03_third | ok |" in (out / "summary.md").read_text()

    # rerunning an ok notebook that now fails: neither its new nor its old record is published
    _tiny_notebook(src / "01_first.ipynb", "01", ran, accuracy=0.99, fail=True)
    s4 = course.run_course("smoke", only=["01"], **run)
    assert _statuses(s4) == {"01": "failed", "02": "ok", "03": "ok"} and s4["failed"] == ["01"]
    assert _names(out / "records") == ["02_run.json", "03_run.json"]
    assert read_records(out / "previous" / "01_first")[0]["metrics"]["test_accuracy"] == 0.61
    assert read_records(out / "failed" / "01_first")[0]["metrics"]["test_accuracy"] == 0.99
    assert s4["notebooks"][0]["records"] == "failed/01_first"


# --------------------------------------------------------------------------- runner, no kernels

def _fake_papermill(monkeypatch, behaviour: dict[str, str], calls: list[str]):
    """papermill whose execute_notebook writes a record per notebook, then does ``behaviour``
    (``ok``, ``fail`` or ``interrupt``) to it."""
    def execute_notebook(input_path, output_path, parameters, **_):
        nb = Path(input_path).name[:2]
        calls.append(nb)
        Path(output_path).write_text("{}")
        (Path(parameters["out_dir"]) / "records" / f"{nb}_run.json").write_text(
            json.dumps(_valid_record(nb, 0.5)))
        if behaviour.get(nb) == "fail":
            raise RuntimeError("boom")
        if behaviour.get(nb) == "interrupt":
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "papermill", types.SimpleNamespace(execute_notebook=execute_notebook))


def _source(tiny_course) -> tuple[Path, Path]:
    src, out, _ = tiny_course
    for name in TINY:
        (src / f"{name}.ipynb").write_text("{}")
    return src, out


def test_interrupted_run_is_recorded_and_resumed(tiny_course, monkeypatch):
    src, out = _source(tiny_course)
    calls: list[str] = []
    _fake_papermill(monkeypatch, {"02": "interrupt"}, calls)
    with pytest.raises(KeyboardInterrupt):
        course.run_course("smoke", out=out, notebooks=src, log=lambda *a, **k: None)
    summary = json.loads((out / "summary.json").read_text())
    assert _statuses(summary) == {"01": "ok", "02": "interrupted"} and summary["failed"] == ["02"]
    assert _names(out / "records") == ["01_run.json"]
    assert _names(out / "failed" / "02_second") == ["02_run.json"]

    _fake_papermill(monkeypatch, {}, calls)
    assert main(["course", "run", "--out", str(out), "--notebooks", str(src), "--resume"]) == 0
    assert calls == ["01", "02", "02", "03"]
    assert _statuses(json.loads((out / "summary.json").read_text())) == {"01": "ok", "02": "ok", "03": "ok"}


def test_killed_notebook_is_not_ok(tiny_course, monkeypatch):
    """A run killed inside a notebook leaves it as 'running' in summary.json, not as ok."""
    src, out = _source(tiny_course)
    seen = {}

    def execute_notebook(input_path, output_path, parameters, **_):
        seen[Path(input_path).name[:2]] = course.load_summary(out)

    monkeypatch.setitem(sys.modules, "papermill", types.SimpleNamespace(execute_notebook=execute_notebook))
    course.run_course("smoke", out=out, notebooks=src, log=lambda *a, **k: None)
    assert _statuses(seen["02"]) == {"01": "ok", "02": "running"} and seen["02"]["failed"] == ["02"]


def test_cli_exit_status_follows_the_summary(tiny_course, monkeypatch, capsys):
    src, out = _source(tiny_course)
    _fake_papermill(monkeypatch, {"03": "fail"}, [])
    with pytest.raises(SystemExit) as e:
        main(["course", "run", "--out", str(out), "--notebooks", str(src)])
    assert e.value.code == 1
    assert "FAILED in cell None: RuntimeError: boom" in capsys.readouterr().out


def test_runner_injects_only_what_every_parameters_cell_defines(tiny_course, monkeypatch):
    """With test_gpu_settings_are_the_parameters_cell: the runner sets no name that a notebook's
    parameters cell lacks, so a notebook opened without the runner (Jupyter, Colab; the profile
    from $TLKIT_PROFILE) runs the code the course run checked."""
    src, out = _source(tiny_course)
    injected = []

    def execute_notebook(input_path, output_path, parameters, **_):
        injected.append(set(parameters))

    monkeypatch.setitem(sys.modules, "papermill", types.SimpleNamespace(execute_notebook=execute_notebook))
    course.run_course("smoke", out=out, notebooks=src, data_dir=str(src), weights_dir=str(src),
                      log=lambda *a, **k: None)
    assert len(injected) == len(TINY) and all(names <= COMMON for names in injected)
    assert {"profile", "out_dir", "data_dir", "weights_dir"} <= injected[0]


def test_runner_refuses_mixing_profiles_and_unknown_notebooks(tiny_course, monkeypatch):
    src, out = _source(tiny_course)
    _fake_papermill(monkeypatch, {}, [])
    course.run_course("smoke", out=out, notebooks=src, log=lambda *a, **k: None)
    with pytest.raises(TlkitError, match="holds a 'smoke' profile run: pass --profile smoke"):
        course.run_course("cpu", out=out, notebooks=src, only=["02"])
    with pytest.raises(TlkitError, match="unknown notebook.* 2 for --only: choose from 01, 02, 03"):
        course.run_course("smoke", out=out, notebooks=src, only=["2"])
    (out / "summary.json").write_text("{trunc")
    with pytest.raises(TlkitError, match="summary.json is not a course summary"):
        course.run_course("smoke", out=out, notebooks=src, resume=True)


def test_course_run_without_papermill(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "papermill", None)  # import papermill -> ImportError
    assert main(["course", "run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "tlkit: error: papermill is needed" in err and "pip install 'tlkit[course]'" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_record_notebook():
    assert course.record_notebook("runs/x/records/02_frozen_img32.json") == "02"
    assert course.record_notebook("cnn__synthetic__img32_record.json") is None
    assert course.record_notebook("09_other.json") is None
