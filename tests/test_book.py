"""tlkit.book: the generated results and performance pages, parsed; reference runs; the
build's checks before any work."""
from __future__ import annotations

import json
import re
import sys
from html import escape
from pathlib import Path

import pytest

from tlkit import TlkitError
from tlkit.book import (build_book, reference_run, results_section, run_banner, save_reference,
                        write_performance_page, write_results_page)
from tlkit.cli import main
from tlkit.course import NOTEBOOKS
from tlkit.records import make_record, write_record

RUNS = [  # file, kind, name, img_size, (train, val, test) accuracy
    ("01_cnn_scratch.json", "scratch", "01 CNN from scratch", 32, (0.91, 0.62, 0.611)),
    ("02_frozen_img32.json", "frozen", "02 frozen MobileNetV2, 32 px", 32, (0.72, 0.55, 0.543)),
    ("02_frozen_img96.json", "frozen", "02 frozen MobileNetV2, 96 px", 96, (0.88, 0.80, 0.812)),
    ("03_head_only.json", "finetune", "03 phase 1: head only", 96, (0.99, 0.90, 0.905)),
    ("04_resnet50.json", "comparison", "04 resnet50", 96, (0.85, 0.70, 0.702)),
    ("05_ablation_dropout_0.5.json", "ablation", "dropout = 0.5", 96, (0.80, 0.74, 0.735)),
]


DATA = {"name": "cifar10", "class_names": ["a", "b"], "counts": {"train": [600, 400], "test": [50, 50]}}


def _write_run(folder: Path, statuses: dict[str, str]) -> Path:
    """A course run folder: the records of RUNS and a summary with these statuses."""
    for file, kind, name, size, (tr, va, te) in RUNS:
        rec = make_record(kind=kind, name=name,  # an ablation declares its knob, a comparison its width
                          params={"profile": "cpu", "img_size": size,
                                  **({"knob": "dropout", "dropout": 0.5} if kind == "ablation" else {}),
                                  **({"models_to_compare": ["resnet50", "mobilenetv2"]}
                                     if kind == "comparison" else {})},
                          dataset=DATA,
                          model={"base": {"scratch": "cnn", "comparison": "resnet50"}.get(kind, "mobilenetv2"),
                                 "img_size": size,
                                 "frozen": kind in ("frozen", "comparison", "ablation") or "head only" in name,
                                 "backbone_params": 2_257_984,
                                 "weights_source": "random" if kind == "scratch" else "imagenet:file",
                                 **({"alpha": None} if kind == "comparison" else {})},
                          metrics={"train_accuracy": tr, "val_accuracy": va, "test_accuracy": te,
                                   "train_loss": 0.2, "val_loss": 0.5, "test_loss": 0.6,
                                   "gap_train_test_accuracy": tr - te, "gap_train_val_accuracy": tr - va},
                          wall_seconds=12.0, images_per_second=345.0, seed=0)
        write_record(rec, folder / "records" / file)
    notebooks = [{"notebook": n, "status": statuses.get(n[:2], "ok"), "seconds": 10.0 * i}
                 for i, n in enumerate(NOTEBOOKS, 1)]
    summary = {"profile": "cpu", "seconds": 150.0, "notebooks": notebooks,
               "failed": [n["notebook"][:2] for n in notebooks if n["status"] != "ok"],
               "created": "2026-01-02T03:04:05+0000", "hardware": {"cpu": "Test CPU", "cores": 2, "gpus": []},
               "backend": "tensorflow", "git_commit": "0123456789abcdef"}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _tables(md: str) -> dict[str, list[dict[str, str]]]:
    """Each markdown table under its nearest heading: a list of {header: cell} rows."""
    out, heading, rows, header = {}, None, None, None
    for line in md.splitlines() + [""]:
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header, rows = cells, []
            elif not set("".join(cells)) <= set("-"):
                rows.append(dict(zip(header, cells)))
            continue
        if header is not None:
            out[heading] = rows
            header = None
    return out


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "book").mkdir()
    return tmp_path


