"""The Jupyter Book: results and performance pages generated from run records, then an
offline HTML build of the executed notebooks with warnings as errors.

The module is also a Sphinx extension of the book (``_config.yml``: ``sphinx.extra_extensions``):
the Colab launch button of a notebook page opens the course notebook, as its badge does."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tlkit import TlkitError
from tlkit.course import (NOTEBOOKS, book_config, colab_link, load_summary, notebook_id, record_notebook,
                          require, source_notebooks)
from tlkit.markup import md_code, md_text
from tlkit.records import (KINDS, RANDOM_HEAD, RecordError, check_kinds, read_records, study, to_frame,
                           trained_label, weights_label)
from tlkit.system import write_text

REFERENCE = Path("book") / "reference"
PAGES = Path("book") / "notebooks"  # the executed notebooks the book's pages are built from
GENERATED = Path("book") / "_generated"
REFERENCE_PROFILES = ("gpu", "cpu")  # the book shows the first of these that is committed
REGENERATE = ("tlkit course run --profile cpu --data-dir ../shared/data --weights-dir "
              "../shared/weights --out runs/cpu && tlkit book reference --run runs/cpu")
MAX_NOTEBOOK_BYTES = 2_000_000  # an executed notebook committed as the reference
# An absolute path on somebody's machine (what a committed file must not name).
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:home|root|Users|tmp|work|mnt|srv|content|private|var)/[^\s\"'\\]*")
BANNER_ID = "tlkit-run-banner"


def md_table(df, columns: dict[str, str], fmt: dict[str, str] | None = None) -> str:
    """A markdown table of chosen DataFrame columns (``{column: header}``); cells show their
    values literally (:func:`~tlkit.markup.md_text`)."""
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
                cells.append(md_text(v))
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
    device = ", ".join(hw.get("gpus") or []) or f"{hw.get('cpu', '?')} ({hw.get('cores', '?')} CPU cores)"
    profile = (summary or {}).get("profile") or (recs[0].get("params", {}).get("profile") if recs else "?")
    weights = sorted({trained_label(r) for r in recs})
    commit = (src.get("git_commit") or "")[:10] or "unknown"
    return "\n".join([f"- **Run:** {md_code(profile)} profile, {md_text(str(src.get('created', ''))[:10])}, "
                      f"tlkit commit {md_code(commit)}",
                      f"- **Hardware:** {md_text(device)}; Keras backend {md_text(src.get('backend', '?'))}",
                      "- **Models:** " + "; ".join(map(md_text, weights))])


def _figure(fig, name: str, root: Path, alt: str, caption: str) -> str:
    from tlkit.plots import myst_figure

    return myst_figure(fig, root / GENERATED / f"{name}.png", f"_generated/{name}.png", alt, caption)


def _chosen(rows):
    """The index of the row with the highest validation accuracy (the test set plays no part
    in a choice), or of the highest test accuracy when a row has no validation accuracy."""
    on = "val_accuracy" if "val_accuracy" in rows and rows["val_accuracy"].notna().all() else "test_accuracy"
    return rows[on].idxmax()


def _lessons(recs: list[dict], df) -> list[str]:
    """The course's headline comparisons, computed from the records: the best fine-tuned and
    the best frozen model (on all training images, chosen by :func:`_chosen`) against the CNN
    from scratch."""
    from tlkit import findings

    full = df["train_images"].max()

    # a fine-tuned run has a backbone that learned (notebook 3's head-only phase does not count)
    tuned = df["kind"].eq("finetune") & ~df.index.map(lambda i: bool(recs[i].get("model", {}).get("frozen")))

    def top(kind: str) -> dict | None:
        rows = df[(tuned if kind == "finetune" else df["kind"].eq(kind)) & df["train_images"].eq(full)]
        return recs[int(_chosen(rows))] if len(rows) else None

    scratch = top("scratch")
    if scratch is None:
        return []
    lines = []
    for kind, what in (("finetune", "The best fine-tuned MobileNetV2"), ("frozen", "The best frozen MobileNetV2")):
        other = top(kind)
        if other is not None:
            found = findings.compare(other, scratch, f"{what} ({other['name']})", "the CNN from scratch")
            lines.append(f"- {md_text(found)}")
    return ["**The headline comparisons**, computed from these records:", "", *lines, ""] if lines else []


def _listing(values, fmt: str) -> str:
    """Distinct values in words: ``96``, ``96 and 128``, ``32, 96 and 128``."""
    words = [format(v, fmt) for v in sorted(set(values))]
    return " and ".join(filter(None, [", ".join(words[:-1]), words[-1]])) if words else "?"


def _comparison_scope(recs: list[dict], comp) -> str:
    """What notebook 4's measured rows are, from their records: how many of the notebook's
    rows (its ``models_to_compare`` and the width variants), on how many training images, at
    which input size."""
    from tlkit.comparison import comparison_entries

    listed = {len(comparison_entries(recs[i]["params"]["models_to_compare"])) for i in comp.index
              if "models_to_compare" in recs[i]["params"]}
    of = f" of the {listed.pop()} rows of notebook 4's table" if len(listed) == 1 else ""
    return (f"{len(comp)}{of} {'has' if len(comp) == 1 else 'have'} a measured accuracy: a head trained on each backbone's frozen "
            f"features, on {_listing(comp['train_images'].dropna().astype(int), ',')} training images "
            f"at {_listing(comp['img_size'].dropna(), 'g')} px. A model whose ImageNet weights were not "
            "available has none; notebook 4's page lists every row with its published figures.")


# The methods of a label-efficiency curve point (params["method"]) and what the page calls them.
CURVE_METHODS = {"frozen": "frozen head", "scratch": "CNN from scratch"}


def _data(record: dict) -> tuple[str, str]:
    """A record's data set: its name and the per-class counts of every split."""
    return record["dataset"]["name"], json.dumps(record["dataset"]["counts"], sort_keys=True)


