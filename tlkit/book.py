"""The Jupyter Book: results and performance pages generated from run records, then an
offline HTML build of the executed notebooks with warnings as errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tlkit import TlkitError
from tlkit.course import NOTEBOOKS, load_summary, notebook_id, record_notebook, require
from tlkit.records import KINDS, check_kinds, read_records, to_frame
from tlkit.system import write_json, write_text

REFERENCE = Path("book") / "reference"
GENERATED = Path("book") / "_generated"
REGENERATE = ("tlkit course run --profile cpu --data-dir ../shared/data --weights-dir "
              "../shared/weights --out runs/cpu && tlkit book reference --run runs/cpu")


def md_table(df, columns: dict[str, str], fmt: dict[str, str] | None = None) -> str:
    """A markdown table of chosen DataFrame columns (``{column: header}``)."""
    fmt = fmt or {}
    cols = [c for c in columns if c in df]
    lines = ["| " + " | ".join(columns[c] for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if v is None or (isinstance(v, float) and v != v):
                cells.append("–")
            elif c in fmt:
                cells.append(format(v, fmt[c]))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def published(recs: list[dict], summary: dict | None) -> tuple[list[dict], list[str]]:
    """The records a page may show, and the notebooks left out: a record of a notebook
    whose latest run did not finish ok (failed, skipped, interrupted) is never shown."""
    status = {notebook_id(e["notebook"]): e["status"] for e in (summary or {}).get("notebooks", [])}
    bad = {nb: st for nb, st in status.items() if st != "ok"}
    keep = [r for r in recs if record_notebook(r["path"]) not in bad]
    return keep, [f"{nb} ({st})" for nb, st in sorted(bad.items())]


def _of_kind(df, *kinds: str):
    check_kinds(kinds)
    return df[df["kind"].isin(kinds)]


def run_label(summary: dict | None, recs: list[dict]) -> str:
    """Which run produced a set of results: profile, hardware, date, backend, weights, commit."""
    src = summary or (recs[0] if recs else {})
    hw = src.get("hardware", {})
    device = ", ".join(hw.get("gpus") or []) or f"{hw.get('cpu', '?')} ({hw.get('cores', '?')} cores)"
    profile = (summary or {}).get("profile") or (recs[0].get("params", {}).get("profile") if recs else "?")
    weights = sorted({r.get("weights_source", "random") for r in recs})
    commit = (src.get("git_commit") or "")[:10] or "unknown"
    date = str(src.get("created", ""))[:10]
    return (f"**Run:** `{profile}` profile · **hardware:** {device} · **date:** {date} · "
            f"**backend:** {src.get('backend', '?')} · **tlkit commit:** `{commit}`  \n"
            f"**Weights sources:** " + "; ".join(f"`{w}`" for w in weights))


def _figure(fig, name: str, root: Path, alt: str, caption: str) -> str:
    from tlkit.plots import myst_figure

    return myst_figure(fig, root / GENERATED / f"{name}.png", f"_generated/{name}.png", alt, caption)


def results_section(title: str, recs: list[dict], summary: dict | None, root: Path, key: str) -> str:
    """One run's results: its label, the key lesson in numbers, tables and plots."""
    from tlkit import plots

    recs, left_out = published(recs, summary)
    note = ([f"Records of notebooks that did not finish are left out: {', '.join(left_out)}.", ""]
            if left_out else [])
    if not recs:
        return "\n".join([f"## {title}", "", *note, "No run records found.", ""])
    df = to_frame(recs)
    out = [f"## {title}", "", run_label(summary, recs), "", *note]
    frozen = _of_kind(df, "frozen").sort_values("img_size")
    if len(frozen):
        small = frozen.iloc[0]
        best = frozen.loc[frozen["test_accuracy"].idxmax()]
        frozen_rec = next(r for r in recs if r.get("kind") == "frozen")
        n_train = sum(frozen_rec["dataset"]["counts"]["train"])
        n_test = sum(frozen_rec["dataset"]["counts"]["test"])
        out += [f"Frozen MobileNetV2 ({small['weights']}) on {frozen_rec['dataset']['name']} "
                f"({n_train:,} training and {n_test:,} test images): "
                f"**{small['test_accuracy']:.1%}** test accuracy at {small['img_size']} px against "
                f"**{best['test_accuracy']:.1%}** at {best['img_size']} px.", ""]
        fig = plots.lines(frozen, "img_size", "test_accuracy", title="Frozen MobileNetV2: test accuracy by input size",
                          xlabel="input size (px)", ylabel="test accuracy")
        out.append(_figure(fig, f"{key}_frozen_by_size", root,
                           "Line chart of frozen MobileNetV2 test accuracy against input size",
                           f"Notebook 2 ({key} run): the same frozen weights and head at each input size."))
    main = _of_kind(df, *(k for k in KINDS if k != "ablation")).sort_values(
        ["kind", "img_size", "run"], key=lambda c: c.map(
            {"scratch": 0, "frozen": 1, "finetune": 2, "comparison": 3}) if c.name == "kind" else c)
    out += ["### All runs of notebooks 1–4", "",
            md_table(main, {"run": "run", "model": "model", "weights": "weights", "img_size": "input px",
                            "train_accuracy": "train acc", "val_accuracy": "val acc",
                            "test_accuracy": "test acc", "gap_train_test_accuracy": "train−test gap",
                            "wall_seconds": "wall s"},
                     {"train_accuracy": ".3f", "val_accuracy": ".3f", "test_accuracy": ".3f",
                      "gap_train_test_accuracy": "+.3f", "wall_seconds": ".0f"}), ""]
    fig = plots.split_accuracies(main, label="run", title="Train, validation and test accuracy per run")
    out.append(_figure(fig, f"{key}_splits", root,
                       "Grouped bars of train, validation and test accuracy for every run",
                       f"Gaps at a glance ({key} run)."))
    comp = _of_kind(df, "comparison")
    if len(comp):
        out += ["### Nine-model comparison (notebook 4)", "",
                "Rows marked *random (from scratch)* had no ImageNet weights available and are not "
                "transfer results.", "",
                md_table(comp.sort_values(["weights", "test_accuracy"], ascending=[True, False]),
                         {"model": "model", "weights": "weights", "backbone_params": "parameters",
                          "images_per_second": "extraction img/s", "wall_seconds": "wall s",
                          "test_accuracy": "test acc"},
                         {"backbone_params": ",.0f", "images_per_second": ".0f", "wall_seconds": ".0f",
                          "test_accuracy": ".3f"}), ""]
        fig = plots.compare(comp, "backbone_params", "test_accuracy", label="model", hue="weights", logx=True,
                            title="Test accuracy against backbone parameters",
                            xlabel="backbone parameters (log scale)", ylabel="test accuracy")
        out.append(_figure(fig, f"{key}_comparison", root,
                           "Scatter plot of test accuracy against parameters per backbone, by weights source",
                           f"Notebook 4 ({key} run): transfer and from-scratch rows are marked apart."))
    abl = _of_kind(df, "ablation")
    if len(abl):
        out += ["### Ablations (notebook 5)", "",
                md_table(abl, {"run": "ablation", "train_accuracy": "train acc", "val_accuracy": "val acc",
                               "test_accuracy": "test acc", "gap_train_val_accuracy": "train−val gap"},
                         {"train_accuracy": ".3f", "val_accuracy": ".3f", "test_accuracy": ".3f",
                          "gap_train_val_accuracy": "+.3f"}), ""]
    if summary:
        import pandas as pd

        out += ["### Wall time per notebook", "",
                md_table(pd.DataFrame(summary["notebooks"]), {"notebook": "notebook", "status": "status",
                                                          "seconds": "seconds"}, {"seconds": ".0f"}), ""]
    return "\n".join(out)