def test_results_page_numbers(root):
    run = _write_run(root / "run", {})
    page = write_results_page(root, run).read_text()
    section = page.split("## This build's run", 1)[1]
    assert "**54.3%** test accuracy at 32 px against **81.2%** at 96 px" in section
    assert "(1,000 training and 100 test images)" in section
    # the headline comparison is computed: 0.905 is notebook 3's head-only phase, not fine-tuning
    assert ("- The best frozen MobileNetV2 (02 frozen MobileNetV2, 96 px) beats the CNN from scratch by "
            "20.1 points (test accuracy 81.2% against 61.1%") in section
    assert "fine-tuned" not in section
    tables = _tables(section)
    runs = {r["run"]: r for r in tables["Notebooks 1–4: runs on 1,000 training images"]}
    assert set(runs) == {n for _, k, n, _, _ in RUNS if k != "ablation"}
    for _, kind, name, size, (tr, va, te) in RUNS:
        if kind != "ablation":
            row = runs[name]
            assert (row["train acc"], row["val acc"], row["test acc"]) == (f"{tr:.3f}", f"{va:.3f}", f"{te:.3f}")
            assert row["input px"] == str(size) and row["train−test gap"] == f"{tr - te:+.3f}"
    assert [r["backbone"] for r in tables["Model comparison (notebook 4)"]] == ["resnet50"]
    assert tables["Model comparison (notebook 4)"][0]["extraction img/s"] == "345"
    assert "not the timed forward pass that notebook 4's table calls *forward img/s*" in section
    # what the run measured, from its records: resnet50 and mobilenetv2, then the two width variants
    assert ("1 of the 4 rows of notebook 4's table has a measured accuracy: a head trained on each "
            "backbone's frozen features, on 1,000 training images at 96 px.") in section
    assert tables["Model comparison (notebook 4)"][0]["parameters"] == "2,257,984"
    assert tables["Ablations (notebook 5)"] == [{"ablation": "dropout = 0.5", "seed": "0", "same setting": "",
                                                 "train acc": "0.800",
                                                 "val acc": "0.740", "test acc": "0.735",
                                                 "train−val gap": "+0.060"}]
    walls = tables["Wall time per notebook"]
    assert [(r["notebook"], r["status"], r["seconds"]) for r in walls][:2] == [
        ("01_cnn_from_scratch", "ok", "10"), ("02_frozen_mobilenetv2", "ok", "20")]
    assert (root / "book" / "_generated" / "this_run_splits.png").stat().st_size > 1000


def test_results_page_never_shows_a_failed_notebook(root):
    """Records still named after a notebook whose latest run failed (or was skipped) stay out."""
    run = _write_run(root / "run", {"02": "failed", "03": "skipped"})
    section = write_results_page(root, run).read_text().split("## This build's run", 1)[1]
    assert "Records of notebooks that did not finish are left out: 02 (failed), 03 (skipped)." in section
    assert "Frozen MobileNetV2" not in section  # no key sentence or chart from notebook 2
    runs = [r["run"] for r in _tables(section)["Notebooks 1–4: runs on 1,000 training images"]]
    assert runs == ["01 CNN from scratch", "04 resnet50"]
    assert "03 phase 1" not in section and "81.2%" not in section


def test_results_page_reference_runs_and_bad_records(root):
    _write_run(root / "book" / "reference" / "cpu", {"05": "failed"})
    page = write_results_page(root, None).read_text()
    assert "## Reference run: cpu profile" in page and "This build's run" not in page
    assert "Ablations" not in page and "left out: 05 (failed)" in page
    (root / "book" / "reference" / "cpu" / "records" / "02_frozen_img32.json").write_text('{"schema": 1}')
    with pytest.raises(TlkitError, match="02_frozen_img32.json .*not a valid tlkit run record"):
        write_results_page(root, None)


def _bench(total: float) -> dict:
    return {"suite": "cpu", "created": "2026-01-02T00:00:00+00:00", "backend": "tensorflow",
            "precision": "float32", "git_commit": "abcdef0123456789",
            "hardware": {"cpu": "Test CPU", "cores": 2, "gpus": []},
            "smoke_course_seconds": {"total": total, "status": "ok"},
            "cpu_kernels": {"cpu_bf16": True, "cnn_train": {
                "onednn_off_float32": 100.0, "onednn_on_float32": 123.4, "onednn_on_bfloat16": 150.0,
                "precision_choice": "mixed_bfloat16"}}}


