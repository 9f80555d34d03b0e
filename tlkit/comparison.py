"""Model comparison (notebook 4): which rows to compare, what each backbone costs here,
the comparison table with published facts beside measured ones, and computed sentences.

A reporting module: it reads the registry (:mod:`tlkit.models`), counts FLOPs
(:mod:`tlkit.flops`), labels weights from run records and words results with
:mod:`tlkit.findings`; no core module imports it.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from tlkit import findings
from tlkit.flops import forward_flops
from tlkit.markup import si
from tlkit.models import build_extractor, get_spec
from tlkit.records import trained_label

WIDTH_VARIANTS: list[tuple[str, float]] = [("mobilenetv2", 0.35), ("mobilenet", 0.25)]
NOT_AVAILABLE = "weights not available offline"


def comparison_entries(names: Sequence[str], widths: Sequence[tuple[str, float]] = tuple(WIDTH_VARIANTS)
                       ) -> list[tuple[str, float | None]]:
    """(model, alpha) of each comparison row: ``names`` at full width, then the width variants."""
    out: list[tuple[str, float | None]] = []
    for name in names:
        cfg = get_spec(name).config()
        out.append((cfg.name, cfg.alpha))
    for name, alpha in widths:
        if (get_spec(name).name, alpha) not in out:
            out.append((get_spec(name).name, alpha))
    return out


def entry_label(name: str, alpha: float | None = None) -> str:
    """A row's model name: ``mobilenetv2`` at full width, ``mobilenetv2 alpha 0.35`` otherwise."""
    return name if alpha in (None, 1.0) else f"{name} alpha {alpha:g}"


def is_transfer(label: str) -> bool:
    """True for a row whose backbone carries ImageNet weights."""
    return label.startswith("ImageNet weights")


def throughput(step: Callable[[], object], batch_size: int, *, seconds: float = 2.0,
               min_batches: int = 5, warmup: int = 2,
               clock: Callable[[], float] = time.perf_counter) -> float:
    """Images/s of ``step``, a call that runs one batch of ``batch_size`` images to the end.

    ``warmup`` untimed calls first (tracing, compiling, autotuning), then calls until at least
    ``seconds`` have passed and ``min_batches`` were timed: a fixed time, since on a GPU a
    few batches take milliseconds and their timing is mostly launch overhead.
    """
    for _ in range(warmup):
        step()
    batches, start = 0, clock()
    while True:
        step()
        batches += 1
        took = clock() - start
        if took >= seconds and batches >= min_batches:
            return batches * batch_size / took


def measure_backbone(name: str, img_size: int, alpha: float | None = None,
                     input_shape: tuple[int, int, int] = (32, 32, 3), batch_size: int = 64,
                     seconds: float = 2.0) -> dict:
    """Cost of one registry extractor at ``img_size``: parameters (no top), forward FLOPs of
    one image (:func:`tlkit.flops.forward_flops`) and inference images/s on this machine in
    the precision in force, timed by :func:`throughput` over at least ``seconds``.

    Built with random weights: the cost of a forward pass does not depend on the weights.
    """
    extractor, _ = build_extractor(name, input_shape, img_size, "none", alpha)
    x = np.random.default_rng(0).uniform(0, 255, (batch_size, *input_shape)).astype("float32")
    ips = throughput(lambda: extractor.predict_on_batch(x), batch_size, seconds=seconds)
    return {"model": name, "alpha": alpha, "img_size": img_size,
            "backbone_params": int(extractor.count_params()), "forward_flops": forward_flops(extractor),
            "images_per_second": round(ips, 1), "batch_size": batch_size}


def comparison_row(name: str, alpha: float | None, cost: dict, record: dict | None = None,
                   missing: str = NOT_AVAILABLE) -> dict:
    """One row of the comparison table: published facts (with their source), cost measured
    here (``images_per_second``: :func:`measure_backbone`'s timed forward pass), what the
    weights are, and the test accuracy (with the number of its test images) and extraction
    throughput (every image of the data set through the backbone once) of the frozen features
    + head run (``record``, a run record) where there is one; ``missing`` says why there is none."""
    facts = get_spec(name).facts(alpha)
    acc = record["metrics"]["test_accuracy"] if record is not None else None
    weights = trained_label(record) if record is not None else missing
    return {"model": entry_label(name, alpha), "base": name, "alpha": alpha,
            "published_top1": facts.top1 if facts else None,
            "published_params_m": facts.params_m if facts else None,
            "published_size": facts.size if facts else None,
            "source": facts.source if facts else "no published figure recorded",
            "backbone_params": cost["backbone_params"], "gflops": cost["forward_flops"] / 1e9,
            "img_size": cost["img_size"], "images_per_second": cost["images_per_second"],
            "forward_batch": cost.get("batch_size"),
            "extraction_images_per_second": record.get("images_per_second") if record is not None else None,
            "weights": weights, "test_accuracy": acc,
            "test_images": findings.test_n(record) if record is not None else None}


