"""Benchmarks: ``tlkit bench --suite {smoke,cpu,gpu}`` writes bench.json, bench.md and plots.

Timings are reported, never asserted: the goals of the course are listed with the measured
figure beside each, so a slow machine produces a report, not a failure. A goal is judged only
where it was measured as it is stated (CIFAR-10, the hardware it names); the gpu suite without
a GPU, or with ``--dry-run``, is a dry run: its parts at the smoke sizes, no goal judged.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tlkit import TlkitError
from tlkit.course import GPU, NOTEBOOKS, profile_settings, run_course
from tlkit.flops import forward_flops
from tlkit.records import environment
from tlkit.system import JAX_RATIO, accelerators, backend_advice, write_json, write_text

SCRATCH_SECONDS, FINETUNE_SECONDS = 900, 1800
# The course's CPU workloads timed on each backend: (model, input px, batch, the figure that counts).
# Extraction is notebook 2's frozen features, the fine-tuning step notebook 3's phase 2.
BACKEND_CASES = {"cnn_train": ("cnn", 32, 256, "train_step_images_per_second"),
                 "mobilenetv2_extraction": ("mobilenetv2", 128, 128, "inference_images_per_second"),
                 "mobilenetv2_finetune_step": ("mobilenetv2", 128, 64, "train_step_images_per_second")}
BACKENDS = ("tensorflow", "jax")
# XLA:CPU's own convolutions are where JAX loses on a CPU; this experimental flag hands them to
# oneDNN (measured beside plain JAX; a JAX that does not know the flag records None).
XLA_ONEDNN = "--xla_cpu_experimental_onednn_custom_call=true"
PARTS = ("course", "kernels", "backends", "resnet50", "scratch", "frozen", "finetune", "models")  # in the order they run
CPU_PARTS = tuple(p for p in PARTS if p != "resnet50")  # its goal is a GPU figure
GPU_PARTS = tuple(p for p in PARTS if p not in ("kernels", "backends"))  # TensorFlow's CPU kernels; TF against JAX on a CPU
SUITES = {
    # profile: the course profile whose notebook settings the scratch, frozen and fine-tuning
    # parts use (one source for the course and the bench); course: the profile of the course
    # run that the course part times; extra_alphas: MobileNetV2 widths probed beside the
    # profile's own; baseline_budget: training seconds for the seed-style baseline (the cpu
    # and gpu suites: the course CNN's budget, so both get the same time); models: the CNN and
    # notebook 4's models_to_compare (the course's gpu list); backend_cases: the workloads of
    # :data:`BACKEND_CASES` timed on TensorFlow and on JAX; resnet50: the training-throughput
    # probe of the published GPU figure (input px, batch sizes, warm-up steps, seconds timed).
    "smoke": dict(profile="smoke", course="smoke", parts=CPU_PARTS, extra_alphas=[], baseline_budget=15,
                  models=["cnn", "mobilenetv2"], model_sizes=[32], train_batch=16, steps=2,
                  kernel_batch=32, kernel_steps=2, backend_cases=["cnn_train"]),
    "cpu": dict(profile="cpu", course="smoke", parts=CPU_PARTS, extra_alphas=[0.35], baseline_budget=SCRATCH_SECONDS,
                models=["cnn", *GPU["04"]["models_to_compare"]],
                model_sizes=[128], train_batch=16, steps=2, kernel_batch=256, kernel_steps=6,
                backend_cases=list(BACKEND_CASES)),
    "gpu": dict(profile="gpu", course="gpu", parts=GPU_PARTS, extra_alphas=[0.35], baseline_budget=SCRATCH_SECONDS,
                models=["cnn", *GPU["04"]["models_to_compare"]], model_sizes=[224], train_batch=128, steps=10,
                resnet50=dict(img_size=224, batches=[64, 128, 256], warmup_steps=10, seconds=20.0)),
}
# The gpu suite's dry run (no GPU here, or --dry-run): its parts at the smoke suite's sizes
# (the smoke profile's settings: synthetic data, random weights) cut to one epoch (shrink: the
# settings each notebook's part changes), the course part on a smoke course run, one model in
# the models part, ResNet-50 at 32 px on batches of 2 for a second. It checks the code, not the goals.
DRY_RUN = {**SUITES["smoke"], "parts": GPU_PARTS, "baseline_budget": 1, "models": ["cnn"],
           "shrink": {"01": dict(epochs=1), "02": dict(sizes=[32], head_epochs=1), "03": dict(head_epochs=1)},
           "resnet50": dict(img_size=32, batches=[2], warmup_steps=1, seconds=1.0)}
GPU_COURSE_SECONDS = 1200
# A part during which other processes took more than this share of the CPU is flagged (on 2
# cores, 0.1 is a fifth of a core: a measurement of several minutes moves by a few percent).
BUSY_SHARE = 0.1
BASELINE_MAX_EPOCHS = 100  # the seed-style baseline stops at its time budget or by early stopping
GPU_SCRATCH_ACCURACY, GPU_FINETUNE_ACCURACY = 0.93, 0.95
RESNET50_PUBLISHED = 2470  # img/s: NVIDIA's ResNet-50 training figure on one A100 with AMP
SCRATCH_ACCURACY, SCRATCH_MOONSHOT, FROZEN_ACCURACY, FINETUNE_ACCURACY = 0.88, 0.90, 0.80, 0.90
GOALS = {
    "smoke_course_seconds": ("smoke course on 2 CPU cores (TensorFlow)", "<= 300 s"),
    "scratch": ("CNN from scratch on CIFAR-10, 2 CPU cores",
                f">= {SCRATCH_ACCURACY} test accuracy in <= {SCRATCH_SECONDS} s of training (moonshot "
                f"{SCRATCH_MOONSHOT}), above the seed-style baseline given the same {SCRATCH_SECONDS} s"),
    "frozen": ("frozen ImageNet MobileNetV2 on CIFAR-10", f">= {FROZEN_ACCURACY} test accuracy; input size and head chosen on validation"),
    "finetune": ("fine-tuned MobileNetV2 on CIFAR-10, 2 CPU cores",
                 f">= {FINETUNE_ACCURACY} test accuracy in <= {FINETUNE_SECONDS // 60} min (features, head and "
                 "fine-tuning), above the CNN from scratch on the same test set"),
    "kernels": ("fast CPU kernels", "oneDNN on faster than off; the CNN trained in bfloat16 only where it wins"),
    "backends": ("JAX against TensorFlow on this CPU", f"JAX within {JAX_RATIO}x of TensorFlow's images/s in "
                 "every part, or the course tells CPU users to use TensorFlow"),
    "gpu_course": ("the gpu course (every notebook) on one H100", f"<= {GPU_COURSE_SECONDS} s"),
    "gpu_scratch": ("CNN from scratch on CIFAR-10, gpu profile", f">= {GPU_SCRATCH_ACCURACY} test accuracy"),
    "gpu_finetune": ("fine-tuned MobileNetV2 on CIFAR-10, gpu profile",
                     f">= {GPU_FINETUNE_ACCURACY} test accuracy"),
    "resnet50": ("ResNet-50 training at 224 px in mixed precision, one GPU",
                 f">= {RESNET50_PUBLISHED // 2:,} img/s: within 2x of NVIDIA's published "
                 f"{RESNET50_PUBLISHED:,} img/s on one A100 (AMP)"),
}
# The bench part that measures each goal (where the names differ).
GOAL_PART = {"smoke_course_seconds": "course", "gpu_course": "course", "gpu_scratch": "scratch",
             "gpu_finetune": "finetune"}
# Why a goal is not judged (a goal row's "why").
NOT_CIFAR10, NOT_RUN = "n/a (not CIFAR-10)", "not measured (part not run)"
DRY = "not measured (dry run)"


# --------------------------------------------------------------------------- parts

def measure_model(name: str, size: int, num_classes: int = 10, train_batch: int = 16, steps: int = 2,
                  infer_batch: int = 64, train: bool = True) -> dict:
    """Training and inference images/s of one registry model at one input size, with FLOPs.

    Training is timed both in ``fit`` (input pipeline included) and as steps on one batch
    held in memory: if ``fit`` is much slower, the input pipeline is the bottleneck. The
    precision is the global Keras policy in force.
    """
    import keras

    clf = _trainable(name, size, num_classes)
    rng = np.random.default_rng(0)
    fit_ips = step_ips = None
    if train:
        n = train_batch * steps
        x, y = _random_batch(rng, n, size, num_classes)
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
    trained = {"train_images_per_second": round(fit_ips, 2),
               "train_step_images_per_second": round(step_ips, 2),
               "train_flops_per_second": round(3 * flops * fit_ips)} if train else {}
    return {"model": name, "img_size": size, "params": clf.model.count_params(), "forward_flops": flops,
            "precision": keras.mixed_precision.global_policy().name, **trained,
            "inference_images_per_second": round(infer_ips, 2),
            "inference_flops_per_second": round(flops * infer_ips)}


def _trainable(name: str, size: int, num_classes: int):
    """A registry model with random weights, every layer trainable, compiled as the course does."""
    from tlkit.models import build_classifier, unfreeze
    from tlkit.train import compile_model

    clf = build_classifier(name, num_classes, input_shape=(size, size, 3), img_size=size, weights="none",
                           freeze=False)
    if clf.transfer:
        unfreeze(clf)
    compile_model(clf.model, 1e-3, schedule="constant")
    return clf


def _random_batch(rng: np.random.Generator, n: int, size: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random uint8 images and one-hot labels."""
    import keras

    x = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    return x, keras.utils.to_categorical(rng.integers(0, num_classes, n), num_classes)