def test_performance_page(root):
    assert "No benchmark results yet" in write_performance_page(root, None).read_text()
    ref = root / "book" / "reference" / "bench"
    ref.mkdir(parents=True)
    (ref / "bench.json").write_text(json.dumps(_bench(301.5)))
    run = root / "run"
    run.mkdir()
    (run / "bench.json").write_text(json.dumps(_bench(99.0)))
    page = write_performance_page(root, run).read_text()
    assert "No benchmark results yet" not in page
    assert re.findall(r"^## (\w+): `cpu` suite", page, re.M) == ["bench", "run"]
    goals = [r for h in _tables(page) for r in _tables(page)[h] if "measured" in r]
    assert [r["measured"] for r in goals if r["goal"] == "fast CPU kernels"] == [
        "CNN training 100.0 → 123.4 img/s with oneDNN (bfloat16: 150.0; faster here: mixed_bfloat16; "
        "the scratch part trained in not run)"] * 2
    smoke = [r for r in goals if r["goal"].startswith("smoke course")]
    assert [(r["measured"], r["verdict"]) for r in smoke] == [("302 s (ok)", "**not met**"), ("99 s (ok)", "**met**")]
    assert "| cnn train | 100.0 | 123.4 | 150.0 | mixed_bfloat16 |" in page
    assert "**Machine:** Test CPU (2 cores)" in page
    (ref / "bench.json").write_text("{cut")
    with pytest.raises(TlkitError, match="bench.json is not a bench.json"):
        write_performance_page(root, run)


def test_save_reference_keeps_only_finished_runs(root):
    failed = _write_run(root / "failed-run", {"03": "failed"})
    with pytest.raises(TlkitError, match=r"did not all finish ok: 03 \(failed\).*--resume"):
        save_reference(failed, root)
    assert not (root / "book" / "reference").exists()
    run = _write_run(root / "run", {})
    (run / "records" / ".ipynb_checkpoints").mkdir()
    (run / "records" / ".ipynb_checkpoints" / "01_cnn_scratch-checkpoint.json").write_text("{}")
    with pytest.raises(TlkitError, match="executed notebooks missing"):
        save_reference(run, root)
    for n in NOTEBOOKS:
        (run / f"{n}.ipynb").write_text(json.dumps({"cells": [], "metadata": {"papermill": {
            "input_path": str(root / "notebooks" / f"{n}.ipynb"), "output_path": str(run / f"{n}.ipynb")}}}))
    dest = save_reference(run, root)
    assert sorted(p.name for p in (dest / "records").iterdir()) == sorted(r[0] for r in RUNS)
    assert json.loads((dest / "summary.json").read_text())["profile"] == "cpu"
    assert reference_run(root) == dest
    meta = json.loads((dest / "01_cnn_from_scratch.ipynb").read_text())["metadata"]["papermill"]
    assert meta == {"input_path": "./notebooks/01_cnn_from_scratch.ipynb",
                    "output_path": "runs/run/01_cnn_from_scratch.ipynb"}  # no machine paths


def test_save_reference_refuses_machine_paths_and_big_notebooks(root, monkeypatch):
    run = _write_run(root / "run", {})
    for n in NOTEBOOKS:
        (run / f"{n}.ipynb").write_text("{}")
    (run / "03_fine_tuning.ipynb").write_text('{"text": "saved in /home/student/models/m.keras"}')
    with pytest.raises(TlkitError, match=r"03_fine_tuning.ipynb still names a machine path \(/home/student/"):
        save_reference(run, root)
    (run / "03_fine_tuning.ipynb").write_text("{}")
    monkeypatch.setattr("tlkit.book.MAX_NOTEBOOK_BYTES", 10)
    (run / "02_frozen_mobilenetv2.ipynb").write_text('{"outputs": "' + "x" * 20 + '"}')
    with pytest.raises(TlkitError, match="02_frozen_mobilenetv2.ipynb is 0.0 MB .* show fewer"):
        save_reference(run, root)
    assert not (root / "book" / "reference").exists()
    with pytest.raises(TlkitError, match="no reference run with executed notebooks .*--run DIR"):
        reference_run(root)


def test_run_banner_says_which_run_a_page_shows(root):
    run = _write_run(root / "run", {})
    from tlkit.records import read_records

    recs, summary = read_records(run / "records"), json.loads((run / "summary.json").read_text())
    recs = [{**r, "git_commit": "0123456789abcdef"} for r in recs]  # as the summary's run wrote them
    banner = run_banner(summary, recs, "02_frozen_mobilenetv2")
    assert banner.startswith("```{note}\n**This page shows a real run:** `cpu` profile")
    assert "data: cifar10 (1,000 train / 100 test images)" in banner
    assert "models: ImageNet weights, frozen" in banner and "Test CPU (2 CPU cores)" in banner
    assert "2026-01-02" in banner and "`0123456789`" in banner
    smoke = run_banner({**summary, "profile": "smoke"}, recs, "01_cnn_from_scratch")
    assert smoke.startswith("```{warning}\n**This page shows a smoke run**")
    assert "models: trained from scratch (whole network)" in smoke and "only show that the code runs" in smoke


