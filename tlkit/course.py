"""The course: notebook settings per profile, and the papermill runner.

Each notebook's ``parameters`` cell holds the real (``gpu``) course settings. A profile
(``smoke`` or ``cpu``) replaces those a user has not changed, so one notebook serves a
GPU server, a laptop and CI. ``run_course`` executes the notebooks in order.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tlkit import TlkitError
from tlkit.records import environment
from tlkit.system import write_json

NOTEBOOKS = ["01_cnn_from_scratch", "02_frozen_mobilenetv2", "03_fine_tuning",
             "04_model_comparison", "05_overfitting_gaps"]
DEPENDS = {"01": [], "02": ["01"], "03": ["01", "02"], "04": [], "05": ["01", "02", "03", "04"]}
PROFILES = ("smoke", "cpu", "gpu")

# The parameters cells' values: the real course, run on a GPU.
GPU = {
    "01": dict(dataset="cifar10", limit_per_class=None, epochs=40, batch_size=256, lr=4e-3,
               label_smoothing=0.1, early_stopping=10),
    "02": dict(dataset="cifar10", limit_per_class=None, sizes=[32, 96, 160, 224], alpha=1.0,
               weights="imagenet", head_epochs=40),
    "03": dict(dataset="cifar10", limit_per_class=None, img_size=160, alpha=1.0, weights="imagenet",
               head_epochs=20, finetune_epochs=6, unfreeze_last=40, stages=[20, 60, 120],
               batch_size=128),
    "04": dict(dataset="cifar10", limit_per_class=None, img_size=224,
               models_to_compare=["resnet50", "resnet101", "resnet152", "vgg16", "vgg19", "efficientnetb0",
                       "efficientnetb3", "mobilenetv2", "mobilenetv3large"],
               weights="imagenet", head_epochs=30),
    "05": dict(dataset="cifar10", ablation_img_size=160, ablation_limit_per_class=None,
               ablation_weights="imagenet",
               scratch_limit_per_class=1000, scratch_epochs=30, head_epochs=30),
}
# What a profile changes.
CHANGES = {
    "smoke": {
        "01": dict(dataset="synthetic", epochs=3, batch_size=32, lr=2e-3, early_stopping=None),
        "02": dict(dataset="synthetic", sizes=[32, 64], alpha=0.35, weights="none", head_epochs=5),
        "03": dict(dataset="synthetic", img_size=32, alpha=0.35, weights="none", head_epochs=3,
                   finetune_epochs=1, unfreeze_last=10, stages=[5, 10], batch_size=32),
        "04": dict(dataset="synthetic", img_size=32,
                   models_to_compare=["mobilenetv2", "efficientnetb0"],
                   weights="none", head_epochs=5),
        "05": dict(dataset="synthetic", ablation_img_size=64, ablation_weights="none", scratch_limit_per_class=60,
                   scratch_epochs=3, head_epochs=5),
    },
    "cpu": {
        "01": dict(limit_per_class=1000, epochs=8, batch_size=128, lr=3e-3, early_stopping=None),
        "02": dict(limit_per_class=1000, sizes=[32, 96, 160], head_epochs=40),
        "03": dict(limit_per_class=400, img_size=96, head_epochs=20, finetune_epochs=2,
                   unfreeze_last=40, stages=[20, 60], batch_size=64),
        "04": dict(limit_per_class=150, img_size=96),
        "05": dict(ablation_img_size=160, ablation_limit_per_class=1000, scratch_limit_per_class=200,
                   scratch_epochs=10),
    },
}


def notebook_id(name: str) -> str:
    return name[:2]


def resolve(nb: str, namespace: dict) -> dict:
    """Apply the profile to a notebook's parameters, in ``namespace`` (its globals).

    The profile is ``namespace["profile"]``, else ``$TLKIT_PROFILE``, else ``gpu``. Values a
    user changed from the parameters cell's defaults (e.g. with papermill ``-p``) are kept.
    Returns the settings in effect and prints them.
    """
    profile = namespace.get("profile") or os.environ.get("TLKIT_PROFILE") or "gpu"
    if profile not in PROFILES:
        raise TlkitError(f"unknown profile '{profile}': choose one of {', '.join(PROFILES)}")
    namespace["profile"] = profile
    for key, value in CHANGES.get(profile, {}).get(nb, {}).items():
        if namespace.get(key) == GPU[nb][key]:
            namespace[key] = value
    settings = {k: namespace[k] for k in GPU[nb]}
    settings["profile"] = profile
    for k in ("seed", "data_dir", "weights_dir", "out_dir"):
        if k in namespace:
            settings[k] = namespace[k]
    print("settings: " + ", ".join(f"{k}={v!r}" for k, v in settings.items()))
    return settings


def output_dirs(out_dir: str | Path) -> tuple[Path, Path]:
    """(records folder, figures folder) of a course run, created."""
    out = Path(out_dir)
    (out / "records").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    return out / "records", out / "figures"


def source_notebooks(folder: str | Path | None = None) -> Path:
    """The folder of the course notebooks (``notebooks/`` of the repository)."""
    candidates = [Path(folder)] if folder else [Path.cwd() / "notebooks",
                                                Path(__file__).resolve().parents[1] / "notebooks"]
    for c in candidates:
        if (c / f"{NOTEBOOKS[0]}.ipynb").is_file():
            return c
    raise TlkitError("course notebooks not found: run from the repository root or pass --notebooks DIR")


def _failure(exc: Exception) -> dict:
    return {"cell": getattr(exc, "exec_count", None), "cell_index": getattr(exc, "cell_index", None),
            "error": f"{getattr(exc, 'ename', type(exc).__name__)}: "
                     f"{getattr(exc, 'evalue', str(exc))}"[:500]}


def run_course(profile: str = "smoke", *, data_dir: str | None = None, weights_dir: str | None = None,
               out: str | Path | None = None, notebooks: str | Path | None = None,
               only: list[str] | None = None, log=print) -> dict:
    """Execute the notebooks in order with papermill; a failure skips its dependants.

    Writes the executed notebooks, ``records/``, ``figures/``, ``summary.json`` and
    ``summary.md`` into ``out`` (default ``runs/<profile>``). Returns the summary.
    """
    import papermill as pm

    if profile not in PROFILES:
        raise TlkitError(f"unknown profile '{profile}': choose one of {', '.join(PROFILES)}")
    src = source_notebooks(notebooks)
    out = Path(out or Path("runs") / profile).resolve()
    output_dirs(out)
    params = {"profile": profile, "out_dir": str(out)}
    if data_dir:
        params["data_dir"] = str(Path(data_dir).resolve())
    if weights_dir:
        params["weights_dir"] = str(Path(weights_dir).resolve())
    selected = [n for n in NOTEBOOKS if not only or notebook_id(n) in only]
    # A non-interactive backend in the kernel would silently drop every figure from the
    # executed notebooks (and so from the book): the kernel must use its inline backend.
    if os.environ.pop("MPLBACKEND", None):
        log("note: MPLBACKEND is ignored for the notebooks (they need the inline backend)")
    results: dict[str, dict] = {}
    start_all = time.perf_counter()
    for i, name in enumerate(selected, 1):
        nb = notebook_id(name)
        blocked = [d for d in DEPENDS[nb] if results.get(d, {}).get("status") not in (None, "ok")]
        prefix = f"[{i}/{len(selected)}] {name}"
        if blocked:
            results[nb] = {"notebook": name, "status": "skipped", "seconds": 0.0,
                           "reason": f"depends on failed notebook(s) {', '.join(blocked)}"}
            log(f"{prefix}: skipped ({results[nb]['reason']})", flush=True)
            continue
        log(f"{prefix}: running ...", flush=True)
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(src / f"{name}.ipynb"), str(out / f"{name}.ipynb"),
                                parameters=params, kernel_name="python3", cwd=str(out),
                                progress_bar=sys.stdout.isatty(), log_output=False)
            results[nb] = {"notebook": name, "status": "ok"}
        except Exception as e:  # papermill raises its own and nbclient errors; each is reported
            results[nb] = {"notebook": name, "status": "failed", **_failure(e)}
        results[nb]["seconds"] = round(time.perf_counter() - start, 1)
        r = results[nb]
        detail = "ok" if r["status"] == "ok" else f"FAILED in cell {r.get('cell')}: {r.get('error')}"
        log(f"{prefix}: {detail} ({r['seconds']:.0f} s)", flush=True)
    env = environment()
    summary = {"profile": profile, "out": str(out), "seconds": round(time.perf_counter() - start_all, 1),
               "notebooks": list(results.values()), "failed": [k for k, v in results.items()
                                                               if v["status"] != "ok"],
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "data_dir": params.get("data_dir"),
               "weights_dir": params.get("weights_dir"), **env}
    write_json(summary, out / "summary.json")
    (out / "summary.md").write_text(summary_markdown(summary))
    log(f"course ({profile}): {len(results) - len(summary['failed'])}/{len(results)} notebooks ok "
        f"in {summary['seconds']:.0f} s -> {out}", flush=True)
    return summary


def summary_markdown(summary: dict) -> str:
    """The run summary as a markdown table."""
    lines = [f"# Course run: {summary['profile']} profile", "",
             f"{summary['created']} · {summary['hardware']['cpu']} · "
             f"GPUs: {', '.join(summary['hardware']['gpus']) or 'none'} · backend {summary['backend']}",
             "", "| notebook | status | seconds | failing cell |", "|---|---|---|---|"]
    for r in summary["notebooks"]:
        cell = f"cell {r.get('cell')}: {r.get('error')}" if r["status"] == "failed" else r.get("reason", "")
        lines.append(f"| {r['notebook']} | {r['status']} | {r['seconds']} | {cell} |")
    lines.append(f"| total | | {summary['seconds']} | |")
    return "\n".join(lines) + "\n"
