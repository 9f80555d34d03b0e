"""Inference: load a trained model and name what is in images, or say 'unknown'."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tlkit import TlkitError
from tlkit.evaluate import predict_labels


@dataclass
class Predictor:
    """A trained classifier with its class names and an 'unknown' threshold."""

    model: object
    class_names: list[str]
    threshold: float = 0.5

    @classmethod
    def load(cls, model_path: str | Path, class_names: Sequence[str] | None = None,
             threshold: float = 0.5) -> "Predictor":
        """Load ``<prefix>_model.keras``; class names come from ``<prefix>_record.json``."""
        import keras

        import tlkit.features  # noqa: F401  (registers tlkit's layers for loading)
        import tlkit.models  # noqa: F401

        path = Path(model_path)
        if not path.is_file():
            raise TlkitError(f"no model file at {path}: pass a _model.keras written by 'tlkit train'")
        if class_names is None:
            rec = path.with_name(path.name.replace("_model.keras", "_record.json"))
            if not rec.is_file():
                raise TlkitError(f"no record {rec.name} beside {path.name} to read class names from")
            class_names = json.loads(rec.read_text())["dataset"]["class_names"]
        return cls(keras.models.load_model(path), list(class_names), threshold)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.model.input_shape[1:])  # type: ignore[attr-defined]

    def predict(self, images: np.ndarray) -> list[tuple[str, float]]:
        """(label or 'unknown', confidence) for each uint8 image of the model's input shape."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.shape[1:] != self.input_shape:
            raise TlkitError(f"images have shape {images.shape[1:]}, the model takes {self.input_shape}; "
                             "use predict_files (it resizes) or resize them first")
        proba = np.asarray(self.model.predict(images.astype(np.uint8), verbose=0))
        labels = predict_labels(proba, self.class_names, self.threshold)
        return list(zip(labels, proba.max(1).astype(float).tolist()))

    def predict_files(self, paths: Sequence[str | Path]) -> list[tuple[str, float]]:
        """Read, resize and classify image files; an unreadable file is an error naming it."""
        from PIL import Image, UnidentifiedImageError

        h, w, _ = self.input_shape
        batch = []
        for p in paths:
            try:
                with Image.open(p) as im:
                    batch.append(np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR)))
            except (OSError, UnidentifiedImageError) as e:
                raise TlkitError(f"cannot read image {p}: {e}") from e
        return self.predict(np.stack(batch))