def _curve_records(recs: list[dict]) -> dict[str, list[dict]]:
    """Notebook 2's label-efficiency curve as notebook 2 draws it, by method name: the ablation
    records of the curve study and, as the full-data point of the CNN from scratch, each scratch
    run on the data of a full-data (per_class null) point."""
    points = [r for r in recs if r["kind"] == "ablation" and study(r) == "curve"]
    for r in points:
        if r["params"]["method"] not in CURVE_METHODS:
            raise RecordError(f"{r['path']}: a curve point's method is one of {', '.join(CURVE_METHODS)}, "
                              f"not {r['params']['method']!r}")
    curve = {name: [r for r in points if r["params"]["method"] == m] for m, name in CURVE_METHODS.items()}
    full = {_data(r) for r in points if r["params"]["per_class"] is None}
    curve[CURVE_METHODS["scratch"]] += [r for r in recs if r["kind"] == "scratch" and _data(r) in full]
    return curve


def _label_efficiency(recs: list[dict], root: Path, key: str, who: str) -> list[str]:
    """Notebook 2's label-efficiency curve: test accuracy against labelled images per class."""
    from tlkit import plots
    from tlkit.label_efficiency import curve_frame, two_protocols

    curves = _curve_records(recs)
    if not any(curves.values()):
        return []
    curve = curve_frame(curves)
    frozen = curves[CURVE_METHODS["frozen"]]
    px = "/".join(f"{s:g}" for s in sorted(set(to_frame(frozen)["img_size"]))) if frozen else ""
    wide = curve.pivot_table(index="per_class", columns="method", values="test_accuracy").reset_index()
    pairs = [two_protocols(p, r) for p in frozen for r in recs if r["kind"] == "frozen"]
    notes = [md_text(n) for n in pairs if n]
    fig = plots.lines(curve, "per_class", "test_accuracy", hue="method", logx=True, n="test_images",
                      title="Test accuracy against labelled images per class",
                      xlabel="labelled training images per class (log scale)",
                      ylabel="test accuracy (bars: 95% interval)")
    return ["### Label efficiency (notebook 2)", "",
            f"The frozen head learns on cached {px + '-px ' if px else ''}features; the CNN from scratch is "
            "notebook 1's recipe. Both train on the same seeded subsets of the training split; test "
            "accuracy on the whole test split.", "",
            md_table(wide, {"per_class": "images per class", **{v: v for v in CURVE_METHODS.values()}},
                     {"per_class": ",.0f", **{v: ".3f" for v in CURVE_METHODS.values()}}), "",
            *(f"{n}\n" for n in notes),
            _figure(fig, f"{key}_label_efficiency", root,
                    "Line chart of test accuracy against labelled images per class, frozen head and CNN from scratch",
                    f"Notebook 2 ({who}): how many labels each method needs."), ""]