def _out_of_memory(exc: Exception) -> bool:
    """Whether a backend error says the device ran out of memory (TensorFlow, JAX or torch)."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(s in text for s in ("resource_exhausted", "resourceexhausted", "out of memory", "outofmemory"))


def train_throughput(name: str, size: int, batches: list[int], *, seconds: float, warmup_steps: int,
                     num_classes: int = 10) -> dict[str, float | None]:
    """Training images/s of a registry model (random weights, every layer trained) in the
    global precision, per batch size: one batch held on the device, ``warmup_steps`` steps
    (tracing included), then as many steps as fit in ``seconds``. None: the batch did not fit
    in the device's memory."""
    import keras

    rng = np.random.default_rng(0)
    out: dict[str, float | None] = {}
    for batch in batches:
        keras.backend.clear_session()  # the previous batch size's model and buffers
        clf = _trainable(name, size, num_classes)
        x, y = (keras.ops.convert_to_tensor(a) for a in _random_batch(rng, batch, size, num_classes))
        try:
            for _ in range(warmup_steps):
                clf.model.train_on_batch(x, y)  # returns the loss as a number: each step has finished
            steps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                clf.model.train_on_batch(x, y)
                steps += 1
            out[str(batch)] = round(steps * batch / (time.perf_counter() - t0), 1)
        except Exception as e:  # the backends raise their own errors; only running out of memory is expected
            if not _out_of_memory(e):
                raise
            out[str(batch)] = None
        del clf, x, y
    return out


KERNEL_CASES = {  # workload: (model, input px, the figure that counts)
    "cnn_train": ("cnn", 32, "train_step_images_per_second"),
    "mobilenetv2_inference": ("mobilenetv2", 128, "inference_images_per_second"),
}


def _in_process(model: str, size: int, figure: str, batch: int, steps: int, env: dict,
                policy: str = "float32") -> tuple[float | None, str]:
    """:func:`measure_model`'s ``figure`` in a fresh Python process with ``env`` added to the
    environment (a backend, oneDNN and XLA flags are read once, when they load); returns the
    figure, or None and the last line of the process's error output."""
    code = ("import json, keras, tlkit.bench as b; "
            f"keras.mixed_precision.set_global_policy('{policy}'); "
            f"r = b.measure_model('{model}', {size}, train_batch={batch}, steps={steps}, "
            f"infer_batch={batch}, train={figure.startswith('train')}); print(json.dumps(r['{figure}']))")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return float(proc.stdout.strip().splitlines()[-1]), ""
    return None, (proc.stderr.strip().splitlines() or ["no output"])[-1]


