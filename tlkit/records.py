"""Run records: one JSON file per run, written atomically, read back as a DataFrame."""
from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Iterable

from tlkit.system import hardware, jsonable, write_json

SCHEMA = 1
PACKAGES = ("tlkit", "keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch", "numpy",
            "scikit-learn", "matplotlib", "papermill")


def run_prefix(base: str, dataset: str, img_size: int, batch_size: int, epochs: int, *,
               lr: float, seed: int, weights: str, alpha: float | None = None,
               limit_per_class: int | None = None, finetune_epochs: int | None = None) -> str:
    """The name of a CLI run's folder and files, one per setting that changes the result:
    ``<base>__<dataset>__img<S>__bs<B>__ep<N>__lr<LR>__seed<K>__w<weights>`` then
    ``__a<alpha>``, ``__lim<L>`` and ``__ft<M>`` (fine-tuned M epochs) when set.
    The caller passes filesystem-safe ``dataset`` and ``weights`` parts."""
    parts = [base, dataset, f"img{img_size}", f"bs{batch_size}", f"ep{epochs}", f"lr{lr:g}",
             f"seed{seed}", f"w{weights}"]
    if alpha is not None:
        parts.append(f"a{alpha:g}")
    if limit_per_class is not None:
        parts.append(f"lim{limit_per_class}")
    if finetune_epochs is not None:
        parts.append(f"ft{finetune_epochs}")
    return "__".join(parts)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """The commit of the repository holding tlkit (or the working directory), if any."""
    for where in (Path(__file__).resolve().parent, Path.cwd()):
        try:
            out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                                 text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def environment() -> dict:
    """Hardware, backend, versions and commit: where a result came from."""
    import keras

    return {"hardware": hardware(),
            "backend": keras.config.backend(), "precision": keras.mixed_precision.global_policy().name,
            "versions": versions(), "git_commit": git_commit()}


def make_record(*, kind: str, name: str, params: dict, dataset: dict, model: dict, metrics: dict,
                history: dict | None = None, wall_seconds: float = 0.0,
                images_per_second: float = 0.0, seed: int | None = None,
                evaluation: dict | None = None, extra: dict | None = None) -> dict:
    """Assemble one run record (see the README for the fields)."""
    env = environment()
    rec = {"schema": SCHEMA, "kind": kind, "name": name,
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "params": params, "dataset": dataset, "model": model,
           "weights_source": model.get("weights_source", "random"),
           "metrics": metrics, "history": history or {}, "wall_seconds": wall_seconds,
           "images_per_second": images_per_second, "seed": seed, **env}
    if evaluation is not None:
        rec["evaluation"] = evaluation
    if extra:
        rec.update(extra)
    return jsonable(rec)


def write_record(record: dict, path: str | Path) -> Path:
    """Write a run record atomically."""
    return write_json(record, path)


def read_records(folders: str | Path | Iterable[str | Path]) -> list[dict]:
    """Every ``*.json`` run record under the given folder(s), with its path."""
    if isinstance(folders, (str, Path)):
        folders = [folders]
    out = []
    for folder in folders:
        for p in sorted(Path(folder).rglob("*.json")):
            try:
                rec = json.loads(p.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{p} is not valid JSON ({e}); delete or rewrite it") from e
            if isinstance(rec, dict) and rec.get("schema") == SCHEMA and "metrics" in rec:
                rec["path"] = str(p)
                out.append(rec)
    return out


def load_records(folders: str | Path | Iterable[str | Path]):
    """Run records as a pandas DataFrame: one row per run, nested fields flattened
    with dots (``metrics.test_accuracy``, ``params.epochs``, ``model.base``...)."""
    import pandas as pd

    rows = []
    for rec in read_records(folders):
        slim = {k: v for k, v in rec.items() if k not in ("history", "evaluation")}
        rows.append(slim)
    if not rows:
        return pd.DataFrame()
    return pd.json_normalize(rows, sep=".")


def label(record: dict) -> str:
    """Where a result came from, for captions: profile, device, date, backend."""
    hw = record.get("hardware", {})
    device = (hw.get("gpus") or [hw.get("cpu", "?")])[0]
    profile = record.get("params", {}).get("profile", "-")
    return f"{profile} profile, {device}, {str(record.get('created', ''))[:10]}, {record.get('backend')}"


def save_run(path: str | Path, *, kind: str, name: str, params: dict, dataset, model: dict,
             evaluation: dict, result=None, wall_seconds: float | None = None,
             images_per_second: float | None = None, seed: int | None = None,
             extra: dict | None = None) -> dict:
    """Make and write the record of one run (a notebook's training or probe); returns it.

    ``dataset`` is a :class:`tlkit.data.Dataset`; ``result`` a :class:`tlkit.train.TrainResult`.
    """
    history = result.history if result is not None else {}
    wall = wall_seconds if wall_seconds is not None else (result.wall_seconds if result else 0.0)
    ips = images_per_second if images_per_second is not None else (
        result.images_per_second if result else 0.0)
    rec = make_record(kind=kind, name=name, params=params, dataset=dataset.info(), model=model,
                      metrics=evaluation["summary"], history=history, wall_seconds=round(wall, 2),
                      images_per_second=round(ips, 1), seed=seed,
                      evaluation={k: v for k, v in evaluation.items() if k != "summary"},
                      extra=extra)
    write_record(rec, path)
    return rec


def weights_kind(source: str) -> str:
    """A short label of a weights source: ImageNet (local file / download), file, random."""
    if source.startswith("imagenet:download"):
        return "ImageNet (download)"
    if source.startswith("imagenet:"):
        return "ImageNet (local file)"
    if source.startswith("file:"):
        return "weights file"
    return "random (from scratch)"


def to_frame(recs: Iterable[dict], kinds: list[str] | None = None):
    """Records as a tidy DataFrame for tables and plots: one row per run with ``run``,
    ``kind``, ``model``, ``weights``, ``img_size``, sizes, speeds and every metric."""
    import pandas as pd

    rows = []
    for r in recs:
        if kinds and r.get("kind") not in kinds:
            continue
        m = r.get("model", {})
        rows.append({"run": r.get("name"), "kind": r.get("kind"), "model": m.get("base"),
                     "weights": weights_kind(r.get("weights_source", "random")),
                     "weights_source": r.get("weights_source"),
                     "img_size": m.get("img_size") or r.get("params", {}).get("img_size"),
                     "backbone_params": m.get("backbone_params"),
                     "num_classes": len(r.get("dataset", {}).get("class_names", [])) or None,
                     "wall_seconds": r.get("wall_seconds"), "images_per_second": r.get("images_per_second"),
                     "profile": r.get("params", {}).get("profile"), "backend": r.get("backend"),
                     "created": r.get("created"), **r.get("metrics", {})})
    return pd.DataFrame(rows)


def metrics_table(recs: Iterable[dict]):
    """Accuracy and loss per split, and the gaps, of each run: a small DataFrame."""
    import pandas as pd

    rows = []
    for r in recs:
        m = r["metrics"]
        for split in ("train", "val", "test"):
            if f"{split}_accuracy" in m:
                rows.append({"run": r["name"], "split": split, "accuracy": m[f"{split}_accuracy"],
                             "loss": m[f"{split}_loss"]})
    return pd.DataFrame(rows).pivot(index="run", columns="split", values=["accuracy", "loss"]).round(4)
