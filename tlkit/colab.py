"""Colab: keep a notebook's results, data and caches on Google Drive between sessions.

Each Colab notebook runs on a fresh machine whose files are gone when the session ends. With
:func:`keep_on_drive` (the optional cell after each notebook's install cell), the working
folder, the caches and Keras's downloads move to a folder on Google Drive, so notebook 2
finds notebook 1's records in a later session and CIFAR-10 is downloaded once. Outside Colab
nothing changes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

MOUNT = "/content/drive"
DRIVE_ROOT = f"{MOUNT}/MyDrive/tlkit"
FORGOTTEN = ("the records and figures in out_dir (which later notebooks read), the CIFAR-10 download "
             "and the feature cache")


def in_colab() -> bool:
    """Whether this runs in a Colab kernel."""
    return "google.colab" in sys.modules


def persist(root: str | Path) -> dict[str, Path]:
    """Keep everything a notebook writes under ``root``: it becomes the working folder (so a
    relative ``out_dir`` lands there), with the caches of data and features
    (``$TLKIT_CACHE_DIR``), local data sets (``$TLKIT_DATA_DIR``) and Keras's downloads of
    data sets and ImageNet weights (``$KERAS_HOME``) inside. Returns those folders."""
    root = Path(root).expanduser().resolve()
    paths = {"root": root, "TLKIT_CACHE_DIR": root / "cache", "TLKIT_DATA_DIR": root / "data",
             "KERAS_HOME": root / "keras"}
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    for name, path in paths.items():
        if name != "root":
            os.environ[name] = str(path)
    os.chdir(root)
    if "keras" in sys.modules:  # Keras reads KERAS_HOME once, when it is imported
        print(f"note: Keras was loaded before this cell, so its downloads go to ~/.keras this session, "
              f"not {paths['KERAS_HOME']}: restart the runtime and run this cell before the others")
    return paths


def keep_on_drive(use_drive: bool, root: str | Path = DRIVE_ROOT) -> dict[str, Path] | None:
    """In Colab: with ``use_drive``, mount Google Drive and :func:`persist` under ``root``;
    without it, say in one line what the end of the session takes away. Elsewhere: nothing."""
    if not in_colab():
        return None
    if not use_drive:
        print(f"Drive is off: when this Colab session ends, {FORGOTTEN} are gone. "
              "Set use_drive = True in this cell to keep them on your Google Drive.")
        return None
    from google.colab import drive

    drive.mount(MOUNT)
    paths = persist(root)
    print(f"Drive is on: out_dir, the data and the caches are kept under {paths['root']}")
    return paths