def cost_sentence(a: dict, b: dict) -> str:
    """How two comparison rows differ in cost: FLOPs ratio and the timed forward pass."""
    ratio = a["gflops"] / b["gflops"] if b["gflops"] else float("inf")
    return (f"{a['model']} needs {ratio:.1f} times the FLOPs of {b['model']} at {a['img_size']} px "
            f"({a['gflops']:.3g} against {b['gflops']:.3g} GFLOPs) and its timed forward pass runs at "
            f"{a['images_per_second']:.0f} against {b['images_per_second']:.0f} images/s here.")


def comparison_takeaways(rows: Sequence[dict], recs: dict[str, dict]) -> list[str]:
    """Computed sentences on a comparison: which rows were measured, which measured model is
    chosen on validation accuracy and its test accuracy (:func:`tlkit.findings.best`), what it
    costs against the cheapest measured one, and what the width variants give up
    (:func:`tlkit.findings.compare`). ``recs`` maps a row's model to its run record."""
    measured = [r for r in rows if r["model"] in recs]
    missing = sorted({r["weights"] for r in rows if r["model"] not in recs})
    kinds = ", ".join(sorted({r["weights"] for r in measured})) or "none"
    out = [f"{len(measured)} of {len(rows)} rows have a measured test accuracy (weights: {kinds})"
           + (f"; the other rows: {', '.join(missing)}." if missing else ".")]
    if not measured:
        return out
    names = [r["model"] for r in measured]
    chosen = findings.best([recs[n] for n in names], names)  # chosen on validation accuracy
    said = [str(chosen)]
    top = measured[chosen.numbers["chosen"]]
    cheap = min(measured, key=lambda r: r["gflops"])
    if cheap is not top:
        said.append(cost_sentence(top, cheap))
    by_model = {r["model"]: r for r in measured}
    for name, alpha in WIDTH_VARIANTS:
        full, narrow = entry_label(name), entry_label(name, alpha)
        if full in by_model and narrow in by_model:
            said.append(f"{findings.compare(recs[full], recs[narrow], full, narrow)} "
                        + cost_sentence(by_model[full], by_model[narrow]))
    if not all(is_transfer(r["weights"]) for r in measured):  # never read as transfer
        said = [f"Not transfer ({kinds}): {s}" for s in said]
    return out + said


def costs_table(costs: Sequence[dict]):
    """What each backbone costs here (:func:`measure_backbone`'s dicts), one row a model:
    parameters and FLOPs per image written readably (``1.42 GFLOP``), and the images per
    second of the timed forward pass (:func:`forward_column` names it)."""
    import pandas as pd

    size = costs[0]["img_size"] if costs else "?"
    return pd.DataFrame([{
        "model": entry_label(c["model"], c["alpha"]),
        "backbone params (no top)": si(c["backbone_params"]),
        f"FLOPs per image at {size} px": si(c["forward_flops"], "FLOP"),
        forward_column([{"forward_batch": c.get("batch_size")} for c in costs]):
            f"{c['images_per_second']:.0f}",
    } for c in costs]).set_index("model")


def facts_table(entries: Sequence[tuple[str, float | None]]):
    """The published ImageNet facts of each (model, alpha), with their full source."""
    import pandas as pd

    rows = []
    for name, alpha in entries:
        f = get_spec(name).facts(alpha)
        rows.append({"model": entry_label(name, alpha), "ImageNet top-1": _pct(f.top1 if f else None),
                     "at px": f.size if f else None,
                     "params (with top)": si(f.params_m * 1e6) if f else "—",
                     "source": f.source if f else "no published figure recorded"})
    return pd.DataFrame(rows).set_index("model")


def _pct(x: float | None) -> str:
    return "—" if x is None or x != x else f"{x:.1%}"


def forward_column(rows: Sequence[dict]) -> str:
    """The name of the timed forward pass's column: with its batch size when the rows say it."""
    batches = {r.get("forward_batch") for r in rows}
    batch = batches.pop() if len(batches) == 1 else None
    return f"forward img/s (batch of {batch})" if batch else "forward img/s"


def comparison_table(rows: Sequence[dict]):
    """The comparison rows as a table to show: published facts with a short source, cost
    counted and measured here, the weights, and test accuracy ("—" where none was measured).
    Two throughputs, named apart: the timed forward pass of every row, and the extraction of
    the data set's features by a row's run."""
    import pandas as pd

    size = rows[0]["img_size"] if rows else "?"
    return pd.DataFrame([{
        "model": r["model"],
        "ImageNet top-1 (published)": _pct(r["published_top1"]) + (
            f" at {r['published_size']} px" if r["published_size"] not in (None, 224) else ""),
        "params (published, with top)": "—" if r["published_params_m"] is None
        else si(r["published_params_m"] * 1e6),
        "source": r["source"].split(",")[0] if r["published_top1"] is not None else r["source"],
        "backbone params (here, no top)": si(r["backbone_params"]),
        f"FLOPs at {size} px": si(r["gflops"] * 1e9, "FLOP"),
        forward_column(rows): f"{r['images_per_second']:.0f}",
        "extraction img/s (data set)": "—" if r["extraction_images_per_second"] is None
        else f"{r['extraction_images_per_second']:.0f}",
        "weights": r["weights"],
        "test accuracy (frozen features + head)": _pct(r["test_accuracy"]),
    } for r in rows]).set_index("model")
