"""Helpers shared by the serving tests: a tiny model file and image bytes good and bad."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np

NAMES = ["cat", "dog", "fox"]


def tiny_model(folder: Path, names: list[str] = NAMES, seed: int = 0, name: str = "tiny_model.keras") -> Path:
    """An untrained 32-px from-scratch CNN saved by ``modelfile.save_model`` (no training
    needed: serving only has to give the model's own answers)."""
    import keras

    from tlkit.modelfile import save_model
    from tlkit.models import build_classifier

    keras.utils.set_random_seed(seed)
    clf = build_classifier("cnn", len(names), input_shape=(32, 32, 3))
    return save_model(clf.model, Path(folder) / name, names, dataset="synthetic", base="cnn")


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (48, 40), seed: int = 0) -> bytes:
    """A random RGB image (width, height) encoded as ``fmt``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` RGB pixels in a few hundred bytes
    (a decompression bomb: its few rows of zeros inflate to nothing, its size to gigabytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * min(width, 1000)) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def encode(arr: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    """``arr`` as an image of ``mode`` (Pillow's, default from the array) encoded as ``fmt``."""
    from PIL import Image

    im = Image.fromarray(arr)
    buf = io.BytesIO()
    (im.convert(mode) if mode else im).save(buf, format=fmt)
    return buf.getvalue()