def test_run_banner_names_each_pages_own_commit(root):
    """A run folder completed with --only holds notebooks of two commits: each page says its own."""
    run = _write_run(root / "run", {})
    from tlkit.records import read_records

    recs, summary = read_records(run / "records"), json.loads((run / "summary.json").read_text())
    entries = [{**e, "git_commit": "fedcba9876543210", "finished": "2026-03-04T05:06:07+0000"}
               if e["notebook"] == "02_frozen_mobilenetv2" else e for e in summary["notebooks"]]
    summary = {**summary, "notebooks": entries}
    two = run_banner(summary, recs, "02_frozen_mobilenetv2")
    assert "`fedcba9876`" in two and "2026-03-04" in two and "`0123456789`" not in two
    one = run_banner(summary, recs, "01_cnn_from_scratch")  # no commit in its entry: its records'
    assert f"`{recs[0]['git_commit'][:10]}`" in one and "2026-01-02" in one
    no_records = run_banner(summary, [], "01_cnn_from_scratch")  # nothing else: the summary's
    assert "`0123456789`" in no_records


def test_book_build_without_jupyter_book(monkeypatch, capsys, root):
    monkeypatch.setitem(sys.modules, "jupyter_book", None)  # import jupyter_book -> ImportError
    assert main(["book", "build", "--run", str(root / "run"), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "tlkit: error: jupyter_book is needed" in err and "pip install 'tlkit[course]'" in err
    assert "Traceback" not in err


def test_book_build_refuses_a_run_with_failed_notebooks(root):
    pytest.importorskip("jupyter_book")
    (root / "_config.yml").write_text("title: test\n")
    run = _write_run(root / "run", {"04": "failed", "05": "skipped"})
    for n in NOTEBOOKS:
        (run / f"{n}.ipynb").write_text("{}")
    with pytest.raises(TlkitError, match=r"04 \(failed\), 05 \(skipped\)"):
        build_book(run, root)
    assert not (root / "book" / "notebooks").exists() and not (root / "book" / "results.md").exists()


def _curve_point(run: Path, method: str, per_class: int | None, acc: float) -> Path:
    """A label-efficiency curve point of notebook 2 (per_class None: every training image)."""
    counts = DATA["counts"] if per_class is None else {**DATA["counts"], "train": [per_class] * 2}
    rec = make_record(kind="ablation", name=f"02 curve {method} {per_class or 'all'}/class",
                      params={"profile": "cpu", "method": method, "per_class": per_class,
                              "train_images": sum(counts["train"]),
                              **({"img_size": 96} if method == "frozen" else {})},
                      dataset={**DATA, "counts": counts},
                      model={"base": "mobilenetv2", "img_size": 96} if method == "frozen" else {"base": "cnn"},
                      metrics={"train_accuracy": 1.0, "test_accuracy": acc, "train_loss": 0.1, "test_loss": 1.0})
    return write_record(rec, run / "records" / f"02_curve_{method}_{per_class or 'all'}.json")


def test_results_page_label_efficiency_curve(root):
    """Notebook 2's curve as notebook 2 draws it: its points, its own full-data frozen point (not
    the size sweep's run) and the CNN from scratch on the same data; notebook 5's ablations apart."""
    run = _write_run(root / "run", {})
    for method, per_class, acc in (("frozen", 10, 0.5), ("scratch", 10, 0.2), ("frozen", None, 0.8)):
        _curve_point(run, method, per_class, acc)
    section = write_results_page(root, run).read_text().split("## This build's run", 1)[1]
    rows = _tables(section)["Label efficiency (notebook 2)"]
    assert [(r["images per class"], r["frozen head"], r["CNN from scratch"]) for r in rows] == [
        ("10", "0.500", "0.200"), ("500", "0.800", "0.611")]
    assert "cached 96-px features" in section
    # the size sweep's 96-px run is the same head on the same features: both numbers, named
    assert ("A frozen head on all 1,000 training images at 96 px, from the same cached features, has two "
            "test accuracies here: 0.800 on the label-efficiency curve") in section
    assert "and 0.812 in the size sweep" in section
    assert [r["ablation"] for r in _tables(section)["Ablations (notebook 5)"]] == ["dropout = 0.5"]
    assert (root / "book" / "_generated" / "this_run_label_efficiency.png").is_file()
    other = json.loads((run / "records" / "01_cnn_scratch.json").read_text())
    other["dataset"]["counts"]["train"] = [300, 200]  # notebook 1 on other data: not the curve's point
    (run / "records" / "01_cnn_scratch.json").write_text(json.dumps(other))
    rows = _tables(write_results_page(root, run).read_text())["Label efficiency (notebook 2)"]
    assert [(r["images per class"], r["CNN from scratch"]) for r in rows] == [("10", "0.200"), ("500", "–")]


def test_sections_are_found_by_kind_and_fields_not_file_names(root):
    """The same records under names that say nothing of their notebook give the same page."""
    named = _write_run(root / "named", {})
    _curve_point(named, "frozen", 10, 0.5)
    _curve_point(named, "frozen", None, 0.8)
    page = write_results_page(root, named).read_text().split("## This build's run", 1)[1]
    anonymous = root / "anonymous"
    (anonymous / "records").mkdir(parents=True)
    (anonymous / "summary.json").write_text((named / "summary.json").read_text())
    for i, p in enumerate(sorted((named / "records").iterdir())):
        (anonymous / "records" / f"r{i:02d}.json").write_text(p.read_text())
    assert write_results_page(root, anonymous).read_text().split("## This build's run", 1)[1] == page
    headings = re.findall(r"^### (.+)$", page, re.M)
    assert headings == ["Notebooks 1–4: runs on 1,000 training images", "Model comparison (notebook 4)",
                        "Label efficiency (notebook 2)", "Ablations (notebook 5)", "Wall time per notebook"]
    assert "Frozen MobileNetV2 (ImageNet weights) on cifar10" in page and "**The headline comparisons**" in page


@pytest.mark.parametrize("file, change, problem", [
    ("02_curve_frozen_10.json", lambda r: r["params"].pop("per_class"),
     r"no params\['per_class'\] field \(a curve ablation declares method, per_class, train_images\)"),
    ("02_curve_frozen_10.json", lambda r: r["params"].update(method="frozen head"),
     "a curve point's method is one of frozen, scratch, not 'frozen head'"),
    ("05_ablation_dropout_0.5.json", lambda r: r["params"].pop("knob"),
     r"an ablation's params declare exactly one of 'method' \(curve\), 'knob' \(knob\)"),
    ("04_resnet50.json", lambda r: r["model"].pop("alpha"),
     r"no model\['alpha'\] field \(a comparison record declares it\)"),
])
def test_a_record_without_a_field_its_section_needs_is_an_error(root, file, change, problem):
    """Never a section silently missing: the error names the record file and the field."""
    run = _write_run(root / "run", {})
    _curve_point(run, "frozen", 10, 0.5)
    rec = json.loads((run / "records" / file).read_text())
    change(rec)
    (run / "records" / file).write_text(json.dumps(rec))
    with pytest.raises(TlkitError, match=f"{file}.*{problem}"):
        write_results_page(root, run)


# Markup a record, summary or bench file may carry; every page must show it as text.
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(1)> a|b [link](javascript:alert(1)) $x$"
REPO = Path(__file__).resolve().parents[1]


def _hostile_run(folder: Path) -> Path:
    """A finished run whose records carry :data:`HOSTILE` in their name, data set name and model
    base, whose summary names it as the CPU, and whose bench.json as CPU, backend and precision."""
    run = _write_run(folder, {})
    for p in (run / "records").iterdir():
        rec = json.loads(p.read_text())
        rec["name"] = f"{HOSTILE} {rec['name']}"
        rec["dataset"]["name"] = HOSTILE
        rec["model"]["base"] = f"{HOSTILE} {rec['model']['base']}"
        p.write_text(json.dumps(rec))
    summary = json.loads((run / "summary.json").read_text())
    summary["hardware"]["cpu"] = HOSTILE
    (run / "summary.json").write_text(json.dumps(summary))
    bench = _bench(99.0)
    bench["hardware"]["cpu"] = bench["backend"] = HOSTILE
    bench["cpu_kernels"]["cnn_train"]["precision_choice"] = HOSTILE
    (run / "bench.json").write_text(json.dumps(bench))
    return run


def _rendered(md: str) -> str:
    """A page's Markdown as MyST's parser renders it to HTML, with the book's extensions; the
    bodies of directives (banners, figure captions) rendered as Markdown, as the book does."""
    mdit = pytest.importorskip("myst_parser.parsers.mdit")
    import yaml
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig

    extensions = yaml.safe_load((REPO / "_config.yml").read_text())["parse"]["myst_enable_extensions"]
    parser = mdit.create_md_parser(MdParserConfig(enable_extensions=set(extensions)), RendererHTML)
    return parser.render("\n".join(line for line in md.splitlines() if not line.startswith(("```", ":::"))))


def _no_markup(html: str) -> None:
    """No tag, event handler, link or math from :data:`HOSTILE` in ``html``; its text is there."""
    assert "<script" not in html and "<img" not in html and not re.search(r"<[^>]*onerror", html)
    assert "javascript:alert(1)</a>" not in html and 'href="javascript' not in html
    assert 'class="math' not in html
    assert escape(HOSTILE, quote=False) in html


def test_pages_show_hostile_record_text_literally(root):
    """Record names, data set names and model bases land in sentences, table cells and the
    banner as text: no raw HTML, no extra table cell, no link or math."""
    run = _hostile_run(root / "run")
    results = write_results_page(root, run).read_text()
    assert "alert(1)</script>" not in results and "<img" not in results
    html = _rendered(results.split("## This build's run", 1)[1])
    _no_markup(html)
    for _, _, name, _, _ in RUNS:  # the whole name in one cell of its table
        assert f"<td>{escape(f'{HOSTILE} {name}', quote=False)}</td>" in html
    assert f"<td>{escape(f'{HOSTILE} resnet50', quote=False)}</td>" in html  # the comparison's backbone
    assert f"({escape(HOSTILE, quote=False)} 02 frozen MobileNetV2, 96 px) beats" in html  # a finding
    _no_markup(_rendered(write_performance_page(root, run).read_text().split("## run", 1)[1]))
    from tlkit.records import read_records

    summary = json.loads((run / "summary.json").read_text())
    for n in NOTEBOOKS[:2]:
        _no_markup(_rendered(run_banner(summary, read_records(run / "records"), n)))


def test_markdown_text_and_code_spans():
    from tlkit.markup import md_code, md_text

    assert md_text("01_cnn_from_scratch") == "01_cnn_from_scratch"  # no emphasis inside a word
    assert md_text("_x_ *y* a|b\nc [d](e) `f` \\ &lt;") == (
        r"\_x\_ \*y\* a\|b c \[d\](e) \`f\` \\ &amp;lt;")
    assert (md_code("cpu"), md_code("a``b"), md_code("`x")) == ("`cpu`", "```a``b```", "`` `x ``")


def test_book_build_shows_hostile_record_text_literally(tmp_path):
    """The whole offline build, from records and a summary carrying HTML: no page of the book
    holds a raw tag from them, and the results page shows their text."""
    pytest.importorskip("jupyter_book")
    import shutil

    import nbformat

    root = tmp_path / "repo"
    (root / "book").mkdir(parents=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / f, root / f)
    shutil.copytree(REPO / "_static", root / "_static")
    for p in [*(REPO / "book").glob("*.md"), *(REPO / "book").glob("*.bib")]:
        shutil.copy(p, root / "book" / p.name)
    run = _hostile_run(tmp_path / "run")
    for n in NOTEBOOKS:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {n}")],
                                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"},
                                                "language_info": {"name": "python"}})
        nbformat.write(nb, run / f"{n}.ipynb")
    build_book(run, root, log=lambda *a, **k: None)
    pages = {p.relative_to(root / "_build" / "html").as_posix(): p.read_text(encoding="utf-8")
             for p in (root / "_build" / "html").rglob("*.html")}
    for page, html in pages.items():
        assert "<script>alert" not in html and not re.search(r"<[^>]*onerror=alert", html), page
        assert 'href="javascript:' not in html, page
    shown = escape(HOSTILE, quote=False)
    for page in ["book/results.html", "book/performance.html", *(f"book/notebooks/{n}.html" for n in NOTEBOOKS)]:
        assert shown in pages[page], page


