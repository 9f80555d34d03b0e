"""Benchmarks: ``tlkit bench --suite {smoke,cpu,gpu}`` writes bench.json, bench.md and plots.

Timings are reported, never asserted: the goals of the course are listed with the measured
figure beside each, so a slow machine produces a report, not a failure.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tlkit.records import environment
from tlkit.system import write_json

SUITES = {
    # frozen: sizes and training images per class; scratch/baseline: time budgets in seconds
    "smoke": dict(dataset="synthetic", limit=None, sizes=[32, 64], frozen_weights="none",
                  scratch_budget=20, baseline_budget=15, models=["cnn", "mobilenetv2"],
                  model_sizes=[32], train_batch=16, steps=2),
    "cpu": dict(dataset="cifar10", limit=1000, sizes=[32, 96, 160], frozen_weights="imagenet",
                scratch_budget=900, baseline_budget=300, scratch_limit=None,
                models=["cnn", "resnet50", "resnet101", "resnet152", "vgg16", "vgg19", "efficientnetb0",
                        "efficientnetb3", "mobilenetv2", "mobilenetv3large"],
                model_sizes=[128], train_batch=16, steps=2),
    "gpu": dict(dataset="cifar10", limit=None, sizes=[32, 96, 160, 224], frozen_weights="imagenet",
                scratch_budget=900, baseline_budget=300, scratch_limit=None,
                models=["cnn", "resnet50", "resnet101", "resnet152", "vgg16", "vgg19", "efficientnetb0",
                        "efficientnetb3", "mobilenetv2", "mobilenetv3large"],
                model_sizes=[224], train_batch=128, steps=10),
}
PARTS = ("course", "kernels", "scratch", "frozen", "models")
GOALS = {
    "smoke_course_seconds": ("smoke course on 2 CPU cores (TensorFlow)", "<= 300 s"),
    "scratch": ("from scratch on CIFAR-10, 2 CPU cores", ">= 0.85 test accuracy in <= 900 s of training, "
                "above the seed-style baseline"),
    "frozen": ("frozen ImageNet MobileNetV2 on CIFAR-10", ">= 0.80 test accuracy at the best input size"),
    "gpu": ("full gpu course on one H100; ResNet50/MobileNetV2 224-px training img/s", "<= 1200 s; within 2x "
            "of published figures (ResNet-50 ~2,470 img/s mixed precision on an A100)"),
}


# --------------------------------------------------------------------------- FLOPs

def forward_flops(model) -> int:
    """Multiply-adds ×2 of the convolutions and dense layers in one forward pass of one image.

    Counted from layer shapes (backend-neutral); normalisation and activations are left out.
    """
    from keras import layers as L

    total = 0
    for layer in _leaves(model):
        try:
            out = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if isinstance(layer, L.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            total += kh * kw * int(np.prod(out[1:]))
        elif isinstance(layer, L.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1] // getattr(layer, "groups", 1)
            total += kh * kw * cin * int(np.prod(out[1:]))
        elif isinstance(layer, L.Dense):
            total += layer.input.shape[-1] * int(np.prod(out[1:]))
    return 2 * int(total)


def _leaves(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaves(layer)
        else:
            yield layer


# --------------------------------------------------------------------------- parts

def measure_model(name: str, size: int, num_classes: int = 10, train_batch: int = 16, steps: int = 2,
                  infer_batch: int = 64) -> dict:
    """Training and inference images/s of one registry model at one input size, with FLOPs.

    Training is timed both in ``fit`` (input pipeline included) and as steps on one batch
    held in memory: if ``fit`` is much slower, the input pipeline is the bottleneck.
    """
    import keras

    from tlkit.models import build_classifier, unfreeze
    from tlkit.train import compile_model

    clf = build_classifier(name, num_classes, input_shape=(size, size, 3), img_size=size, weights="none",
                           freeze=False)
    if clf.transfer:
        unfreeze(clf)
    compile_model(clf.model, 1e-3, schedule="constant")
    rng = np.random.default_rng(0)
    n = train_batch * steps
    x = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    y = keras.utils.to_categorical(rng.integers(0, num_classes, n), num_classes)
    clf.model.fit(x[:train_batch], y[:train_batch], batch_size=train_batch, epochs=1, verbose=0)  # trace
    t = time.perf_counter()
    clf.model.fit(x, y, batch_size=train_batch, epochs=1, verbose=0)
    fit_ips = n / (time.perf_counter() - t)
    clf.model.train_on_batch(x[:train_batch], y[:train_batch])  # trace the step function
    t = time.perf_counter()
    for _ in range(steps):
        clf.model.train_on_batch(x[:train_batch], y[:train_batch])
    step_ips = n / (time.perf_counter() - t)
    xi = rng.integers(0, 255, (infer_batch * steps, size, size, 3), dtype=np.uint8)
    clf.model.predict(xi[:infer_batch], batch_size=infer_batch, verbose=0)
    t = time.perf_counter()
    clf.model.predict(xi, batch_size=infer_batch, verbose=0)
    infer_ips = len(xi) / (time.perf_counter() - t)
    flops = forward_flops(clf.model)
    return {"model": name, "img_size": size, "params": clf.model.count_params(), "forward_flops": flops,
            "train_images_per_second": round(fit_ips, 2), "train_step_images_per_second": round(step_ips, 2),
            "inference_images_per_second": round(infer_ips, 2),
            "train_flops_per_second": round(3 * flops * fit_ips), "inference_flops_per_second":
                round(flops * infer_ips)}


def onednn_probe() -> dict:
    """Training images/s of the course CNN with TensorFlow's oneDNN kernels off and on
    (each in a fresh process, since the switch is read when TensorFlow loads)."""
    import keras

    if keras.config.backend() != "tensorflow":
        return {}
    code = ("import json,tlkit.bench as b; print(json.dumps(b.measure_model('cnn', 32, train_batch=128, "
            "steps=8)['train_images_per_second']))")
    out = {}
    for flag in ("0", "1"):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": flag, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        out[f"onednn_{'on' if flag == '1' else 'off'}_cnn_train_images_per_second"] = (
            float(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None)
    return out


def scratch_run(base: str, ds, budget_s: float, *, lr: float, augment, label_smoothing: float,
                batch_size: int, max_epochs: int, early_stopping: int | None, schedule: str = "cosine") -> dict:
    """Train a from-scratch model for as many epochs as fit ``budget_s`` (from a measured
    first epoch), then evaluate on the test split."""
    from tlkit.evaluate import evaluate
    from tlkit.models import build_classifier
    from tlkit.train import fit_dataset, set_seed

    set_seed(0)
    probe = build_classifier(base, ds.num_classes, input_shape=ds.image_shape, augment=augment)
    n = min(len(ds.y_train), 20 * batch_size)
    nv = max(1, len(ds.y_val) * n // len(ds.y_train)) if ds.y_val is not None else 0
    part = dataclasses.replace(ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n],
                               x_val=ds.x_val[:nv] if nv else None, y_val=ds.y_val[:nv] if nv else None)
    fit_dataset(probe, part, epochs=1, batch_size=batch_size, lr=lr, verbose=0)  # traces
    t0 = time.perf_counter()
    fit_dataset(probe, part, epochs=1, batch_size=batch_size, lr=lr, verbose=0, compile=False)
    per_epoch = (time.perf_counter() - t0) * len(ds.y_train) / n * 1.05  # a margin
    epochs = int(max(1, min(max_epochs, budget_s // per_epoch)))
    set_seed(0)
    clf = build_classifier(base, ds.num_classes, input_shape=ds.image_shape, augment=augment)
    result = fit_dataset(clf, ds, epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule,
                         label_smoothing=label_smoothing, early_stopping=early_stopping, verbose=2)
    ev = evaluate(clf.model, ds)
    return {"test_accuracy": ev["summary"]["test_accuracy"], "wall_seconds": round(result.wall_seconds, 1),
            "epochs": result.epochs, "train_images": int(len(ds.y_train)),
            "images_per_second": round(result.images_per_second, 1)}


def smoke_course(summary_path: str | Path | None) -> dict:
    """Wall time of the smoke course per notebook: read from a run's summary.json, or run it."""
    if summary_path is None or not Path(summary_path).is_file():
        from tlkit.course import run_course

        summary = run_course("smoke", out=Path("runs") / "bench-smoke-course")
    else:
        summary = json.loads(Path(summary_path).read_text())
    return {"total": summary["seconds"], **{r["notebook"]: r["seconds"] for r in summary["notebooks"]},
            "status": "ok" if not summary["failed"] else f"failed: {summary['failed']}"}


