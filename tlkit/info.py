"""What this machine offers: backend, devices, versions, local data sets and weights."""
from __future__ import annotations

from pathlib import Path

from tlkit.data import BUILTIN, data_dirs, find_local
from tlkit.models import local_weights, weights_dirs


def keras_dataset_cache(name: str) -> Path | None:
    """Keras's own download of a data set, if it is in ~/.keras/datasets."""
    import os

    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
    stem = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python",
            "flowers": "flower_photos"}.get(name)
    if stem and home.is_dir():
        for p in home.iterdir():
            if p.name.startswith(stem):
                return p
    return None


def info(data_dir: str | None = None, weights_dir: str | None = None) -> dict:
    """A dict of everything ``tlkit info`` prints."""
    from tlkit.records import environment

    env = environment()
    datasets = {}
    for name in BUILTIN:
        if name == "synthetic":
            datasets[name] = "built in"
            continue
        local = find_local(name, data_dir) or keras_dataset_cache(name)
        datasets[name] = str(local) if local else "not found locally (Keras downloads it when online)"
    return {**env, "data_dirs": [str(d) for d in data_dirs(data_dir)],
            "weights_dirs": [str(d) for d in weights_dirs(weights_dir)],
            "datasets": datasets, "weights": local_weights(weights_dir)}


def info_text(data_dir: str | None = None, weights_dir: str | None = None) -> str:
    """``tlkit info`` as readable lines."""
    d = info(data_dir, weights_dir)
    hw = d["hardware"]
    lines = [f"backend   {d['backend']} ({d['precision']})",
             f"cpu       {hw['cpu']} ({hw['cores']} cores)",
             f"gpus      {', '.join(hw['gpus']) or 'none'}",
             "versions  " + ", ".join(f"{k} {v}" for k, v in d["versions"].items()),
             f"commit    {d['git_commit'] or '-'}",
             "data sets (searched: " + (", ".join(d["data_dirs"]) or "no --data-dir / TLKIT_DATA_DIR") + ")"]
    lines += [f"  {k:10s} {v}" for k, v in d["datasets"].items()]
    lines.append("ImageNet weights (searched: " + ", ".join(d["weights_dirs"]) + ")")
    if not d["weights"]:
        lines.append("  none found: offline, pretrained models need --weights-dir or --weights none")
    for w in d["weights"]:
        alpha = f" alpha {w['alpha']}" if w["alpha"] is not None else ""
        lines.append(f"  {w['model']}{alpha}: {w['path']} ({w['mb']} MB)")
    return "\n".join(lines)