def _own_record(run: Path) -> dict:
    """Notebook 7's run on a folder of photos, with its data checks and threshold."""
    rec = make_record(kind="own", name="07 fine-tuned on photos", params={"profile": "cpu", "stage": "finetune"},
                      dataset={"name": "photos", "class_names": ["cat", "dog"], "counts": {"train": [90, 10]}},
                      model={"base": "mobilenetv2", "img_size": 128, "weights_source": "random"},
                      metrics={"train_accuracy": 0.99, "val_accuracy": 0.9, "test_accuracy": 0.875,
                               "train_loss": 0.1, "test_loss": 0.4},
                      extra={"data_checks": {"duplicates": {"groups": 1, "files": 2, "across_classes": 1,
                                                            "across_splits": 0}, "unreadable": 0,
                                             "near_duplicates": {"threshold": 0.9, "pairs": {"train-test": 3}}},
                             "unknown": {"chosen": {"threshold": 0.7, "target_precision": 0.95, "precision": 0.96,
                                                    "coverage": 0.8, "reached": True, "n": 50}}})
    return write_record(rec, run / "records" / "07_finetune.json")


def test_results_page_keeps_own_images_apart(root):
    """Notebook 7's runs are on other data: a section of their own, not a row of the course's
    tables, and not the largest training set the headline comparisons are made on."""
    run = _write_run(root / "run", {})
    _own_record(run)
    section = write_results_page(root, run).read_text().split("## This build's run", 1)[1]
    tables = _tables(section)
    assert "07 fine-tuned on photos" not in {r["run"] for r in tables["Notebooks 1–4: runs on 1,000 training images"]}
    assert [(r["run"], r["weights, training"], r["test acc"]) for r in tables["Your own images (notebook 7)"]] == [
        ("07 fine-tuned on photos", "random weights, fine-tuned", "0.875")]
    assert "- 07 fine-tuned on photos: Identical files: 1 group(s) (1 across classes" in section
    assert "- 07 fine-tuned on photos: A threshold of 0.70 keeps 96.0% precision" in section
    assert "**The headline comparisons**" in section