# --------------------------------------------------------------------------- suite

def run_bench(suite: str = "smoke", *, data_dir: str | None = None, weights_dir: str | None = None,
              out: str | Path = "runs/bench", course_summary: str | Path | None = None,
              only: list[str] | None = None, log=print) -> dict:
    """Run a benchmark suite; write ``bench.json``, ``bench.md`` and plots into ``out``.

    ``only`` (a subset of :data:`PARTS`) re-runs those parts and keeps the others from the
    ``bench.json`` already in ``out``; each part records when it was measured.
    """
    from tlkit.train import configure_precision

    cfg = SUITES[suite]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    precision = configure_precision()
    started = time.perf_counter()
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    previous = out / "bench.json"
    result: dict = json.loads(previous.read_text()) if only and previous.is_file() else {}
    if result.get("suite", suite) != suite:
        raise ValueError(f"{previous} holds the {result['suite']} suite, not {suite}")
    result.update({"suite": suite, "created": now, "precision": precision, **environment(), "goals": GOALS})
    parts = set(only or PARTS)
    measured = result.setdefault("measured", {})

    def save() -> None:
        result["bench_seconds"] = round(time.perf_counter() - started, 1)
        write_json(result, out / "bench.json")

    if "course" in parts:
        log("bench: smoke course", flush=True)
        result["smoke_course_seconds"] = smoke_course(course_summary)
        measured["course"] = now
        save()
    if "kernels" in parts:
        log("bench: CPU kernels", flush=True)
        result["cpu_kernels"] = onednn_probe()
        measured["kernels"] = now
        save()
    if "scratch" in parts:
        _scratch(result, cfg, data_dir, log)
        measured["scratch"] = now
        save()
    if "frozen" in parts:
        _frozen(result, cfg, data_dir, weights_dir, log)
        measured["frozen"] = now
        save()
    if "models" in parts:
        log("bench: models", flush=True)
        rows = []
        for name in cfg["models"]:
            for size in cfg["model_sizes"]:
                rows.append(measure_model(name, size, train_batch=cfg["train_batch"], steps=cfg["steps"]))
                log(f"  {name} {size}px: train {rows[-1]['train_images_per_second']:.1f} img/s, "
                    f"inference {rows[-1]['inference_images_per_second']:.1f} img/s", flush=True)
                result["models"] = rows
                save()
        measured["models"] = now
    save()
    (out / "bench.md").write_text(bench_markdown(result, out, "."))
    log(f"bench: {out / 'bench.json'} ({result['bench_seconds']:.0f} s)", flush=True)
    return result