def kernel_probe(batch: int = 256, steps: int = 6) -> dict:
    """Images/s of the course's two CPU workloads (CNN training, MobileNetV2 inference) with
    TensorFlow's oneDNN kernels off and on, in float32 and in mixed bfloat16; each setting
    in a fresh process, since oneDNN is chosen when TensorFlow loads. Says which precision
    wins per workload on this CPU (bfloat16 is emulated, and slow, without AVX512-BF16/AMX)."""
    import keras

    from tlkit.system import cpu_bf16

    if keras.config.backend() != "tensorflow":
        return {}
    settings = [("0", "float32"), ("1", "float32"), ("1", "mixed_bfloat16")]
    out: dict = {"cpu_bf16": cpu_bf16()}
    for workload, (model, size, figure) in KERNEL_CASES.items():
        row = {}
        for flag, policy in settings:
            key = f"onednn_{'on' if flag == '1' else 'off'}_{policy.replace('mixed_', '')}"
            row[key] = _in_process(model, size, figure, batch, steps, {"TF_ENABLE_ONEDNN_OPTS": flag}, policy)[0]
        fp32, bf16 = row.get("onednn_on_float32"), row.get("onednn_on_bfloat16")
        row["precision_choice"] = ("mixed_bfloat16" if fp32 and bf16 and bf16 > 1.1 * fp32 else "float32")
        out[workload] = row
    return out