def _own_images(recs: list[dict], own) -> list[str]:
    """Notebook 7's runs on a folder of photos: their accuracies, then what their 'unknown'
    threshold and data checks found, in computed sentences."""
    from tlkit import findings

    if not len(own):
        return []
    out = ["### Your own images (notebook 7)", "",
           "The appendix's runs on a folder of photos, not on the course's data set: compare them "
           "with each other, not with the runs above.", "",
           md_table(own, {"run": "run", "weights": "weights, training", "img_size": "input px",
                          "train_accuracy": "train acc",
                          "val_accuracy": "val acc", "test_accuracy": "test acc", "wall_seconds": "wall s"},
                    {"train_accuracy": ".3f", "val_accuracy": ".3f", "test_accuracy": ".3f",
                     "wall_seconds": ".0f"}), ""]
    for i in own.index:
        rec = recs[i]
        if "data_checks" in rec:
            out.append(f"- {md_text(rec['name'])}: {md_text(findings.data_checks(rec['data_checks']))}")
        if "unknown" in rec:
            out.append(f"- {md_text(rec['name'])}: {md_text(findings.unknown(**rec['unknown']))}")
    return out + [""]


def results_section(title: str, recs: list[dict], summary: dict | None, root: Path, key: str,
                    who: str) -> str:
    """One run's results (``title``, Markdown, heads it; ``who`` names the run in captions): its
    label, the key lesson in numbers, tables and plots, runs grouped by how many training images
    they learned from. Whatever the records say is escaped where it enters the page."""
    from tlkit import findings, plots

    recs, left_out = published(recs, summary)
    note = ([f"Records of notebooks that did not finish are left out: {', '.join(map(md_text, left_out))}.", ""]
            if left_out else [])
    if not recs:
        return "\n".join([f"## {title}", "", *note, "No run records found.", ""])
    df = to_frame(recs)
    own, df = _of_kind(df, "own"), df[df["kind"] != "own"]  # notebook 7's runs are on other data
    out = [f"## {title}", "", run_label(summary, recs), "", *note]
    out += _lessons(recs, df)
    frozen = _of_kind(df, "frozen")
    frozen = frozen[(frozen["train_images"] == frozen["train_images"].max()) & frozen["read_from"].eq("last layer")
                    & frozen["head"].ne("linear")].sort_values("img_size")  # the size sweep's runs
    if len(frozen):
        small = frozen.iloc[0]
        best = frozen.loc[_chosen(frozen)]
        frozen_rec = recs[int(small.name)]
        n_train = int(small["train_images"])
        n_test = sum(frozen_rec["dataset"]["counts"]["test"])
        source = weights_label(frozen_rec["weights_source"], frozen_rec.get("weights_origin"))
        out += [f"Frozen MobileNetV2 ({md_text(source)}) on {md_text(frozen_rec['dataset']['name'])} "
                f"({n_train:,} training and {n_test:,} test images): "
                f"**{small['test_accuracy']:.1%}** test accuracy at {md_text(small['img_size'])} px against "
                f"**{best['test_accuracy']:.1%}** at {md_text(best['img_size'])} px (the size chosen on validation "
                "accuracy).", ""]
        fig = plots.lines(frozen, "img_size", "test_accuracy", title="Frozen MobileNetV2: test accuracy by input size",
                          xlabel="input size (px)", ylabel="test accuracy (bars: 95% interval)", n="test_images")
        out.append(_figure(fig, f"{key}_frozen_by_size", root,
                           "Line chart of frozen MobileNetV2 test accuracy against input size",
                           f"Notebook 2 ({who}): the same frozen weights and head at each input size."))
    main = _of_kind(df, *(k for k in KINDS if k not in ("ablation", "own"))).sort_values(
        ["kind", "img_size", "run"], key=lambda c: c.map(
            {"scratch": 0, "frozen": 1, "finetune": 2, "comparison": 3}) if c.name == "kind" else c)
    out += ["Runs are grouped by the number of training images they learned from: accuracies from "
            "different data sizes are not comparable. *train acc* is scored on images the model was "
            "trained on, *val acc* and *test acc* on held-out images. *wall s* is what each run's own "
            "step took: a frozen run's feature extraction and head, a fine-tuning run's fine-tuning "
            "alone (its head and features are those of the frozen run before it), a CNN's whole "
            "training.", ""]
    groups = main.groupby(main["train_images"].fillna(0).astype(int), sort=False)
    for n, group in groups:
        heading = f"on {n:,} training images" if n else "(training-set size not recorded)"
        out += [f"### Notebooks 1–4: runs {heading}", "",
                md_table(group, {"run": "run", "weights": "weights, training", "img_size": "input px",
                                 "train_accuracy": "train acc", "val_accuracy": "val acc",
                                 "test_accuracy": "test acc", "gap_train_test_accuracy": "train−test gap",
                                 "wall_seconds": "wall s"},
                         {"train_accuracy": ".3f", "val_accuracy": ".3f", "test_accuracy": ".3f",
                          "gap_train_test_accuracy": "+.3f", "wall_seconds": ".0f"}), ""]
        # one chart per training-set size: accuracies from different data sizes are not comparable
        fig = plots.split_accuracies(group, label="run",
                                     title=f"Train, validation and test accuracy per run {heading}")
        out.append(_figure(fig, f"{key}_splits" + (f"_{n}" if len(groups) > 1 else ""), root,
                           f"Dots of train, validation and test accuracy for every run {heading}",
                           f"Gaps at a glance ({who}, runs {heading})."))
    comp = _of_kind(df, "comparison")
    if len(comp):
        from tlkit.comparison import entry_label

        comp = comp.assign(backbone=[entry_label(recs[i]["model"]["base"], recs[i]["model"]["alpha"])
                                     for i in comp.index])
        random_rows = comp["weights"].eq(RANDOM_HEAD).any()
        out += ["### Model comparison (notebook 4)", "",
                _comparison_scope(recs, comp)
                + (f" Rows marked *{RANDOM_HEAD}* are a random backbone under a trained "
                   "head: neither transfer nor training from scratch." if random_rows else "")
                + " *extraction img/s* is how fast each run pushed the data set's images through the "
                "backbone once to cache their features, not the timed forward pass that notebook 4's "
                "table calls *forward img/s*.", "",
                md_table(comp.sort_values(["weights", "test_accuracy"], ascending=[True, False]),
                         {"backbone": "backbone", "weights": "weights, training", "backbone_params": "parameters",
                          "images_per_second": "extraction img/s",
                          "wall_seconds": "wall s",
                          "test_accuracy": "test acc"},
                         {"backbone_params": ",.0f", "images_per_second": ".0f", "wall_seconds": ".0f",
                          "test_accuracy": ".3f"}), ""]
        spread = findings.spread([recs[i] for i in comp.index], list(comp["backbone"]))
        fig = plots.compare(comp, "backbone_params", "test_accuracy", label="backbone", hue="weights", logx=True,
                            title="Test accuracy against backbone parameters"
                            + (": no two differ beyond the noise" if spread.direction == "none" else ""),
                            xlabel="backbone parameters (log scale)", ylabel="test accuracy (bars: 95% interval)",
                            n="test_images")
        out.append(_figure(fig, f"{key}_comparison", root,
                           "Scatter plot of test accuracy against parameters per backbone, by weights source",
                           f"Notebook 4 ({who}): each backbone's frozen features and trained head, "
                           f"marked by where its weights came from. {md_text(spread)}"))
    out += _label_efficiency(recs, root, key, who)
    out += _own_images(recs, own)
    abl = _of_kind(df, "ablation")
    abl = abl[[study(recs[i]) == "knob" for i in abl.index]]
    if len(abl):
        from tlkit.features import head_setting

        runs = [recs[i] for i in abl.index]
        settings = [head_setting(r["params"]) for r in runs]
        abl = abl.assign(seed=[r.get("seed") for r in runs], same=findings.setting_groups(settings))
        out += ["### Ablations (notebook 5)", "",
                md_table(abl, {"run": "ablation", "seed": "seed", "same": "same setting",
                               "train_accuracy": "train acc", "val_accuracy": "val acc",
                               "test_accuracy": "test acc", "gap_train_val_accuracy": "train−val gap"},
                         {"train_accuracy": ".3f", "val_accuracy": ".3f", "test_accuracy": ".3f",
                          "gap_train_val_accuracy": "+.3f"}), ""]
        for mark in sorted(set(abl["same"]) - {""}):
            same = [i for i, m in enumerate(abl["same"]) if m == mark]
            found = findings.run_to_run([runs[i] for i in same], [runs[i]["name"] for i in same], settings[same[0]],
                                        mark)
            out += [f"- Rows marked {mark} train the same setting: {md_text(found)}", ""]
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
        parts.append(results_section(f"Reference run: {md_text(folder.name)} profile", read_records(ref),
                                     load_summary(folder), root, f"ref_{folder.name}",
                                     f"the reference {folder.name} run"))
    if run is not None:
        parts.append(results_section("This build's run", read_records(run / "records"), load_summary(run),
                                     root, "this_run", "this build's run"))
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
        parts.append(bench_markdown(bench, root / GENERATED, "_generated", title=md_text(p.parent.name)))
        found = True
    if not found:
        parts.append("No benchmark results yet: run `tlkit bench --suite cpu --data-dir ../shared/data "
                     "--weights-dir ../shared/weights --out book/reference/bench`.")
    return write_text("\n".join(parts) + "\n", root / "book" / "performance.md")