def write_results_page(root: Path, run: Path | None) -> Path:
    """book/results.md: the committed reference runs, then this build's run."""
    parts = ["# Results", "",
             "Every number and chart on this page is generated from run records (JSON files written "
             "by the notebooks) when the book is built; none is typed by hand. Each section says "
             "which run produced it.", "",
             f"The reference results come from a `cpu`-profile run committed under "
             f"`{REFERENCE.as_posix()}/`. To regenerate them:", "", "```bash", REGENERATE, "```", ""]
    for ref in sorted((root / REFERENCE).glob("*/records")):
        folder = ref.parent
        if folder.name == "bench":
            continue
        parts.append(results_section(f"Reference run: {folder.name} profile", read_records(ref),
                                     load_summary(folder), root, f"ref_{folder.name}"))
    if run is not None:
        parts.append(results_section("This build's run", read_records(run / "records"), load_summary(run),
                                     root, "this_run"))
    return write_text("\n".join(parts) + "\n", root / "book" / "results.md")


def write_performance_page(root: Path, run: Path | None) -> Path:
    """book/performance.md from the committed reference bench.json (and the run's, if any)."""
    from tlkit.bench import bench_markdown

    parts = ["# Performance", "",
             "Benchmarks written by `tlkit bench` (`bench.json`); the page shows the machine each "
             "came from. Goals are checked by the benchmark, not by timed tests.", ""]
    found = False
    for p in sorted((root / REFERENCE).glob("*/bench.json")) + (
            [run / "bench.json"] if run is not None and (run / "bench.json").is_file() else []):
        try:
            bench = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TlkitError(f"{p} is not a bench.json ({e}): rerun 'tlkit bench' or delete it") from e
        parts.append(bench_markdown(bench, root / GENERATED, "_generated", title=f"{p.parent.name}"))
        found = True
    if not found:
        parts.append("No benchmark results yet: run `tlkit bench --suite cpu --data-dir ../shared/data "
                     "--weights-dir ../shared/weights --out book/reference/bench`.")
    return write_text("\n".join(parts) + "\n", root / "book" / "performance.md")


