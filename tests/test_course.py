"""tlkit.course: profiles, the notebooks' parameters cells, and the papermill runner
(failures, skips, --only, --resume) on tiny throwaway notebooks."""
from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

import tlkit.course as course
from conftest import ROOT
from tlkit import TlkitError
from tlkit.cli import main
from tlkit.records import read_records
from tlkit.system import Terminated

COMMON = {"profile", *course.RUN_SETTINGS}  # every notebook has these


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


@pytest.mark.parametrize("gpus, profile", [(["/physical_device:GPU:0"], "gpu"), ([], "cpu")])
def test_resolve_profile_follows_the_hardware(monkeypatch, capsys, gpus, profile):
    """No profile and no $TLKIT_PROFILE: the gpu settings only on a GPU, with one line that
    says which profile and how to choose the other."""
    monkeypatch.delenv("TLKIT_PROFILE", raising=False)
    monkeypatch.setattr(course, "accelerators", lambda: gpus)
    ns = {**course.GPU["04"], "profile": None}
    assert course.resolve("04", ns) == {**course.profile_settings("04", profile), "profile": profile}
    lines = capsys.readouterr().out.splitlines()
    other = "cpu" if profile == "gpu" else "gpu"
    assert len(lines) == 2 and lines[0].startswith(f'profile: "{profile}" (')
    assert f'profile = "{other}" in the parameters cell or TLKIT_PROFILE={other}' in lines[0]


def test_a_chosen_profile_does_not_look_at_the_hardware(monkeypatch):
    def no_probe():
        raise AssertionError("the hardware decides only when no profile is chosen")

    monkeypatch.setattr(course, "accelerators", no_probe)
    assert course.resolve("01", {**course.GPU["01"], "profile": "gpu"})["epochs"] == course.GPU["01"]["epochs"]
    monkeypatch.setenv("TLKIT_PROFILE", "smoke")
    assert course.resolve("01", {**course.GPU["01"], "profile": None})["profile"] == "smoke"


