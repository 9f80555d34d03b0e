"""Inference: load a trained model, read images safely, name what is in them or say 'unknown'.

The model file carries its class names (:mod:`tlkit.modelfile`), so nothing beside it is
trusted. Images are checked before they are decoded: a file that is not an image, is
truncated, or declares more pixels than ``max_pixels`` (a decompression bomb: huge
dimensions in a small file) is an :class:`ImageError` naming the file, never a traceback.
An image is decoded at the working size where the format allows it (JPEG) and its decoding
memory is known before it starts (:data:`DECODE_BYTES_PER_PIXEL`), so it can be refused
above a budget (``max_decode_bytes``).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

from tlkit import TlkitError
from tlkit.data import MAX_IMAGE_PIXELS

#: A 48 MP phone photo fits; a decompression bomb (e.g. 20000 x 20000 zeros) does not: the
#: data loaders' budget, one number for both.
DEFAULT_MAX_PIXELS = MAX_IMAGE_PIXELS
#: The EXIF tag of the camera's orientation.
ORIENTATION = 0x0112
#: Formats the web service accepts (Pillow's names).
WEB_FORMATS = ("JPEG", "PNG", "WEBP")
#: Peak memory of :func:`decode_image` per pixel it decodes, by format (Pillow 13, checked by
#: tests/test_predict.py): the decoded image and one full-size RGB copy (RGBA, palette, CMYK:
#: 4 + 4 bytes; RGB and greyscale are resized first); Pillow's WebP decoder holds 4 copies.
#: Other formats count as the most expensive.
DECODE_BYTES_PER_PIXEL = {"JPEG": 9, "PNG": 9, "WEBP": 17}
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


def _decode_bytes(fmt: str | None, width: int, height: int) -> int:
    """Peak memory of decoding ``width`` x ``height`` pixels of format ``fmt``."""
    per_pixel = DECODE_BYTES_PER_PIXEL.get(fmt or "", max(DECODE_BYTES_PER_PIXEL.values()))
    return per_pixel * width * height


def decode_image(source: bytes | str | Path | BinaryIO, size: tuple[int, int], *, name: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, max_decode_bytes: int | None = None,
                 formats: Sequence[str] | None = None, crop: str = "squash") -> np.ndarray:
    """Decode an image (bytes, a path or a binary file) to a uint8 ``(height, width, 3)`` array of ``size``.

    The header is read first: more than ``max_pixels`` pixels (status 413) or a format not
    in ``formats`` (415) is refused before any pixel is decoded. JPEGs are decoded straight
    at a reduced scale (``draft``); PNG and WebP at full size. An image whose decoding would
    take more than ``max_decode_bytes`` of memory (:data:`DECODE_BYTES_PER_PIXEL`) is refused
    too (413). The decoded image is resized first, then turned by the camera's EXIF
    orientation; high-depth images are scaled to 8 bits (:func:`tlkit.data.to_rgb8`). ``crop``
    makes its aspect ratio ``size``'s as the model's training data was (:func:`tlkit.data.fit`).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from tlkit.data import fit

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
            need = _decode_bytes(im.format, *im.size)  # after draft: the pixels decoded
            if max_decode_bytes is not None and need > max_decode_bytes:
                raise ImageError(f"image {name} is a {iw}x{ih} {im.format}: decoding it takes about "
                                 f"{need / 2**20:,.0f} MB, over the limit of {max_decode_bytes / 2**20:,.0f} "
                                 "MB; send a smaller image (a JPEG is decoded at a reduced scale)", 413)
            turned = im.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)  # rotated by 90 degrees
            small = fit(im, (h, w) if turned else (w, h), crop)
            return np.asarray(ImageOps.exif_transpose(small), dtype=np.uint8)
    except Image.DecompressionBombError as e:
        raise ImageError(f"image {name} is too large to decode safely ({e})", 413) from e
    except UnidentifiedImageError as e:
        raise ImageError(f"cannot read image {name}: not an image Pillow knows "
                         f"(send {', '.join(formats or WEB_FORMATS)})") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image {name}: {e} (truncated or damaged?)") from e


def _limit(default: int | float, help: str):
    """A :class:`Limits` field: ``help`` is its ``tlkit serve`` option's help."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Limits:
    """What the service accepts: one upload, uploads at once, connections. Each field is a
    ``tlkit serve`` option (``max_bytes``: ``--max-bytes``) with its default; together they
    bound the server's memory (:func:`tlkit.service.memory_bound`)."""

    max_bytes: int = _limit(10 * 2**20, "largest upload, per file")
    max_pixels: int = _limit(DEFAULT_MAX_PIXELS, "largest image (decompression bombs)")
    max_files: int = _limit(16, "most images in one batch")
    top_k: int = _limit(3, "guesses in each answer")
    max_decode_bytes: int = _limit(256 * 2**20, "memory to decode one image: a larger PNG "
                                   "(29 MP at the default) or WebP (15 MP) is refused")
    max_concurrent: int = _limit(4, "uploads received and decoded at once; more are answered 503")
    max_connections: int = _limit(128, "open connections; a new one closes the oldest still "
                                       "sending its first request's headers")
    header_timeout: float = _limit(10.0, "seconds for a new connection's request headers")
    keep_alive: float = _limit(5.0, "seconds an idle connection stays open after an answer")
    body_timeout: float = _limit(60.0, "seconds for an upload's body")

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            flag = "--" + name.replace("_", "-")
            if isinstance(value, float) and not value > 0:
                raise TlkitError(f"{flag} must be more than 0 seconds, not {value}")
            if isinstance(value, int) and value < 1:
                raise TlkitError(f"{flag} must be at least 1, not {value}")


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

    def read(self, source: bytes | str | Path | BinaryIO, *, name: str | None = None,
             max_pixels: int = DEFAULT_MAX_PIXELS, max_decode_bytes: int | None = None,
             formats: Sequence[str] | None = None) -> np.ndarray:
        """One image file or upload, decoded at the model's input size, made square as the
        model's training images were (the model file's ``crop``; squashed without one)."""
        h, w, _ = self.input_shape
        return decode_image(source, (h, w), name=name, max_pixels=max_pixels,
                            max_decode_bytes=max_decode_bytes, formats=formats,
                            crop=self.meta.get("crop", "squash"))

    def predict_files(self, paths: Sequence[str | Path],
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> list[tuple[str, float]]:
        """Read, resize and classify image files; an unreadable file is an error naming it."""
        return self.predict(np.stack([self.read(p, max_pixels=max_pixels) for p in paths]))