def _scratch(result: dict, cfg: dict, data_dir, log) -> None:
    from tlkit.data import load_dataset

    log("bench: from scratch vs seed-style baseline", flush=True)
    ds = load_dataset(cfg["dataset"], data_dir=data_dir, limit_per_class=cfg.get("scratch_limit"), seed=0)
    s = scratch_run("cnn", ds, cfg["scratch_budget"], lr=3e-3, augment=["flip", "translate"],
                    label_smoothing=0.1, batch_size=128, max_epochs=40, early_stopping=None)
    b = scratch_run("baseline_cnn", ds, cfg["baseline_budget"], lr=1e-3, augment=None, label_smoothing=0.0,
                    batch_size=64, max_epochs=10, early_stopping=3, schedule="constant")
    result["scratch"] = {**s, "baseline_test_accuracy": b["test_accuracy"],
                         "baseline_wall_seconds": b["wall_seconds"], "baseline_epochs": b["epochs"],
                         "budget_seconds": cfg["scratch_budget"], "dataset": ds.source}


def _frozen(result: dict, cfg: dict, data_dir, weights_dir, log) -> None:
    from tlkit.data import load_dataset
    from tlkit.features import probe

    log("bench: frozen MobileNetV2 by input size", flush=True)
    fds = load_dataset(cfg["dataset"], data_dir=data_dir, limit_per_class=cfg["limit"], seed=0)
    by_size, ips, source = {}, {}, None
    for size in cfg["sizes"]:
        run = probe("mobilenetv2", fds, img_size=size, weights=cfg["frozen_weights"], weights_dir=weights_dir,
                    epochs=40)
        by_size[str(size)] = run.evaluation["summary"]["test_accuracy"]
        ips[str(size)] = round(run.feats.images_per_second, 1)
        source = run.feats.weights_source
        log(f"  {size} px: {by_size[str(size)]:.3f}", flush=True)
    result["frozen_mobilenetv2"] = {"by_size": by_size, "extraction_images_per_second": ips,
                                    "weights_source": source, "train_images": int(len(fds.y_train)),
                                    "test_images": int(len(fds.y_test))}


