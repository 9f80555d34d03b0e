"""Shared fixtures of the tlkit test suite.

Everything runs offline, on a CPU, in a few minutes: tiny images (16-32 px), few
images, one or two epochs, and expensive things (a trained CLI run, a fake ImageNet
weights file) built once per session.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

# Keras fixes its home folder (downloads, keras.json) when it is imported, so point it at
# an empty temporary folder before anything imports Keras: no test reads or writes ~/.keras,
# and no Keras download cache can make an "offline" test pass by accident.
_KERAS_HOME = tempfile.mkdtemp(prefix="tlkit-tests-keras-")
os.environ["KERAS_HOME"] = _KERAS_HOME
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MNV2_035 = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"


# --------------------------------------------------------------------------- isolation

@pytest.fixture(scope="session", autouse=True)
def _session_env(tmp_path_factory):
    """Session-wide: a temporary tlkit cache, no inherited data/weights folders or devices.

    Session-scoped so that session fixtures (built before any function fixture) never
    touch ~/.cache either."""
    saved = {k: os.environ.get(k) for k in ("TLKIT_CACHE_DIR", "TLKIT_DATA_DIR", "TLKIT_WEIGHTS_DIR",
                                             "TLKIT_DEVICES")}
    os.environ["TLKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("tlkit-cache-session"))
    os.environ.pop("TLKIT_DATA_DIR", None)
    os.environ.pop("TLKIT_WEIGHTS_DIR", None)
    os.environ.pop("TLKIT_DEVICES", None)  # one device unless a test asks for two
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    shutil.rmtree(_KERAS_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty ``$TLKIT_CACHE_DIR``."""
    path = tmp_path_factory.mktemp("tlkit-cache")
    monkeypatch.setenv("TLKIT_CACHE_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends in float32: a test that picks mixed precision (the CPU
    bfloat16 policy, say) must not change the models of the tests after it."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def no_local_keras(tmp_path, monkeypatch) -> Path:
    """HOME and KERAS_HOME in an empty folder: no Keras cache, no ~/.keras/models."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(home / ".keras"))
    monkeypatch.delenv("TLKIT_DATA_DIR", raising=False)
    monkeypatch.delenv("TLKIT_WEIGHTS_DIR", raising=False)
    return home


def network_reachable(host: str = "storage.googleapis.com", port: int = 443) -> bool:
    """True when a download could succeed (then the offline tests cannot test offline)."""
    try:
        with socket.create_connection((host, port), timeout=1.5):
            return True
    except OSError:
        return False


@pytest.fixture
def offline():
    if network_reachable():
        pytest.skip("this machine is online: the offline error path would download instead")


def count_opens(monkeypatch) -> list:
    """The paths tlkit.system opens from now on (it hashes files): whether a file was read."""
    import tlkit.system as system

    reads, real = [], open
    monkeypatch.setattr(system, "open", lambda p, *a, **k: reads.append(p) or real(p, *a, **k),
                        raising=False)
    return reads


def replicas() -> int:
    """How many devices a training step runs on here (1: nothing distributed)."""
    import keras

    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.get_strategy().num_replicas_in_sync
    distribution = keras.distribution.distribution()
    return int(distribution.device_mesh.devices.size) if distribution else 1


# --------------------------------------------------------------------------- images on disk

def png_bytes(rng: np.random.Generator, size: int | tuple[int, int] = 8, colour=None) -> bytes:
    """A small random RGB PNG; ``colour`` (0-255 RGB) tints it so classes differ."""
    from PIL import Image

    h, w = (size, size) if isinstance(size, int) else size
    img = rng.integers(0, 60, (h, w, 3))
    if colour is not None:
        img = img + np.asarray(colour)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


COLOURS = {"cat": (190, 20, 20), "dog": (20, 190, 20), "fox": (20, 20, 190), "owl": (150, 150, 20)}


def image_files(layout: dict[str, int], size: int = 8, seed: int = 0,
                prefix: str = "") -> dict[str, bytes]:
    """{relative path: PNG bytes} for ``layout`` = {"<split>/<class>" or "<class>": count}."""
    rng = np.random.default_rng(seed)
    files = {}
    for folder, n in layout.items():
        cls = folder.split("/")[-1]
        for i in range(n):
            files[f"{prefix}{folder}/{i:03d}.png"] = png_bytes(rng, size, COLOURS.get(cls))
    return files


def write_folder(root: Path, files: dict[str, bytes], empty_dirs: tuple[str, ...] = ()) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for d in empty_dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    return root


def write_tar(path: Path, files: dict[str, bytes], empty_dirs: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        dirs = sorted({str(Path(r).parent) for r in files} | set(empty_dirs))
        for d in dirs:  # directory members first, as `tar czf` writes them
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, files: dict[str, bytes], empty_dirs: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for d in empty_dirs:
            zf.writestr(d.rstrip("/") + "/", b"")
        for rel, data in files.items():
            zf.writestr(rel, data)
    return path


WRITERS = {"folder": write_folder, "tar": write_tar, "zip": write_zip}


def write_dataset(kind: str, tmp: Path, files: dict[str, bytes], empty_dirs: tuple[str, ...] = (),
                  name: str = "ds") -> Path:
    """Write ``files`` as a folder, a .tar.gz or a .zip under ``tmp``; returns its path."""
    target = {"folder": tmp / name, "tar": tmp / f"{name}.tar.gz", "zip": tmp / f"{name}.zip"}[kind]
    return WRITERS[kind](target, files, empty_dirs)


# --------------------------------------------------------------------------- synthetic data

@pytest.fixture(scope="session")
def tiny_ds():
    """A small synthetic data set: 4 classes, 32 px, 12 training images a class."""
    from tlkit.data import load_dataset

    return load_dataset("synthetic", synthetic_per_class=12, synthetic_size=32, seed=0)


# --------------------------------------------------------------------------- fake ImageNet weights

@pytest.fixture(scope="session")
def fake_mnv2(tmp_path_factory):
    """A MobileNetV2 alpha 0.35 no-top weights file in Keras's own (legacy HDF5) format,
    under the exact file name Keras downloads, with seeded random weights.

    Keras 3's ``save_weights`` writes the new ``.weights.h5`` layout only, which
    ``keras.applications`` cannot read from a plain ``.h5`` name; ``model.save("<name>.h5")``
    writes the legacy HDF5 file (weights under ``model_weights``) that ``load_weights``
    reads for an ``.h5`` path, which is what ``keras.applications`` calls.
    Returns (folder, file path, list of the saved weight arrays).
    """
    import keras

    folder = tmp_path_factory.mktemp("weights")
    model = keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None,
                                           input_shape=(96, 96, 3))
    rng = np.random.default_rng(123)
    weights = [w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()]
    model.set_weights(weights)
    path = folder / MNV2_035
    model.save(path)
    return folder, path, weights


# --------------------------------------------------------------------------- one trained CLI run

CLI_PREFIX = "cnn__synthetic__img32__bs32__ep1__lr0.002__seed0__wrandom"


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m tlkit.cli ARGS`` in a subprocess (the real console entry point)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "tlkit.cli", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory):
    """One ``tlkit train`` run on synthetic data, shared by the CLI, serve and record tests:
    (the run folder ``OUT/CLI_PREFIX`` holding ``CLI_PREFIX_model.keras``..., the process)."""
    out = tmp_path_factory.mktemp("cli-run")
    proc = run_cli("train", "--dataset", "synthetic", "--base", "cnn", "--epochs", "1",
                   "--batch-size", "32", "--img-size", "32", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / CLI_PREFIX, proc