def test_run_first_says_what_to_do_here_and_in_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    local = course.run_first(["01", "02"], "runs/x", "cpu", "to see their gaps here")
    assert local.startswith("Run notebooks 1 and 2 first to see their gaps here, into out_dir='runs/x'")
    assert "01_cnn_from_scratch.ipynb, 02_frozen_mobilenetv2.ipynb" in local
    assert "tlkit course run --profile cpu --only 01 02 --out runs/x (it needs pip install 'tlkit[course]')" in local
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    colab = course.run_first(["03"], "runs/x", "gpu", "to serve its model")
    assert colab.startswith("Run notebook 3 first to serve its model: open 03_fine_tuning.ipynb from the Colab badge")
    assert "use_drive = True" in colab and "tlkit course run" not in colab and "papermill" not in colab


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
def test_parameters_cell_is_generated_from_the_table(name):
    """One source of truth: each notebook's parameters cell is the text course.GPU generates,
    and papermill reads the table's values back from it."""
    nbformat = pytest.importorskip("nbformat")
    pm = pytest.importorskip("papermill")
    path = ROOT / "notebooks" / f"{name}.ipynb"
    cells = [c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1 and cells[0].outputs == []
    assert cells[0].source == course.parameters_cell(course.notebook_id(name)), (
        f"{path.name}'s parameters cell differs from tlkit/course.py's table: change the table, "
        "then run python -m tlkit.course --sync-parameters")
    cell = {k: ast.literal_eval(v["default"]) for k, v in pm.inspect_notebook(str(path)).items()}
    assert {k: v for k, v in cell.items() if k not in COMMON} == course.GPU[course.notebook_id(name)]
    assert {k: cell[k] for k in course.RUN_SETTINGS} == course.RUN_SETTINGS and cell["profile"] is None


def test_a_changed_table_value_changes_the_cell(tmp_path, monkeypatch):
    """A value changed in the table no longer matches the cell until the cells are synced;
    the sync rewrites only the parameters cell (its id kept) and only where it changed."""
    nbformat = pytest.importorskip("nbformat")
    before = course.parameters_cell("01")
    monkeypatch.setitem(course.GPU, "01", {**course.GPU["01"], "lr": 1e-3, "epochs": 100_000})
    after = course.parameters_cell("01")
    assert after != before and "lr = 1e-3\n" in after and "epochs = 100_000\n" in after
    for name in course.NOTEBOOKS:
        (tmp_path / f"{name}.ipynb").write_bytes((ROOT / "notebooks" / f"{name}.ipynb").read_bytes())
    assert course.sync_parameters(tmp_path) == ["01_cnn_from_scratch"]
    old = nbformat.read(ROOT / "notebooks" / "01_cnn_from_scratch.ipynb", as_version=4)
    new = nbformat.read(tmp_path / "01_cnn_from_scratch.ipynb", as_version=4)
    changed = [(a.id, b.id) for a, b in zip(old.cells, new.cells) if a != b]
    assert len(old.cells) == len(new.cells) and len(changed) == 1 and changed[0][0] == changed[0][1]
    cell = next(c for c in new.cells if c.id == changed[0][1])
    assert "parameters" in cell.metadata["tags"] and cell.source == after
    assert course.sync_parameters(tmp_path) == []


def test_parameters_cell_lines():
    """Readable values, notes beside short lines, a long list wrapped with its note above."""
    assert [course._literal(v) for v in ("a", 4e-3, 1e-4, 0.1, 100_000, 1000, None, [32, 64])] == [
        '"a"', "4e-3", "1e-4", "0.1", "100_000", "1000", "None", "[32, 64]"]
    cell = course.parameters_cell("04").splitlines()
    assert cell[0].startswith("profile = None") and cell[0].index("#") == course.NOTE_COLUMN
    i = next(i for i, line in enumerate(cell) if line.startswith("models_to_compare = ["))
    assert cell[i - 1].startswith("# ") and cell[i + 1].startswith(" " * len("models_to_compare = ["))
    assert max(len(line) for line in cell[i:i + 2]) <= course.CELL_WIDTH


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


# --------------------------------------------------------------------------- one runner a folder

def _write_lock(out: Path, **holder) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lock = out / course.LOCK
    lock.write_text(json.dumps({"host": socket.gethostname(), "started": "2026-01-01T00:00:00",
                                "since": time.time(), "token": "0" * 16, **holder}))
    return lock


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_runner_on_the_same_out_is_refused(tiny_course, monkeypatch):
    src, out = _source(tiny_course)
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def execute_notebook(input_path, output_path, parameters, **_):
        calls.append(Path(input_path).name[:2])
        if threading.current_thread() is not threading.main_thread():
            entered.set()
            release.wait(30)

    monkeypatch.setitem(sys.modules, "papermill", types.SimpleNamespace(execute_notebook=execute_notebook))
    first = threading.Thread(target=course.run_course, args=("smoke",),
                             kwargs=dict(out=out, notebooks=src, log=lambda *a, **k: None))
    first.start()
    try:
        assert entered.wait(30)
        holder = json.loads((out / course.LOCK).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(TlkitError, match=f"{out} is in use by another course run \\(pid "
                           f"{os.getpid()} on .*, started .*\\): wait for it to finish"):
            course.run_course("smoke", out=out, notebooks=src, log=lambda *a, **k: None)
    finally:
        release.set()
        first.join(30)
    assert calls == ["01", "02", "03"]  # the second runner ran nothing
    assert not (out / course.LOCK).exists()  # released by the first


def test_a_lock_of_another_machine_or_unreadable_is_refused(tiny_course, monkeypatch):
    src, out = _source(tiny_course)
    _fake_papermill(monkeypatch, {}, [])
    lock = _write_lock(out, pid=os.getpid(), host="elsewhere")
    with pytest.raises(TlkitError, match=f"in use by a course run on another machine \\(pid "
                       f"{os.getpid()} on elsewhere, .*delete {lock} if that run is over"):
        course.run_course("smoke", out=out, notebooks=src)
    lock.write_text("{half")
    with pytest.raises(TlkitError, match=f"{lock} is not a course lock"):
        course.run_course("smoke", out=out, notebooks=src)
    assert lock.read_text() == "{half"


def test_a_killed_runner_leaves_no_record_in_records(tiny_course, monkeypatch):
    """kill -9 during notebook 02: the next run reports the stale lock, marks 02 interrupted
    and moves its partial record to failed/; --resume then reruns 02 and 03."""
    src, out = _source(tiny_course)
    script = f"""
import sys, time, types
from pathlib import Path
import tlkit.course as course
course.NOTEBOOKS, course.DEPENDS = {TINY!r}, {TINY_DEPENDS!r}
course.environment = lambda: {{"hardware": {{"cpu": "test", "gpus": []}}, "backend": "test"}}

def execute_notebook(input_path, output_path, parameters, **_):
    nb = Path(input_path).name[:2]
    (Path(parameters["out_dir"]) / "records" / (nb + "_run.json")).write_text("{{}}")
    if nb == "02":
        time.sleep(300)

sys.modules["papermill"] = types.SimpleNamespace(execute_notebook=execute_notebook)
course.run_course("smoke", out=sys.argv[1], notebooks=sys.argv[2])
"""
    proc = subprocess.Popen([sys.executable, "-c", script, str(out), str(src)])
    try:
        deadline = time.monotonic() + 120
        while not (out / "records" / "02_run.json").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, "the runner stopped early"
            time.sleep(0.1)
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
    assert _statuses(course.load_summary(out)) == {"01": "ok", "02": "running"}
    assert (out / course.LOCK).exists() and _names(out / "records") == ["01_run.json", "02_run.json"]

    calls: list[str] = []
    lines: list[str] = []
    _fake_papermill(monkeypatch, {}, calls)
    s = course.run_course("smoke", only=["01"], out=out, notebooks=src,
                          log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert any(f"note: {out / course.LOCK} was left by a course run that is gone (pid {proc.pid} on "
               in line and "taking over" in line for line in lines)
    assert any("02_second was left running by a course run that is gone: marked interrupted, its "
               "records moved to failed/02_second" in line for line in lines)
    assert _statuses(s) == {"01": "ok", "02": "interrupted"} and s["failed"] == ["02"]
    assert s["notebooks"][1]["records"] == "failed/02_second"
    assert _names(out / "records") == ["01_run.json"]
    assert _names(out / "failed" / "02_second") == ["02_run.json"]
    assert "| 02_second | interrupted |" in (out / "summary.md").read_text()

    assert main(["course", "run", "--out", str(out), "--notebooks", str(src), "--resume"]) == 0
    assert calls == ["01", "02", "03"]
    assert _names(out / "records") == ["01_run.json", "02_run.json", "03_run.json"]
    assert not (out / course.LOCK).exists()


def test_a_stale_lock_whose_pid_is_reused_is_taken_over(tiny_course, monkeypatch):
    """A lock naming a pid that runs again, but a process started after the lock was taken
    (after a reboot, say), is stale too."""
    src, out = _source(tiny_course)
    _fake_papermill(monkeypatch, {}, [])
    for holder in ({"pid": _dead_pid()}, {"pid": os.getpid(), "since": time.time() - 10**6}):
        _write_lock(out, **holder)
        lines: list[str] = []
        course.run_course("smoke", out=out, notebooks=src, log=lambda *a, **k: lines.append(a[0]))
        assert any("was left by a course run that is gone" in line for line in lines)
        assert not (out / course.LOCK).exists()


def test_sigterm_stops_the_runner_like_ctrl_c(tiny_course, monkeypatch):
    src, out = _source(tiny_course)

    def execute_notebook(input_path, output_path, parameters, **_):
        if Path(input_path).name.startswith("02"):
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                raise RuntimeError("SIGTERM would kill the runner outright")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here

    monkeypatch.setitem(sys.modules, "papermill", types.SimpleNamespace(execute_notebook=execute_notebook))
    with pytest.raises(Terminated):
        course.run_course("smoke", out=out, notebooks=src, log=lambda *a, **k: None)
    assert _statuses(course.load_summary(out)) == {"01": "ok", "02": "interrupted"}
    assert not (out / course.LOCK).exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_an_unwritable_out_is_one_line(tiny_course, monkeypatch, capsys):
    src, out = _source(tiny_course)
    _fake_papermill(monkeypatch, {}, [])
    out.parent.mkdir(exist_ok=True)
    out.write_text("a file")
    assert main(["course", "run", "--out", str(out), "--notebooks", str(src)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tlkit: error: --out {out} is not a writable folder") and "\n" not in err
