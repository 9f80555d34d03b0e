"""Frozen-feature cache: extract a frozen backbone's pooled features once, train heads in seconds.

A frozen backbone maps an image to the same features every epoch, so they are computed
once per (backbone, weights, data, image size, preprocessing, flip, backend) with batched
inference and kept on disk under a key that changes when any of those change.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from tlkit.data import Dataset, cache_dir, fingerprint
from tlkit.models import Preprocess, ToFloat, build_backbone, get_spec, resolve_weights
from tlkit.train import TrainResult, fit

FEATURES_VERSION = 1


@keras.saving.register_keras_serializable(package="tlkit")
class HorizontalFlip(layers.Layer):
    """Mirror images left to right (a fixed, not random, flip)."""

    def call(self, x):
        return ops.flip(x, axis=2)


def feature_extractor(base: str, input_shape: tuple[int, int, int], img_size: int | None = None,
                      weights: str | None = None, alpha: float | None = None,
                      weights_dir: str | Path | None = None, flip: bool = False
                      ) -> tuple[keras.Model, str]:
    """uint8 images → (flip) → resize → preprocessing → frozen backbone → pooled features."""
    spec = get_spec(base)
    size = img_size or spec.default_size
    backbone, source = build_backbone(base, size, weights, alpha, weights_dir)
    backbone.trainable = False
    inputs = keras.Input(input_shape, dtype="uint8")
    x = ToFloat()(inputs)
    if flip:
        x = HorizontalFlip()(x)
    if tuple(input_shape[:2]) != (size, size):
        x = layers.Resizing(size, size)(x)
    x = Preprocess(spec.preprocess)(x)
    x = backbone(x, training=False)
    if spec.pooling:
        x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name=f"{base}_features"), source


def _stamp(source: str) -> str:
    """Weights source plus the file's size and mtime, so a replaced file changes the key."""
    path = source.split(":", 1)[-1]
    if os.path.isfile(path):
        st = os.stat(path)
        return f"{source}|{st.st_size}|{st.st_mtime_ns}"
    return source


@dataclass
class Features:
    """Cached pooled features of every split (and of mirrored training images)."""

    base: str
    img_size: int
    weights_source: str
    splits: dict[str, np.ndarray]
    seconds: float = 0.0
    images: int = 0
    cached: dict[str, bool] = field(default_factory=dict)
    extractor: keras.Model | None = field(default=None, repr=False)

    @property
    def images_per_second(self) -> float:
        """Extraction throughput of the images extracted in this call (0 if all cached)."""
        return self.images / self.seconds if self.seconds else 0.0

    @property
    def dim(self) -> int:
        return int(next(iter(self.splits.values())).shape[1])

    def info(self) -> dict:
        return {"base": self.base, "img_size": self.img_size, "weights_source": self.weights_source,
                "dim": self.dim, "extract_seconds": round(self.seconds, 2),
                "extract_images_per_second": round(self.images_per_second, 1),
                "from_cache": dict(self.cached)}


def extract_features(base: str, ds: Dataset, *, img_size: int | None = None,
                     weights: str | None = None, alpha: float | None = None,
                     weights_dir: str | Path | None = None, flip_train: bool = False,
                     batch_size: int = 128, cache: bool = True, verbose: int = 0) -> Features:
    """Pooled features of ``ds``'s train/val/test splits through a frozen backbone.

    ``flip_train`` also extracts mirrored training images (``train_flip``): a cheap,
    cacheable stand-in for flip augmentation. Cached under ``$TLKIT_CACHE_DIR/features``.
    """
    spec = get_spec(base)
    size = img_size or spec.default_size
    wanted = [s for s in ("train", "val", "test") if getattr(ds, f"x_{s}") is not None]
    jobs = [(s, False) for s in wanted] + ([("train", True)] if flip_train else [])
    models: dict[bool, tuple[keras.Model, str]] = {}
    out: dict[str, np.ndarray] = {}
    cached: dict[str, bool] = {}
    seconds, images = 0.0, 0
    source = None
    for split, flip in jobs:
        name = split + ("_flip" if flip else "")
        x = getattr(ds, f"x_{split}")
        if source is None:  # resolve the weights once without building anything
            source = resolve_weights(base, weights, alpha if alpha is not None else
                                     (1.0 if spec.alphas else None), size, weights_dir)[1]
        key = hashlib.sha1(repr((FEATURES_VERSION, base, alpha, _stamp(source), size, spec.preprocess,
                                 flip, keras.config.backend(), fingerprint(x))).encode()).hexdigest()[:20]
        path = cache_dir() / "features" / f"{base}-{size}-{name}-{key}.npy"
        if cache and path.exists():
            out[name], cached[name] = np.load(path), True
            continue
        if flip not in models:
            models[flip] = feature_extractor(base, ds.image_shape, size, weights, alpha, weights_dir, flip)
        model, source = models[flip]
        start = time.perf_counter()
        feats = np.asarray(model.predict(x, batch_size=batch_size, verbose=verbose), dtype=np.float32)
        seconds += time.perf_counter() - start
        images += len(x)
        out[name], cached[name] = feats, False
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.npy")
            np.save(tmp, feats)
            os.replace(tmp, path)
    extractor = models[False][0] if False in models else None
    return Features(base, size, source or "random", out, seconds, images, cached, extractor)


def head_model(dim: int, num_classes: int, dropout: float = 0.2) -> keras.Model:
    """The classification head alone: pooled features → dropout → softmax."""
    inputs = keras.Input((dim,), name="features")
    x = layers.Dropout(dropout, name="dropout")(inputs)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="head")(x)
    return keras.Model(inputs, outputs, name="head")


def fit_head(feats: Features, ds: Dataset, *, epochs: int = 30, batch_size: int = 256,
             lr: float = 1e-3, dropout: float = 0.2, weight_decay: float = 1e-4,
             label_smoothing: float = 0.0, early_stopping: int | None = 5,
             class_weight: str | dict | None = None, use_flips: bool = True,
             verbose: int | str = 0) -> tuple[keras.Model, TrainResult]:
    """Train a fresh head on cached features (plus mirrored copies when present)."""
    x, y = feats.splits["train"], ds.y_train
    if use_flips and "train_flip" in feats.splits:
        x, y = np.concatenate([x, feats.splits["train_flip"]]), np.concatenate([y, y])
    head = head_model(feats.dim, ds.num_classes, dropout)
    val = (feats.splits["val"], ds.y_val) if "val" in feats.splits else None
    result = fit(head, x, y, validation=val, num_classes=ds.num_classes, epochs=epochs,
                 batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                 label_smoothing=label_smoothing, early_stopping=early_stopping,
                 class_weight=class_weight, verbose=verbose)
    return head, result


def attach_head(feats: Features, head: keras.Model, ds: Dataset, alpha: float | None = None,
                weights_dir: str | Path | None = None) -> keras.Model:
    """The full image classifier (uint8 images in) made of the extractor and a trained head.

    Uses the extractor kept from this session's extraction; rebuilds it otherwise, which
    only reproduces the features for pretrained (not random) weights.
    """
    extractor = feats.extractor
    if extractor is None:
        if feats.weights_source == "random":
            raise ValueError("features of a random backbone were read from the cache, and that "
                             "backbone cannot be rebuilt: extract again with cache=False")
        source = feats.weights_source
        weights = "imagenet" if source == "imagenet:download" else source.split(":", 1)[1]
        extractor, _ = feature_extractor(feats.base, ds.image_shape, feats.img_size, weights,
                                         alpha, weights_dir)
    outputs = head(extractor.output)
    return keras.Model(extractor.input, outputs, name=f"{feats.base}_classifier")