def test_the_book_shows_a_notebook_newer_than_the_reference_unexecuted(root, monkeypatch):
    """A reference run made before notebook 7 existed still builds the book: notebook 7's page
    is its source, without outputs, under a note that says so; a --run must have them all."""
    pytest.importorskip("jupyter_book")
    (root / "_config.yml").write_text("title: test\n")
    (root / "notebooks").mkdir()
    for n in NOTEBOOKS:
        (root / "notebooks" / f"{n}.ipynb").write_text(json.dumps(
            {"cells": [{"cell_type": "markdown", "id": "x", "metadata": {}, "source": f"# {n}"}],
             "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    ref = _write_run(root / "book" / "reference" / "cpu", {})
    summary = json.loads((ref / "summary.json").read_text())
    summary["notebooks"] = [e for e in summary["notebooks"] if e["notebook"] != NOTEBOOKS[-1]]
    (ref / "summary.json").write_text(json.dumps(summary))
    for n in NOTEBOOKS[:-1]:
        (ref / f"{n}.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert reference_run(root) == ref
    built = []
    monkeypatch.setattr("tlkit.book.subprocess.run", lambda cmd, **kw: built.append(cmd) or type(
        "Done", (), {"returncode": 0, "stdout": "", "stderr": ""})())
    build_book(root=root, log=lambda *a, **k: None)
    page = json.loads((root / "book" / "notebooks" / f"{NOTEBOOKS[-1]}.ipynb").read_text())
    assert page["cells"][0]["source"] == f"# {NOTEBOOKS[-1]}"
    assert page["cells"][1]["source"].startswith("```{note}\n**The reference run predates this notebook**")
    assert "tlkit book reference" in page["cells"][1]["source"]
    first = json.loads((root / "book" / "notebooks" / f"{NOTEBOOKS[0]}.ipynb").read_text())
    assert "This page shows a real run" in first["cells"][0]["source"]
    older = root / "older-run"
    older.mkdir()
    for p in ref.glob("*.*"):
        (older / p.name).write_bytes(p.read_bytes())
    with pytest.raises(TlkitError, match=rf"did not all finish ok: {NOTEBOOKS[-1][:2]} \(not run\)"):
        build_book(older, root)


def test_headline_runs_are_chosen_on_validation():
    """The results page picks its best run on validation accuracy; test only when a row has none."""
    import pandas as pd

    from tlkit.book import _chosen

    rows = pd.DataFrame({"val_accuracy": [0.70, 0.80, 0.60], "test_accuracy": [0.75, 0.70, 0.90]}, index=[4, 7, 9])
    assert _chosen(rows) == 7
    assert _chosen(rows.assign(val_accuracy=[0.70, None, 0.60])) == 9


def test_ablations_of_the_same_setting_are_marked_with_their_spread(root):
    """Notebook 5's knobs each hold the default setting: the Results page marks those rows as one
    setting and states their spread, run-to-run noise."""
    from tlkit.records import read_records

    folder = root / "run" / "records"
    for i, (knob, kw, seed, val) in enumerate([("dropout", {"dropout": 0.2}, 0, 0.72),
                                               ("dropout", {"dropout": 0.5}, 0, 0.74),
                                               ("weight decay", {"weight_decay": 1e-4}, 1, 0.70)]):
        rec = make_record(kind="ablation", name=f"{knob} = {next(iter(kw.values()))}",
                          params={"profile": "cpu", "knob": knob, **kw}, dataset=DATA,
                          model={"base": "mobilenetv2", "img_size": 96, "frozen": True, "weights_source": "imagenet"},
                          metrics={"train_accuracy": 0.8, "val_accuracy": val, "test_accuracy": val + 0.01,
                                   "train_loss": 0.2, "test_loss": 0.6}, seed=seed)
        write_record(rec, folder / f"05_ablation_{i}.json")
    section = results_section("Run", read_records(folder), None, root, "t", "a test run")
    rows = _tables(section)["Ablations (notebook 5)"]
    assert [(r["ablation"], r["seed"], r["same setting"]) for r in rows] == [
        ("dropout = 0.2", "0", "A"), ("dropout = 0.5", "0", ""), ("weight decay = 0.0001", "1", "A")]
    assert ("- Rows marked A train the same setting: 2 runs of setting A (dropout 0.2, weight decay 0.0001, "
            "use flips on, train fraction 1) differ only in their seeds (0, 1): validation accuracy from 70.0% "
            "to 72.0% (a spread of 2.0 points)") in section


def test_no_results_chart_mixes_training_set_sizes(root):
    """Runs on two training-set sizes get a table and a chart each; notebook 4's chart states
    whether its accuracies differ beyond the noise."""
    from tlkit.records import read_records

    folder = root / "run" / "records"
    for file, kind, name, counts, acc in [("01_cnn_scratch.json", "scratch", "01 CNN", [600, 400], 0.61),
                                          ("04_a.json", "comparison", "04 a", [60, 40], 0.50),
                                          ("04_b.json", "comparison", "04 b", [60, 40], 0.52)]:
        rec = make_record(kind=kind, name=name, params={"profile": "cpu"},
                          dataset={**DATA, "counts": {"train": counts, "test": [50, 50]}},
                          model={"base": "cnn" if kind == "scratch" else name[-1], "img_size": 32, "alpha": None,
                                 "backbone_params": 1000 * len(name), "weights_source": "random"},
                          metrics={"train_accuracy": 0.9, "val_accuracy": acc, "test_accuracy": acc,
                                   "train_loss": 0.2, "test_loss": 0.6}, seed=0)
        write_record(rec, folder / file)
    section = results_section("Run", read_records(folder), None, root, "mix", "a test run")
    assert "### Notebooks 1–4: runs on 1,000 training images" in section
    assert "### Notebooks 1–4: runs on 100 training images" in section
    assert {p.name for p in (root / "book" / "_generated").glob("mix_splits*.png")} == {
        "mix_splits_1000.png", "mix_splits_100.png"}
    assert ("The 2 test accuracies span 50.0% to 52.0% (2.0 points), and no two of them differ clearly"
            in section)


def test_si_writes_large_counts_readably():
    from tlkit.markup import si

    assert si(1416462336) == "1.42 G" and si(1416462336, "FLOP") == "1.42 GFLOP"
    assert (si(2270794), si(12810), si(950), si(0), si(100_000)) == ("2.27 M", "12.8 k", "950", "0", "100 k")
    assert si(999_999) == "1.00 M" and si(-2_500_000) == "-2.50 M"  # the prefix of the rounded value
    assert si(1e18) == "1,000 P" and si(float("nan")) == "nan"


def test_pages_fold_cells_as_the_course_notebook_does():
    """A reference run older than a cell's hide-output tag shows that cell folded too; other
    tags, and cells the course notebook no longer has, are kept."""
    from tlkit.book import presentation_from

    executed = {"cells": [{"id": "a", "metadata": {"tags": ["injected-parameters"]}},
                          {"id": "b", "metadata": {"tags": ["hide-input", "parameters"]}},
                          {"id": "gone", "metadata": {"tags": ["hide-output"]}}, {"metadata": {}}]}
    course_nb = {"cells": [{"id": "a", "metadata": {"tags": ["hide-output"]}},
                           {"id": "b", "metadata": {"tags": ["parameters"]}}]}
    presentation_from(executed, course_nb)
    assert [c["metadata"].get("tags") for c in executed["cells"]] == [
        ["injected-parameters", "hide-output"], ["parameters"], ["hide-output"], None]