def _portable_pairs(run: Path, root: Path, summary: dict) -> list[tuple[str, str]]:
    """Machine paths in a run's files and what a committed copy says instead (longest first)."""
    pairs = [(str(run), f"runs/{run.name}"), (str(root), "."), (str(Path.home()), "~")]
    made_in = subprocess.run(["git", "-C", str(run), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True).stdout.strip()  # the checkout the run was made in, if another
    if made_in:
        pairs.append((made_in, "."))
    for p in (summary.get("data_dir"), summary.get("weights_dir")):
        if p and os.path.isabs(p):
            pairs.append((p, Path(os.path.relpath(p, root)).as_posix()))
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def _relative(text: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


def portable(text: str, pairs: list[tuple[str, str]], name: str) -> str:
    """``text`` with machine paths made relative; an error if one is left."""
    text = _relative(text, pairs)
    left = MACHINE_PATH.search(text)
    if left:
        raise TlkitError(f"{name} still names a machine path ({left.group(0)}): run the course with "
                         "--data-dir and --weights-dir inside or beside the repository")
    return text


def save_reference(run: str | Path, root: str | Path = ".") -> Path:
    """Copy a finished course run (executed notebooks, records, summary) into
    book/reference/<profile>/ to commit, with machine paths made relative.

    Everything is checked and written into a temporary folder first, then swapped in whole.
    """
    run, root = Path(run).resolve(), Path(root).resolve()
    summary = _finished_summary(run)
    missing = [n for n in NOTEBOOKS if not (run / f"{n}.ipynb").is_file()]
    if missing:
        raise TlkitError(f"executed notebooks missing in {run}: {', '.join(missing)}; rerun them "
                         f"with 'tlkit course run --profile {summary.get('profile')} --out {run} --resume'")
    recs = read_records(run / "records")  # every file checked before anything is replaced
    pairs = _portable_pairs(run, root, summary)
    files: dict[str, str] = {}
    for n in NOTEBOOKS:
        text = portable((run / f"{n}.ipynb").read_text(encoding="utf-8"), pairs, f"{n}.ipynb")
        size = len(text.encode("utf-8"))
        if size > MAX_NOTEBOOK_BYTES:
            raise TlkitError(f"{n}.ipynb is {size / 1e6:.1f} MB with its outputs, over the "
                             f"{MAX_NOTEBOOK_BYTES / 1e6:.0f} MB a reference notebook may be: show fewer "
                             "or smaller figures in it")
        files[f"{n}.ipynb"] = text
    for r in recs:
        rel = Path(r["path"]).relative_to(run / "records").as_posix()
        files[f"records/{rel}"] = portable(Path(r["path"]).read_text(encoding="utf-8"), pairs, rel)
    files["summary.json"] = portable(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", pairs,
                                     "summary.json")
    dest = root / REFERENCE / summary["profile"]
    tmp, old = dest.with_name(f".{dest.name}.new"), dest.with_name(f".{dest.name}.old")
    for d in (tmp, old):
        if d.exists():
            shutil.rmtree(d)
    for rel, text in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text, encoding="utf-8")
    read_records(tmp / "records")  # still valid records after the paths changed
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    if old.exists():
        shutil.rmtree(old)
    return dest


def _finished_summary(run: Path, predates: bool = False) -> dict:
    """The summary of a course run in which every notebook ran and finished ok; with
    ``predates``, notebooks the run never ran (added to the course after it) are left out."""
    summary = load_summary(run)
    if summary is None:
        raise TlkitError(f"{run} has no summary.json: give the --out folder of 'tlkit course run'")
    status = {notebook_id(e["notebook"]): e["status"] for e in summary["notebooks"]}
    bad = [f"{notebook_id(n)} ({status.get(notebook_id(n), 'not run')})" for n in NOTEBOOKS
           if status.get(notebook_id(n)) != "ok" and not (predates and notebook_id(n) not in status)]
    if bad:
        raise TlkitError(f"notebooks of {run} did not all finish ok: {', '.join(bad)}; rerun them "
                         f"with 'tlkit course run --profile {summary.get('profile')} --out {run} --resume'")
    return summary


def _ran(run: Path) -> list[str]:
    """The course notebooks a run's summary lists (a run older than a notebook lacks it)."""
    listed = {notebook_id(e["notebook"]) for e in (load_summary(run) or {"notebooks": []})["notebooks"]}
    return [n for n in NOTEBOOKS if notebook_id(n) in listed]


def reference_run(root: str | Path = ".") -> Path:
    """The committed reference run the book shows by default (book/reference/<profile>/); it
    may predate the newest notebooks, whose pages then show them unexecuted."""
    for profile in REFERENCE_PROFILES:
        folder = Path(root) / REFERENCE / profile
        ran = _ran(folder) if (folder / "summary.json").is_file() else []
        if ran and all((folder / f"{n}.ipynb").is_file() for n in ran):
            return folder
    raise TlkitError(f"no reference run with executed notebooks in {REFERENCE.as_posix()}/: make one with "
                     f"'{REGENERATE}', or build from another run with --run DIR")


def _data_words(rec: dict) -> str:
    d = rec.get("dataset", {})
    counts = {k: sum(v) for k, v in d.get("counts", {}).items()}
    train = rec.get("train_images") or counts.get("train")
    sizes = [f"{train:,} train" if train else None, f"{counts['val']:,} validation" if counts.get("val") else None,
             f"{counts['test']:,} test" if counts.get("test") else None]
    return f"{md_text(d.get('name', '?'))} ({' / '.join(s for s in sizes if s)} images)"


def run_banner(summary: dict, recs: list[dict], notebook: str) -> str:
    """The one-line note at the top of a notebook page: which run it shows."""
    mine = [r for r in recs if record_notebook(r["path"]) == notebook_id(notebook)]
    hw = summary.get("hardware", {})
    device = ", ".join(hw.get("gpus") or []) or f"{hw.get('cpu', '?')} ({hw.get('cores', '?')} CPU cores)"
    facts = [f"{md_code(summary.get('profile'))} profile"]
    data = sorted({_data_words(r) for r in mine})
    if data:
        facts.append("data: " + "; ".join(data))
    weights = sorted({trained_label(r) for r in mine})
    if weights:
        facts.append("models: " + "; ".join(map(md_text, weights)))
    # a run folder may hold notebooks run at different commits (``tlkit course run --only``):
    # each page names its own, from its summary entry, else its records, else the summary's
    entry = next((e for e in summary.get("notebooks", []) if e.get("notebook") == notebook), {})
    commits = sorted({r["git_commit"] for r in mine if r.get("git_commit")})
    commit = entry.get("git_commit") or (commits[0] if len(commits) == 1 else summary.get("git_commit"))
    day = entry.get("finished") or summary.get("created", "")
    facts += [md_text(device), md_text(str(day)[:10]), f"tlkit commit {md_code((commit or 'unknown')[:10])}"]
    if summary.get("profile") == "smoke":
        return ("```{warning}\n**This page shows a smoke run** (" + " · ".join(facts) + "): synthetic "
                "shapes and random weights, so its numbers only show that the code runs, not what the "
                "methods achieve.\n```")
    return "```{note}\n**This page shows a real run:** " + " · ".join(facts) + ".\n```"


def unexecuted_banner(summary: dict) -> str:
    """The note at the top of a notebook page that the shown run predates: no outputs."""
    return (f"```{{note}}\n**The reference run predates this notebook** (`{summary.get('profile')}` profile, "
            f"{str(summary.get('created', ''))[:10]}), so its page shows the code without outputs; the "
            f"next regeneration of the reference runs it:\n`{REGENERATE}`.\n```")


# Cell tags that only say how a page shows a cell (Jupyter Book folds or leaves out its code or
# output); the course notebook's tags win over those of an older executed copy.
PRESENTATION_TAGS = ("hide-input", "hide-output", "hide-cell", "remove-input", "remove-output", "remove-cell")


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def presentation_from(nb: dict, course_nb: dict) -> None:
    """Give each cell of executed notebook ``nb`` the :data:`PRESENTATION_TAGS` of the course
    notebook's cell with the same id (a reference run made before a cell was folded shows it
    folded too); its other tags and cells without a counterpart stay as they are."""
    tags = {c.get("id"): [t for t in _tags(c) if t in PRESENTATION_TAGS] for c in course_nb.get("cells", [])}
    for cell in nb.get("cells", []):
        if cell.get("id") in tags:
            kept = [t for t in _tags(cell) if t not in PRESENTATION_TAGS] + tags[cell["id"]]
            cell.setdefault("metadata", {})["tags"] = kept


def _with_banner(src: Path, dest: Path, banner: str, pairs: list[tuple[str, str]],
                 course_nb: Path | None = None) -> None:
    """Copy an executed notebook with the run banner as its second cell and this machine's
    paths made relative (``pairs``, see :func:`portable`); with ``course_nb``, its cells folded
    as the course notebook folds them (:func:`presentation_from`)."""
    nb = json.loads(_relative(src.read_text(encoding="utf-8"), pairs))
    if course_nb is not None and course_nb.is_file():
        presentation_from(nb, json.loads(course_nb.read_text(encoding="utf-8")))
    cell = {"cell_type": "markdown", "id": BANNER_ID, "metadata": {}, "source": banner}
    nb["cells"] = [c for c in nb["cells"] if c.get("id") != BANNER_ID]
    nb["cells"].insert(1 if nb["cells"] else 0, cell)
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        cell.pop("id")
    write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", dest)


def build_book(run: str | Path | None = None, root: str | Path = ".", log=print) -> Path:
    """Build the HTML book offline with warnings as errors: the executed notebooks of a run
    (by default the committed reference run), each with its run banner, and the results and
    performance pages generated from records."""
    require("jupyter_book")
    root = Path(root).resolve()
    if not (root / "_config.yml").is_file():
        raise TlkitError(f"{root} has no _config.yml: pass --root (the repository root)")
    run_dir = Path(run).resolve() if run else reference_run(root)
    is_reference = run_dir.parent == (root / REFERENCE).resolve()
    summary = _finished_summary(run_dir, predates=is_reference)
    ran = _ran(run_dir) if is_reference else NOTEBOOKS
    if not all((run_dir / f"{n}.ipynb").is_file() for n in ran):
        raise TlkitError(f"executed notebooks missing in {run_dir}: run 'tlkit course run --out {run}'")
    recs = read_records(run_dir / "records")
    dest = root / PAGES
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    pairs = _portable_pairs(run_dir, root, summary)
    for n in NOTEBOOKS:
        if n in ran:
            _with_banner(run_dir / f"{n}.ipynb", dest / f"{n}.ipynb", run_banner(summary, recs, n), pairs,
                         root / "notebooks" / f"{n}.ipynb")
        else:  # newer than the reference run: its source, without outputs
            _with_banner(source_notebooks(root / "notebooks") / f"{n}.ipynb", dest / f"{n}.ipynb",
                         unexecuted_banner(summary), pairs)
    if (root / GENERATED).exists():
        shutil.rmtree(root / GENERATED)
    write_results_page(root, None if is_reference else run_dir)
    write_performance_page(root, None if is_reference else run_dir)
    log(f"book pages from {run_dir.relative_to(root) if run_dir.is_relative_to(root) else run_dir}", flush=True)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root),
           "--warningiserror", "--nitpick", "--keep-going", "--all"]
    log("building the book: " + " ".join(cmd[3:]), flush=True)
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TlkitError("the book build failed:\n" + (proc.stdout + proc.stderr)[-4000:])
    index = root / "_build" / "html" / "index.html"
    log(f"book: {index}", flush=True)
    return index


def _colab_opens_the_course_notebook(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """A notebook page's Colab launch button opens the course notebook (``notebooks/NN.ipynb``,
    without outputs): the theme would point it at the executed copy the page is built from
    (:data:`PAGES`), which is not in the repository."""
    page = Path(pagename)
    if page.parent != PAGES or page.name not in NOTEBOOKS:
        return
    config = book_config(app.srcdir)
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []):
            if button.get("text") == "Colab":
                button["url"] = colab_link(page.name, config)


def setup(app) -> dict:
    """The Sphinx extension: runs after the theme adds its launch buttons (priority 501)."""
    app.connect("html-page-context", _colab_opens_the_course_notebook, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