def backend_probe(cases: list[str], steps: int = 4) -> dict:
    """Images/s of each :data:`BACKEND_CASES` workload on TensorFlow, on JAX, and on JAX with
    :data:`XLA_ONEDNN` (``jax_onednn``), in float32, each in a fresh process (Keras picks its
    backend once); ``ratio``: TensorFlow's images/s over plain JAX's (above 1: JAX is slower)."""
    out: dict = {"steps": steps, "precision": "float32", "jax_onednn_flag": XLA_ONEDNN}
    jax = {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    for name in cases:
        model, size, batch, figure = BACKEND_CASES[name]
        row: dict = {"model": model, "img_size": size, "batch": batch}
        for key, env in (("tensorflow", {"KERAS_BACKEND": "tensorflow"}), ("jax", jax),
                         ("jax_onednn", {**jax, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {XLA_ONEDNN}".strip()})):
            row[key], error = _in_process(model, size, figure, batch, steps, env)
            if row[key] is None and key != "jax_onednn":  # the experimental flag may be unknown to this JAX
                raise TlkitError(f"the {name} workload failed on {env['KERAS_BACKEND']}: {error}")
        row["ratio"] = round(row["tensorflow"] / row["jax"], 2) if row["jax"] else None
        out[name] = row
    return out


def curve(history: dict) -> list[dict]:
    """Validation accuracy against wall time, one point per epoch, from a training history."""
    return [{"epoch": i + 1, "seconds": round(t, 1), "val_accuracy": round(v, 4)} for i, (t, v) in
            enumerate(zip(history.get("seconds", []), history.get("val_accuracy", [])))]


def scratch_run(base: str, ds, *, epochs: int, batch_size: int, lr: float, augment,
                label_smoothing: float, early_stopping: int | None, schedule: str = "cosine",
                tta: bool = False, time_budget: float | None = None) -> dict:
    """Train a from-scratch model and evaluate it on the test split (``tta``: with flip
    test-time augmentation; ``time_budget``: at most that many seconds of training); returns
    accuracy, wall time and validation accuracy against time."""
    from tlkit.cnn import with_flip_tta
    from tlkit.evaluate import evaluate
    from tlkit.models import build_classifier
    from tlkit.train import fit_dataset, set_seed

    set_seed(0)
    clf = build_classifier(base, ds.num_classes, input_shape=ds.image_shape, augment=augment)
    result = fit_dataset(clf, ds, epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule,
                         label_smoothing=label_smoothing, early_stopping=early_stopping,
                         time_budget=time_budget, verbose=2)
    ev = evaluate(with_flip_tta(clf.model) if tta else clf.model, ds)
    return {"test_accuracy": ev["summary"]["test_accuracy"], "wall_seconds": round(result.wall_seconds, 1),
            "epochs": result.epochs, "train_images": int(len(ds.y_train)),
            "test_images": int(len(ds.y_test)), "tta": tta,
            "images_per_second": round(result.images_per_second, 1), "curve": curve(result.history)}


def course_times(profile: str, summary_path: str | Path | None = None, *, data_dir: str | None = None,
                 weights_dir: str | None = None) -> dict:
    """Wall time of a ``profile`` course run per notebook, and the GPUs it ran on: read from a
    run's summary.json, or run it (into ``runs/bench-<profile>-course``)."""
    if summary_path is None:
        summary = run_course(profile, data_dir=data_dir, weights_dir=weights_dir,
                             out=Path("runs") / f"bench-{profile}-course")
    else:
        path = Path(summary_path)
        if not path.is_file():
            raise TlkitError(f"--course-summary {path} is not a file: give the summary.json of a {profile} "
                             "course run, or leave it out to run one")
        summary = json.loads(path.read_text(encoding="utf-8"))
        if summary.get("profile", profile) != profile:
            raise TlkitError(f"--course-summary {path} is a {summary['profile']} course run; this bench "
                             f"times the {profile} course: give one of those, or leave it out to run one")
    return {"profile": profile, "total": summary["seconds"],
            **{r["notebook"]: r["seconds"] for r in summary["notebooks"]},
            "status": "ok" if not summary["failed"] else f"failed: {summary['failed']}",
            "gpus": summary.get("hardware", {}).get("gpus", [])}


# --------------------------------------------------------------------------- suite

def _dirty() -> bool:
    """True when tracked files differ from the commit (the figures would not be that commit's)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def run_bench(suite: str = "smoke", *, data_dir: str | None = None, weights_dir: str | None = None,
              out: str | Path = "runs/bench", course_summary: str | Path | None = None,
              only: list[str] | None = None, dry_run: bool = False, log=print) -> dict:
    """Run a benchmark suite; write ``bench.json``, ``bench.md`` and plots into ``out``.

    ``only`` (a subset of the suite's parts) re-runs those parts and keeps the others from the
    ``bench.json`` already in ``out``, but only when that file was measured at the same commit
    (and, for the gpu suite, as a dry run or not alike): every part of one bench file comes
    from one version of the code. Each part records when it ran, the machine's load before
    and after, and the share of the CPU other processes took meanwhile (``others``; above
    :data:`BUSY_SHARE` the part's goal rows are flagged: another process on 2 cores halves a
    figure). The gpu suite runs dry
    (:data:`DRY_RUN`) with ``dry_run`` or where there is no GPU.
    """
    from tlkit.records import git_commit
    from tlkit.system import cpu_load, cpu_snapshot, others_share
    from tlkit.train import configure_precision

    if dry_run and suite != "gpu":
        raise TlkitError(f"--dry-run is for the gpu suite; the {suite} suite runs in full on any machine")
    dry = suite == "gpu" and (dry_run or not accelerators())
    cfg = DRY_RUN if dry else SUITES[suite]
    wrong = [p for p in only or [] if p not in cfg["parts"]]
    if wrong:
        raise TlkitError(f"the {suite} suite has no {', '.join(wrong)} part: choose from {', '.join(cfg['parts'])}")
    if dry:
        log(f"bench: a dry run of the gpu suite ({'--dry-run' if dry_run else 'no GPU here'}): its parts at the "
            "smoke sizes, the course part on a smoke course; no goal is judged", flush=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    commit, dirty = git_commit(), _dirty()
    previous = out / "bench.json"
    result: dict = json.loads(previous.read_text()) if only and previous.is_file() else {}
    if result.get("suite", suite) != suite:
        raise TlkitError(f"{previous} holds the {result['suite']} suite, not {suite}")
    if result and (result.get("git_commit") != commit or result.get("dirty") or dirty):
        raise TlkitError(f"{previous} was measured at commit {str(result.get('git_commit'))[:10]}"
                         f"{' (with local changes)' if result.get('dirty') else ''}; the code is now "
                         f"{str(commit)[:10]}{' with local changes' if dirty else ''}: run every part "
                         "(drop --only) so that one bench file comes from one version of the code")
    if result and bool(result.get("dry_run")) != dry:
        raise TlkitError(f"{previous} holds a {'dry' if result.get('dry_run') else 'full'} run of the gpu suite "
                         f"and this one is {'dry' if dry else 'full'}: run every part (drop --only)")
    precision = configure_precision()
    started = time.perf_counter()
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    result.update({"suite": suite, "created": now, "precision": precision, **environment(),
                   "dirty": dirty, "dry_run": dry})
    measured = result.setdefault("measured", {})

    def save() -> None:
        result["bench_seconds"] = round(time.perf_counter() - started, 1)
        result["goals"] = goal_rows(result)
        write_json(result, out / "bench.json")

    course_key = "gpu_course" if suite == "gpu" else "smoke_course_seconds"
    steps = {"course": lambda: result.__setitem__(course_key, course_times(
                 cfg["course"], course_summary, data_dir=data_dir, weights_dir=weights_dir)),
             "kernels": lambda: result.__setitem__("cpu_kernels", kernel_probe(cfg["kernel_batch"],
                                                                               cfg["kernel_steps"])),
             "backends": lambda: _backends(result, cfg, log),
             "resnet50": lambda: _resnet50(result, cfg, log),
             "scratch": lambda: _scratch(result, cfg, data_dir, log),
             "frozen": lambda: _frozen(result, cfg, data_dir, weights_dir, log),
             "finetune": lambda: _finetune(result, cfg, data_dir, weights_dir, log),
             "models": lambda: _models(result, cfg, save, log)}
    for part in cfg["parts"]:
        if only and part not in only:
            continue
        log(f"bench: {part}", flush=True)
        load_before, t0, cpu_before = cpu_load(), time.perf_counter(), cpu_snapshot()
        at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        steps[part]()
        measured[part] = {"at": at, "seconds": round(time.perf_counter() - t0, 1),
                          "load_before": load_before, "load_after": cpu_load(),
                          "others": others_share(cpu_before, cpu_snapshot())}
        if (measured[part]["others"] or 0) > BUSY_SHARE:
            log(f"bench: other processes took {measured[part]['others']:.0%} of the CPU during the {part} "
                f"part: its figures are flagged; run it again on a quiet machine", flush=True)
        save()
    save()
    write_text(bench_markdown(result, out, "."), out / "bench.md")
    log(f"bench: {out / 'bench.json'} ({result['bench_seconds']:.0f} s)", flush=True)
    return result


def _resnet50(result: dict, cfg: dict, log) -> None:
    """ResNet-50's training throughput on one device, the workload of the published GPU figure."""
    from tlkit.system import accelerators, cpu_model
    from tlkit.train import configure_precision

    r = cfg["resnet50"]
    precision = configure_precision()  # mixed precision on a GPU
    by_batch = train_throughput("resnet50", r["img_size"], r["batches"], seconds=r["seconds"],
                                warmup_steps=r["warmup_steps"])
    fits = {b: ips for b, ips in by_batch.items() if ips is not None}
    best = max(fits, key=fits.__getitem__) if fits else None
    gpus = accelerators()
    result["resnet50"] = {"img_size": r["img_size"], "precision": precision, "on_gpu": bool(gpus),
                          "device": gpus[0] if gpus else f"CPU: {cpu_model()}", "by_batch": by_batch,
                          "batch": int(best) if best else None, "images_per_second": fits.get(best),
                          "seconds": r["seconds"], "warmup_steps": r["warmup_steps"]}
    log(f"  resnet50 {r['img_size']} px ({precision}): "
        + ", ".join(f"batch {b}: {ips if ips is not None else 'out of memory'}" for b, ips in by_batch.items())
        + " img/s", flush=True)


def _backends(result: dict, cfg: dict, log) -> None:
    probe = backend_probe(cfg["backend_cases"])
    result["backends"] = probe
    for name in cfg["backend_cases"]:
        r = probe[name]
        log(f"  {name}: TensorFlow {r['tensorflow']:.1f}, JAX {r['jax']:.1f} img/s ({r['ratio']}x)", flush=True)


def _models(result: dict, cfg: dict, save, log) -> None:
    rows = []
    for name in cfg["models"]:
        for size in cfg["model_sizes"]:
            rows.append(measure_model(name, size, train_batch=cfg["train_batch"], steps=cfg["steps"]))
            log(f"  {name} {size}px: train {rows[-1]['train_images_per_second']:.1f} img/s, "
                f"inference {rows[-1]['inference_images_per_second']:.1f} img/s", flush=True)
            result["models"] = rows
            save()


def _settings(nb: str, cfg: dict) -> dict:
    """Notebook ``nb``'s settings under the suite's profile, with the suite's ``shrink``."""
    return {**profile_settings(nb, cfg["profile"]), **cfg.get("shrink", {}).get(nb, {})}


def _scratch(result: dict, cfg: dict, data_dir, log) -> None:
    """Notebook 1's CNN with its profile's recipe, against the seed-style baseline on a budget."""
    from tlkit.data import load_dataset
    from tlkit.train import configure_precision

    s = _settings("01", cfg)
    ds = load_dataset(s["dataset"], data_dir=data_dir, limit_per_class=s["limit_per_class"], seed=0)
    # bfloat16 only where it wins: the precision the kernels part of this run measured faster
    measured = ((result.get("cpu_kernels") or {}).get("cnn_train") or {}).get("precision_choice")
    precision = configure_precision(measured or "auto", model="cnn")
    log(f"  cnn: {s['epochs']} epochs of {len(ds.y_train)} images ({precision})", flush=True)
    cnn = scratch_run("cnn", ds, epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"],
                      augment=["flip", "translate"], label_smoothing=s["label_smoothing"],
                      early_stopping=s["early_stopping"], tta=True)
    configure_precision()  # the earlier students' recipe, as they ran it
    base = scratch_run("baseline_cnn", ds, epochs=BASELINE_MAX_EPOCHS, batch_size=64, lr=1e-3, augment=None,
                       label_smoothing=0.0, early_stopping=3, schedule="constant",
                       time_budget=cfg["baseline_budget"])
    result["scratch"] = {**cnn, "precision": precision, "baseline_test_accuracy": base["test_accuracy"],
                         "baseline_wall_seconds": base["wall_seconds"], "baseline_epochs": base["epochs"],
                         "baseline_curve": base["curve"], "budget_seconds": SCRATCH_SECONDS,
                         "baseline_budget_seconds": cfg["baseline_budget"],
                         "dataset": ds.source, "settings": s}


def _frozen(result: dict, cfg: dict, data_dir, weights_dir, log) -> None:
    """Notebook 2's frozen MobileNetV2 at each input size, and the other widths beside it;
    then, at the main width's size chosen on validation, notebook 2's four heads: features
    of the last layer or also of its ``taps``, fitted by AdamW or as a linear probe."""
    from tlkit.data import load_dataset
    from tlkit.features import extract_features, heads_by_depth, probe_features
    from tlkit.train import configure_precision

    s = _settings("02", cfg)
    ds = load_dataset(s["dataset"], data_dir=data_dir, limit_per_class=s["limit_per_class"], seed=0)
    precision = configure_precision(model="mobilenetv2")
    by_alpha: dict[str, dict] = {}
    # cache=False: the bench times this run's extraction, never a cached figure from another run
    kw = dict(weights=s["weights"], weights_dir=weights_dir, flip_train=True, cache=False)
    best = None  # (validation accuracy, features, run) of the main width's best size

    def summary(run) -> dict:
        m = run.evaluation["summary"]
        return {"val_accuracy": m["val_accuracy"], "test_accuracy": m["test_accuracy"],
                "head_seconds": round(run.result.wall_seconds, 1)}

    for alpha in [s["alpha"], *[a for a in cfg["extra_alphas"] if a != s["alpha"]]]:
        row: dict = {"by_size": {}, "val_by_size": {}, "extraction_images_per_second": {},
                     "extraction_seconds": {}}
        for size in s["sizes"]:
            feats = extract_features("mobilenetv2", ds, img_size=size, alpha=alpha, taps=s["taps"], **kw)
            run = probe_features(feats.last_layer(), ds, epochs=s["head_epochs"])
            val = run.evaluation["summary"]["val_accuracy"]
            if alpha == s["alpha"] and (best is None or val > best[0]):
                best = (val, feats, run)
            row["by_size"][str(size)] = run.evaluation["summary"]["test_accuracy"]
            row["val_by_size"][str(size)] = val
            row["extraction_images_per_second"][str(size)] = round(run.feats.images_per_second, 1)
            row["extraction_seconds"][str(size)] = round(run.feats.seconds, 1)
            row["extracted_images"] = run.feats.images
            row["weights_source"] = run.feats.weights_source
            log(f"  alpha {alpha}, {size} px: {row['by_size'][str(size)]:.3f}", flush=True)
        by_alpha[str(alpha)] = row
    main = by_alpha[str(s["alpha"])]
    _, both, plain = best
    size, heads = both.img_size, {"last layer, adamw": summary(plain)}  # the size sweep's head
    for (where, head), run in heads_by_depth(both, ds, epochs=s["head_epochs"],
                                             skip=[("last layer", "adamw")]).items():
        key = f"{'last layer' if where == 'last layer' else 'taps + last layer'}, {head}"
        heads[key] = summary(run)
        log(f"  {size} px, {key} head: {heads[key]['test_accuracy']:.3f}", flush=True)
    chosen = max(heads, key=lambda k: heads[k]["val_accuracy"])
    result["frozen_mobilenetv2"] = {**main, "alpha": s["alpha"], "by_alpha": by_alpha, "precision": precision,
                                    "heads": heads, "heads_img_size": size, "taps": s["taps"],
                                    "chosen": chosen, "test_accuracy": heads[chosen]["test_accuracy"],
                                    "train_images": int(len(ds.y_train)), "test_images": int(len(ds.y_test)),
                                    "dataset": ds.source}


def _finetune(result: dict, cfg: dict, data_dir, weights_dir, log) -> None:
    """Notebook 3's recipe (:func:`tlkit.finetune.fine_tune`): a head on cached features, then
    fine-tuning the top of the backbone at a lower learning rate with BatchNormalization in
    inference mode."""
    from tlkit.cnn import with_flip_tta
    from tlkit.data import load_dataset
    from tlkit.evaluate import evaluate
    from tlkit.finetune import fine_tune
    from tlkit.train import configure_precision, set_seed

    s = _settings("03", cfg)
    ds = load_dataset(s["dataset"], data_dir=data_dir, limit_per_class=s["limit_per_class"], seed=0)
    precision = configure_precision(model="mobilenetv2")
    set_seed(0)
    log(f"  head, then fine-tuning {s['finetune_epochs']} epochs of {len(ds.y_train)} images at "
        f"{s['img_size']} px", flush=True)
    run = fine_tune("mobilenetv2", ds, img_size=s["img_size"], weights=s["weights"], alpha=s["alpha"],
                    weights_dir=weights_dir, head_epochs=s["head_epochs"], epochs=s["finetune_epochs"],
                    unfreeze_last=s["unfreeze_last"], finetune_lr=s["finetune_lr"],
                    batch_size=s["batch_size"], cache=False, verbose=2)
    head = run.head_run
    ev = evaluate(with_flip_tta(run.clf.model), ds)  # as the CNN from scratch is scored
    log(f"  head {head.evaluation['summary']['test_accuracy']:.3f}, fine-tuned "
        f"{ev['summary']['test_accuracy']:.3f}", flush=True)
    result["finetune"] = {
        "test_accuracy": ev["summary"]["test_accuracy"], "head_test_accuracy":
            head.evaluation["summary"]["test_accuracy"],
        "wall_seconds": round(run.wall_seconds, 1), "extract_seconds": round(run.extract_seconds, 1),
        "head_seconds": round(run.head_seconds, 1), "finetune_seconds": round(run.finetune_seconds, 1),
        "weights_source": head.feats.weights_source, "precision": precision,
        "train_images": int(len(ds.y_train)), "test_images": int(len(ds.y_test)), "tta": True,
        "dataset": ds.source, "settings": s, "curve": curve(run.result.history)}


def _on_cifar10(part: dict, suite: str | None = None) -> bool:
    """Whether a part ran on CIFAR-10 (bench files older than the ``dataset`` field: by suite)."""
    name = str(part.get("dataset") or ("cifar10" if suite in ("cpu", "gpu") else ""))
    return "cifar10" in name and "cifar100" not in name


def goal_rows(b: dict) -> list[dict]:
    """Each goal with its target, the measured figure and whether it is met. ``met`` None:
    not judged, and ``why`` says why (not CIFAR-10, not this hardware, a dry run, not run).
    The gpu suite lists every goal of its own, measured or not."""
    rows = []
    suite, gpu = b.get("suite"), b.get("suite") == "gpu"

    def add(key: str, measured: str, verdict: bool | str) -> None:
        """``verdict``: met or not, or why the goal is not judged. A part measured while other
        processes took more than :data:`BUSY_SHARE` of the CPU is flagged."""
        if b.get("dry_run"):
            verdict = DRY
        row = {"goal": GOALS[key][0], "target": GOALS[key][1], "measured": measured,
               "met": verdict if isinstance(verdict, bool) else None}
        if not isinstance(verdict, bool):
            row["why"] = verdict
        others = ((b.get("measured") or {}).get(GOAL_PART.get(key, key)) or {}).get("others")
        if others is not None and others > BUSY_SHARE and not b.get("dry_run"):
            row["flag"] = f"measured while other processes took {others:.0%} of the CPU: run it again"
        rows.append(row)

    def cifar10(part: dict, met: bool) -> bool | str:
        return met if _on_cifar10(part, suite) else NOT_CIFAR10

    sc = b.get("smoke_course_seconds")
    if sc and not gpu:
        add("smoke_course_seconds", f"{sc['total']:.0f} s ({sc['status']})",
            sc["status"] == "ok" and sc["total"] <= 300)
    c = b.get("gpu_course")
    if gpu and c:
        where = ", ".join(c["gpus"]) or "no GPU"
        one_h100 = len(c["gpus"]) == 1 and "H100" in c["gpus"][0]
        add("gpu_course", f"{c['total']:.0f} s on {where} ({c['profile']} profile, {c['status']})",
            (c["status"] == "ok" and c["total"] <= GPU_COURSE_SECONDS) if one_h100
            else "not measured on this hardware (the goal is for one H100)")
    elif gpu:
        add("gpu_course", "–", NOT_RUN)
    s = b.get("scratch")
    if s and gpu:
        add("gpu_scratch", f"{s['test_accuracy']:.3f} in {s['wall_seconds']:.0f} s ({s['epochs']} epochs, "
                           f"{s['train_images']:,} images)", cifar10(s, s["test_accuracy"] >= GPU_SCRATCH_ACCURACY))
    elif s:
        add("scratch", f"{s['test_accuracy']:.3f} in {s['wall_seconds']:.0f} s ({s['epochs']} epochs, "
                       f"{s['train_images']:,} images, {s.get('precision', '?')}); baseline "
                       f"{s['baseline_test_accuracy']:.3f} in {s['baseline_wall_seconds']:.0f} s "
                       f"({s.get('baseline_epochs', '?')} epochs)",
            cifar10(s, s["test_accuracy"] >= SCRATCH_ACCURACY and s["wall_seconds"] <= SCRATCH_SECONDS
                    and s["test_accuracy"] > s["baseline_test_accuracy"]))
    elif gpu:
        add("gpu_scratch", "–", NOT_RUN)
    f = b.get("frozen_mobilenetv2")
    if f:
        if "chosen" in f:  # the heads of notebook 2 at the size chosen on validation
            add("frozen", f"{f['test_accuracy']:.3f} ({f['chosen']} head at {f['heads_img_size']} px, "
                          f"chosen on validation; taps {', '.join(f['taps']) or 'none'}); by size, last "
                          "layer, AdamW: " + ", ".join(f"{k} px {v:.3f}" for k, v in f["by_size"].items())
                + f" ({f['train_images']:,} training images, {f.get('precision', '?')})",
                cifar10(f, f["test_accuracy"] >= FROZEN_ACCURACY))
        else:  # bench files before the heads
            add("frozen", ", ".join(f"{k} px: {v:.3f}" for k, v in f["by_size"].items())
                + f" ({f['train_images']:,} training images, {f.get('precision', '?')})",
                cifar10(f, max(f["by_size"].values()) >= FROZEN_ACCURACY))
    elif gpu:
        add("frozen", "–", NOT_RUN)
    ft = b.get("finetune")
    if ft and gpu:
        add("gpu_finetune", f"{ft['test_accuracy']:.3f} in {ft['wall_seconds']:.0f} s",
            cifar10(ft, ft["test_accuracy"] >= GPU_FINETUNE_ACCURACY))
    elif ft:
        above = s is not None and ft["test_accuracy"] > s["test_accuracy"]
        add("finetune", f"{ft['test_accuracy']:.3f} in {ft['wall_seconds']:.0f} s ({ft.get('precision', '?')})"
            + (f" (CNN from scratch {s['test_accuracy']:.3f})" if s else ""),
            cifar10(ft, above and ft["test_accuracy"] >= FINETUNE_ACCURACY
                    and ft["wall_seconds"] <= FINETUNE_SECONDS))
    elif gpu:
        add("gpu_finetune", "–", NOT_RUN)
    r = b.get("resnet50")
    if r:
        add("resnet50", (f"{r['images_per_second']:,.0f} img/s at batch {r['batch']}" if r["batch"] else
                         "no batch fitted in memory") + f", {r['img_size']} px, {r['precision']}, on {r['device']}",
            (r["images_per_second"] or 0) >= RESNET50_PUBLISHED / 2 if r["on_gpu"]
            else "not measured on this hardware (a GPU goal)")
    elif gpu:
        add("resnet50", "–", NOT_RUN)
    be = {n: r for n, r in (b.get("backends") or {}).items() if isinstance(r, dict)}
    if be:
        slowdown = max(r["ratio"] for r in be.values())
        advice = backend_advice(slowdown)
        add("backends", "; ".join(f"{n.replace('_', ' ')}: TensorFlow {r['tensorflow']:,.0f}, JAX "
                                  f"{r['jax']:,.0f} img/s ({r['ratio']:.1f}x)" for n, r in be.items())
            + (f". The course's time estimate on JAX on a CPU says: {advice}" if advice else ""),
            slowdown <= JAX_RATIO or advice is not None)
    k = b.get("cpu_kernels") or {}
    cnn = k.get("cnn_train")
    if cnn:
        on, off = cnn.get("onednn_on_float32"), cnn.get("onednn_off_float32")
        used = (s or {}).get("precision")  # what the scratch part of this run trained in
        add("kernels", f"CNN training {off} → {on} img/s with oneDNN (bfloat16: "
                       f"{cnn.get('onednn_on_bfloat16')}; faster here: {cnn['precision_choice']}; "
                       f"the scratch part trained in {used or 'not run'})",
            bool(on and off and on > off) and (used is None or used == cnn["precision_choice"]))
    return rows


# --------------------------------------------------------------------------- report

def bench_markdown(b: dict, fig_dir: Path, fig_prefix: str, title: str | None = None) -> str:
    """A markdown report of a bench.json (``title``: Markdown): machine, each goal met or not,
    figures and plots. What the file says is shown literally (:func:`~tlkit.markup.md_text`)."""
    import pandas as pd

    from tlkit import plots
    from tlkit.markup import md_code, md_text

    hw = b.get("hardware", {})
    device = ", ".join(hw.get("gpus") or []) or f"{hw.get('cpu')} ({hw.get('cores')} cores)"
    device_text = md_text(device)
    created = str(b.get("created", ""))[:10]
    key = re.sub(r"[^\w.-]", "_", f"bench_{b.get('suite')}_{created}")  # a file name in fig_dir
    lines = [f"## {title or 'Benchmark'}: {md_code(b.get('suite'))} suite", "",
             f"**Machine:** {device_text} · **backend:** {md_text(b.get('backend'))} ({md_text(b.get('precision'))}) · "
             f"**date:** {md_text(created)} · **tlkit commit:** {md_code((b.get('git_commit') or '')[:10])}"
             + (" (with local changes)" if b.get("dirty") else ""), ""]
    if b.get("dry_run"):
        lines += ["**Dry run:** the gpu suite's code at the smoke suite's sizes (synthetic data, random weights, "
                  "a few batches), on a smoke course: the figures show that it runs, not what this machine "
                  "does, and no goal is judged.", ""]
    goals = b["goals"] if isinstance(b.get("goals"), list) else goal_rows(b)
    verdict = {True: "**met**", False: "**not met**"}
    lines += ["| goal | target | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {md_text(g['goal'])} | {md_text(g['target'])} | {md_text(g['measured'])} | "
              f"{verdict.get(g['met']) or md_text(g.get('why', NOT_CIFAR10))}"
              + (f" ({md_text(g['flag'])})" if g.get("flag") else "") + " |" for g in goals]
    lines.append("")
    c = b.get("gpu_course")
    if c:
        lines += [f"### The {md_text(c['profile'])} course, per notebook", "", "| notebook | seconds |", "|---|---|"]
        lines += [f"| {n} | {md_text(c[n])} |" for n in NOTEBOOKS if n in c] + [f"| total | {md_text(c['total'])} |", ""]
    r = b.get("resnet50")
    if r:
        lines += ["### ResNet-50 training throughput", "",
                  f"{md_text(r['img_size'])} px, {md_text(r['precision'])}, random weights, one batch held on the "
                  f"device: images/s over {r['seconds']:g} s after {md_text(r['warmup_steps'])} warm-up steps, on "
                  f"{md_text(r['device'])}.", "",
                  "| batch | img/s |", "|---|---|"]
        lines += [f"| {md_text(k)} | {'out of memory' if v is None else md_text(v)} |"
                  for k, v in r["by_batch"].items()] + [""]
    parts = {p: m for p, m in (b.get("measured") or {}).items() if isinstance(m, dict)}
    if parts:
        lines += ["Machine load (1-minute load average) when each part started, and the share of the CPU "
                  "other processes took while it ran: "
                  + ", ".join(f"{md_text(p)} {md_text(m.get('load_before'))}"
                              + (f" ({m['others']:.0%})" if m.get("others") is not None else "")
                              for p, m in parts.items()) + ".", ""]
    be = {n: r for n, r in (b.get("backends") or {}).items() if isinstance(r, dict)}
    if be:
        lines += ["### TensorFlow against JAX on this CPU", "",
                  f"Float32, one batch held in memory, {md_text(b['backends'].get('steps'))} timed steps after "
                  "a traced one, each backend in its own process.", "",
                  "| workload | px | batch | TensorFlow img/s | JAX img/s | JAX with oneDNN convolutions img/s "
                  "| TensorFlow / JAX |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {md_text(n.replace('_', ' '))} | {md_text(r['img_size'])} | {md_text(r['batch'])} | "
                  f"{r['tensorflow']:,.1f} | {r['jax']:,.1f} | "
                  + (f"{r['jax_onednn']:,.1f}" if r.get("jax_onednn") else "–")
                  + f" | {md_text(r['ratio'])} |" for n, r in be.items()]
        lines += ["", f"JAX with oneDNN convolutions: XLA's flag {md_code(b['backends'].get('jax_onednn_flag'))} "
                  "(experimental), which hands XLA:CPU's convolutions to oneDNN, the library behind "
                  "TensorFlow's CPU kernels.", ""]
    k = b.get("cpu_kernels") or {}
    rows = {w: r for w, r in k.items() if isinstance(r, dict)}
    if rows:
        lines += ["### CPU kernels", "", "| CPU workload (img/s) | oneDNN off, float32 | oneDNN on, float32 | oneDNN on, bfloat16 | chosen |",
                  "|---|---|---|---|---|"]
        for w, r in rows.items():
            lines.append("| " + " | ".join(md_text(v) for v in (
                w.replace("_", " "), r.get("onednn_off_float32"), r.get("onednn_on_float32"),
                r.get("onednn_on_bfloat16"), r.get("precision_choice"))) + " |")
        lines += ["", f"Native bfloat16 on this CPU: {'yes' if k.get('cpu_bf16') else 'no'}.", ""]
    s = b.get("scratch") or {}
    curves = [(name, c) for name, c in (("CNN from scratch (validation, no TTA)", s.get("curve")),
                                        ("seed-style baseline (validation)", s.get("baseline_curve"))) if c]
    if curves:
        fd = pd.DataFrame([{**p, "run": name} for name, c in curves for p in c])
        fig = plots.lines(fd, "seconds", "val_accuracy", hue="run",
                          title="From scratch on CIFAR-10: validation accuracy against training time",
                          xlabel="training time (s)", ylabel="validation accuracy")
        lines.append(plots.myst_figure(
            fig, fig_dir / f"{key}_scratch.png", f"{fig_prefix}/{key}_scratch.png",
            "Line chart of validation accuracy against seconds of training for the course CNN and the baseline",
            f"Accuracy against wall time on {device_text}; the test accuracy above is with flip TTA."))
    models = b.get("models") or []
    if models:
        df = pd.DataFrame(models)
        df["train_gflops"] = df["train_flops_per_second"] / 1e9
        df["gflops_per_image"] = df["forward_flops"] / 1e9
        lines += ["| model | px | params | GFLOPs/img | train img/s | train step img/s | inference img/s | train GFLOP/s |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in df.itertuples():
            lines.append(f"| {md_text(r.model)} | {md_text(r.img_size)} | {r.params:,} | {r.gflops_per_image:.2f} | {r.train_images_per_second:.1f} | "
                         f"{r.train_step_images_per_second:.1f} | {r.inference_images_per_second:.1f} | {r.train_gflops:.1f} |")
        lines.append("")
        fig = plots.compare(df, "gflops_per_image", "inference_images_per_second", label="model", logx=True,
                            title=f"Inference throughput against compute ({device})",
                            xlabel="GFLOPs per image (log scale)", ylabel="inference images per second")
        lines.append(plots.myst_figure(
            fig, fig_dir / f"{key}_models.png", f"{fig_prefix}/{key}_models.png",
            "Scatter plot of inference images per second against GFLOPs per image for each model",
            f"Throughput of every registry model on {device_text}."))
    f = b.get("frozen_mobilenetv2")
    if f:
        by_alpha = f.get("by_alpha") or {str(f.get("alpha", 1.0)): f}
        fd = pd.DataFrame([{"img_size": int(size), "test_accuracy": acc, "weights": f"alpha {a}"}
                           for a, row in by_alpha.items() for size, acc in row["by_size"].items()])
        fig = plots.lines(fd, "img_size", "test_accuracy", hue="weights",
                          title="Frozen MobileNetV2 on CIFAR-10 by input size",
                          xlabel="input size (px)", ylabel="test accuracy")
        lines.append(plots.myst_figure(
            fig, fig_dir / f"{key}_frozen.png", f"{fig_prefix}/{key}_frozen.png",
            "Line chart of frozen MobileNetV2 test accuracy against input size, per width",
            "Weights: " + "; ".join(f"alpha {md_text(a)}: {md_code(Path(str(row.get('weights_source'))).name)}"
                                    for a, row in by_alpha.items()) + "."))
        lines += extraction_cost_lines(by_alpha)
        if f.get("heads"):
            lines += [f"Where the features are read and how the head is fitted, at {f['heads_img_size']} px "
                      f"(taps: {md_text(', '.join(f['taps']) or 'none')}): "
                      + "; ".join(f"{md_text(k)} head {v['test_accuracy']:.3f} test ({v['val_accuracy']:.3f} "
                                  f"validation, {v['head_seconds']:.0f} s)" for k, v in f["heads"].items())
                      + f". Chosen on validation: {md_text(f['chosen'])}.", ""]
    return "\n".join(lines)


def extraction_cost_lines(by_alpha: dict) -> list[str]:
    """How frozen extraction's cost grows with its work: seconds against images × pixels, per
    width, and the microseconds per megapixel at each size (flat when cost ∝ pixels)."""
    from tlkit.markup import md_text

    lines = []
    for a, row in by_alpha.items():
        secs, n = row.get("extraction_seconds") or {}, row.get("extracted_images")
        if not secs or not n:
            continue
        per = {size: t / (n * int(size) ** 2 / 1e6) for size, t in secs.items()}
        lines.append(f"Extraction cost, MobileNetV2 alpha {md_text(a)}, {n:,} images: "
                     + ", ".join(f"{size} px {t:,.0f} s ({per[size] * 1e6:,.0f} µs per megapixel)"
                                 for size, t in secs.items())
                     + ": cost grows with images × pixels where the last figure stays flat.")
    return lines + ([""] if lines else [])