def save_reference(run: str | Path, root: str | Path = ".") -> Path:
    """Copy a course run's records and summary into book/reference/<profile>/ (to commit)."""
    run, root = Path(run), Path(root)
    summary = _finished_summary(run)
    recs = read_records(run / "records")  # every file checked before anything is replaced
    dest = root / REFERENCE / summary["profile"]
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "records").mkdir(parents=True)
    for r in recs:
        p = Path(r["path"])
        target = dest / "records" / p.relative_to(run / "records")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
    write_json(summary, dest / "summary.json")
    return dest


def _finished_summary(run: Path) -> dict:
    """The summary of a course run in which every notebook ran and finished ok."""
    summary = load_summary(run)
    if summary is None:
        raise TlkitError(f"{run} has no summary.json: give the --out folder of 'tlkit course run'")
    status = {notebook_id(e["notebook"]): e["status"] for e in summary["notebooks"]}
    bad = [f"{notebook_id(n)} ({status.get(notebook_id(n), 'not run')})" for n in NOTEBOOKS
           if status.get(notebook_id(n)) != "ok"]
    if bad:
        raise TlkitError(f"notebooks of {run} did not all finish ok: {', '.join(bad)}; rerun them "
                         f"with 'tlkit course run --profile {summary.get('profile')} --out {run} --resume'")
    return summary


def build_book(run: str | Path | None = "runs/smoke", root: str | Path = ".", log=print) -> Path:
    """Copy a run's executed notebooks into book/notebooks/, generate the results and
    performance pages, and build the HTML offline with warnings as errors."""
    require("jupyter_book")
    root = Path(root).resolve()
    if not (root / "_config.yml").is_file():
        raise TlkitError(f"{root} has no _config.yml: pass --root (the repository root)")
    if not run:
        raise TlkitError("no course run given: pass --run, the --out folder of 'tlkit course run'")
    run_dir = Path(run).resolve()
    _finished_summary(run_dir)
    if not all((run_dir / f"{n}.ipynb").is_file() for n in NOTEBOOKS):
        raise TlkitError(f"executed notebooks missing in {run_dir}: run 'tlkit course run --out {run}'")
    dest = root / "book" / "notebooks"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for n in NOTEBOOKS:
        shutil.copy2(run_dir / f"{n}.ipynb", dest / f"{n}.ipynb")
    if (root / GENERATED).exists():
        shutil.rmtree(root / GENERATED)
    write_results_page(root, run_dir)
    write_performance_page(root, run_dir)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root),
           "--warningiserror", "--nitpick", "--keep-going", "--all"]
    log("building the book: " + " ".join(cmd[3:]), flush=True)
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TlkitError("the book build failed:\n" + (proc.stdout + proc.stderr)[-4000:])
    index = root / "_build" / "html" / "index.html"
    log(f"book: {index}", flush=True)
    return index
