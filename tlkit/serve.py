"""Inference: load a trained model, read images safely, name what is in them or say 'unknown'.

The model file carries its class names (:mod:`tlkit.modelfile`), so nothing beside it is
trusted. Images are checked before they are decoded: a file that is not an image, is
truncated, or declares more pixels than ``max_pixels`` (a decompression bomb: huge
dimensions in a small file) is an :class:`ImageError` naming the file, never a traceback.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tlkit import TlkitError

#: A 48 MP phone photo fits; a decompression bomb (e.g. 20000 x 20000 zeros) does not.
DEFAULT_MAX_PIXELS = 50_000_000
#: Formats the web service accepts (Pillow's names).
WEB_FORMATS = ("JPEG", "PNG", "WEBP")
#: How to install what ``tlkit serve`` and ONNX export need.
SERVE_EXTRA = "pip install 'tlkit[serve]'"


class ImageError(TlkitError):
    """An image could not be read; ``status`` is the HTTP status the service answers."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def check_threshold(threshold: float) -> float:
    """The 'unknown' threshold, checked: a probability in [0, 1]."""
    if not 0.0 <= float(threshold) <= 1.0:
        raise TlkitError(f"--threshold must be a probability between 0 and 1, not {threshold}")
    return float(threshold)


def decode_image(source: bytes | str | Path, size: tuple[int, int], *, name: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS,
                 formats: Sequence[str] | None = None) -> np.ndarray:
    """Decode an image (bytes or a path) to a uint8 ``(height, width, 3)`` array of ``size``.

    The header is read first: more than ``max_pixels`` pixels (status 413) or a format not
    in ``formats`` (415) is refused before any pixel is decoded. JPEGs are decoded straight
    at a reduced scale (``draft``), and the camera's EXIF orientation is applied.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = name or (str(source) if isinstance(source, (str, Path)) else "upload")
    h, w = size
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            iw, ih = im.size
            if iw * ih > max_pixels:
                raise ImageError(f"image {name} is {iw}x{ih} = {iw * ih:,} pixels, over the limit of "
                                 f"{max_pixels:,}; send a smaller image (or raise the pixel limit)", 413)
            if formats is not None and im.format not in formats:
                raise ImageError(f"image {name} is {im.format}; send {', '.join(formats)}", 415)
            im.draft("RGB", (max(w, h), max(w, h)))
            rgb = ImageOps.exif_transpose(im).convert("RGB")
            return np.asarray(rgb.resize((w, h), Image.BILINEAR), dtype=np.uint8)
    except Image.DecompressionBombError as e:
        raise ImageError(f"image {name} is too large to decode safely ({e})", 413) from e
    except UnidentifiedImageError as e:
        raise ImageError(f"cannot read image {name}: not an image Pillow knows "
                         f"(send {', '.join(formats or WEB_FORMATS)})") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image {name}: {e} (truncated or damaged?)") from e


@dataclass(frozen=True)
class Limits:
    """What one upload to the service may be; the defaults are ``tlkit serve``'s."""

    max_bytes: int = 10 * 2**20      # one file
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_files: int = 16              # one batch
    top_k: int = 3                   # guesses in each answer

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_files", "top_k"):
            if getattr(self, name) < 1:
                raise TlkitError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")


@dataclass
class Predictor:
    """A trained classifier with its class names and an 'unknown' threshold."""

    model: object
    class_names: list[str]
    threshold: float = 0.5
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.threshold = check_threshold(self.threshold)

    @classmethod
    def load(cls, model_path: str | Path, class_names: Sequence[str] | None = None,
             threshold: float = 0.5) -> "Predictor":
        """Load a ``.keras`` file safely; class names come from inside the file unless given.

        The threshold is checked first, so a bad one fails before the model is loaded."""
        from tlkit.modelfile import load_model

        threshold = check_threshold(threshold)
        model, names, meta = load_model(model_path, class_names)
        return cls(model, names, threshold, meta)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.model.input_shape[1:])  # type: ignore[attr-defined]

    def proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities for uint8 images of the model's input shape."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.shape[1:] != self.input_shape:
            raise TlkitError(f"images have shape {images.shape[1:]}, the model takes {self.input_shape}; "
                             "use predict_files (it resizes) or resize them first")
        images = images.astype(np.uint8)
        chunks = [np.asarray(self.model.predict_on_batch(images[i:i + batch_size]))  # type: ignore[attr-defined]
                  for i in range(0, len(images), batch_size)]
        return np.concatenate(chunks).astype(np.float64)

    def predict(self, images: np.ndarray) -> list[tuple[str, float]]:
        """(label or 'unknown', confidence) for each uint8 image of the model's input shape."""
        from tlkit.evaluate import predict_labels

        proba = self.proba(images)
        labels = predict_labels(proba, self.class_names, self.threshold)
        return list(zip(labels, proba.max(1).tolist()))

    def classify(self, images: np.ndarray, top_k: int = 3) -> list[dict]:
        """For each image: ``label`` (or 'unknown'), ``confidence``, ``unknown`` and ``top_k``."""
        from tlkit.evaluate import predict_labels

        proba = self.proba(images)
        labels = predict_labels(proba, self.class_names, self.threshold)
        k = min(top_k, len(self.class_names))
        out = []
        for label, p in zip(labels, proba):
            order = np.argsort(-p, kind="stable")[:k]
            out.append({"label": label, "confidence": float(p.max()), "unknown": label == "unknown",
                        "top_k": [{"label": self.class_names[i], "probability": float(p[i])}
                                  for i in order]})
        return out

    def read(self, source: bytes | str | Path, *, name: str | None = None,
             max_pixels: int = DEFAULT_MAX_PIXELS, formats: Sequence[str] | None = None) -> np.ndarray:
        """One image file or upload, decoded at the model's input size."""
        h, w, _ = self.input_shape
        return decode_image(source, (h, w), name=name, max_pixels=max_pixels, formats=formats)

    def predict_files(self, paths: Sequence[str | Path],
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> list[tuple[str, float]]:
        """Read, resize and classify image files; an unreadable file is an error naming it."""
        return self.predict(np.stack([self.read(p, max_pixels=max_pixels) for p in paths]))