# --------------------------------------------------------------------------- report

def bench_markdown(b: dict, fig_dir: Path, fig_prefix: str, title: str | None = None) -> str:
    """A markdown report of a bench.json: machine, goals against measured figures, plots."""
    import pandas as pd

    from tlkit import plots

    hw = b.get("hardware", {})
    device = ", ".join(hw.get("gpus") or []) or f"{hw.get('cpu')} ({hw.get('cores')} cores)"
    key = f"bench_{b.get('suite')}_{str(b.get('created', ''))[:10]}"
    lines = [f"## {title or 'Benchmark'}: `{b.get('suite')}` suite", "",
             f"**Machine:** {device} · **backend:** {b.get('backend')} ({b.get('precision')}) · "
             f"**date:** {str(b.get('created', ''))[:10]} · **tlkit commit:** `{(b.get('git_commit') or '')[:10]}`",
             "", "| goal | target | measured |", "|---|---|---|"]
    sc = b.get("smoke_course_seconds", {})
    if sc:
        lines.append(f"| {GOALS['smoke_course_seconds'][0]} | {GOALS['smoke_course_seconds'][1]} | "
                     f"{sc.get('total')} s ({sc.get('status')}) |")
    s = b.get("scratch")
    if s:
        lines.append(f"| {GOALS['scratch'][0]} (this run: `{s.get('dataset')}`) | {GOALS['scratch'][1]} | "
                     f"{s['test_accuracy']:.3f} in "
                     f"{s['wall_seconds']:.0f} s ({s['epochs']} epochs); baseline "
                     f"{s['baseline_test_accuracy']:.3f} in {s['baseline_wall_seconds']:.0f} s |")
    f = b.get("frozen_mobilenetv2")
    if f:
        sizes = ", ".join(f"{k} px: {v:.3f}" for k, v in f["by_size"].items())
        lines.append(f"| {GOALS['frozen'][0]} ({f.get('train_images')} training images) | "
                     f"{GOALS['frozen'][1]} | {sizes} |")
    lines.append("")
    k = b.get("cpu_kernels") or {}
    if k:
        lines += ["CPU kernels (course CNN, training img/s): " + ", ".join(
            f"{n.replace('_cnn_train_images_per_second', '').replace('_', ' ')}: {v}" for n, v in k.items()), ""]
    models = b.get("models") or []
    if models:
        df = pd.DataFrame(models)
        df["train_gflops"] = df["train_flops_per_second"] / 1e9
        df["gflops_per_image"] = df["forward_flops"] / 1e9
        lines += ["| model | px | params | GFLOPs/img | train img/s | train step img/s | inference img/s | train GFLOP/s |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in df.itertuples():
            lines.append(f"| {r.model} | {r.img_size} | {r.params:,} | {r.gflops_per_image:.2f} | {r.train_images_per_second:.1f} | "
                         f"{r.train_step_images_per_second:.1f} | {r.inference_images_per_second:.1f} | {r.train_gflops:.1f} |")
        lines.append("")
        fig = plots.compare(df, "gflops_per_image", "inference_images_per_second", label="model", logx=True,
                            title=f"Inference throughput against compute ({device})",
                            xlabel="GFLOPs per image (log scale)", ylabel="inference images per second")
        lines.append(plots.myst_figure(
            fig, fig_dir / f"{key}_models.png", f"{fig_prefix}/{key}_models.png",
            "Scatter plot of inference images per second against GFLOPs per image for each model",
            f"Throughput of every registry model on {device}."))
    if f:
        fd = pd.DataFrame({"img_size": [int(x) for x in f["by_size"]], "test_accuracy": list(f["by_size"].values())})
        fig = plots.lines(fd, "img_size", "test_accuracy", title="Frozen MobileNetV2 on CIFAR-10 by input size",
                          xlabel="input size (px)", ylabel="test accuracy")
        lines.append(plots.myst_figure(
            fig, fig_dir / f"{key}_frozen.png", f"{fig_prefix}/{key}_frozen.png",
            "Line chart of frozen MobileNetV2 test accuracy against input size",
            f"Weights: `{f.get('weights_source')}`."))
    return "\n".join(lines)
