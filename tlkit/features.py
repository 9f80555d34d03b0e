"""Frozen-feature cache: extract a frozen backbone's pooled features once, train heads in seconds.

A frozen backbone maps an image to the same features every epoch, so they are computed
once per (backbone, weights, data, image size, preprocessing, flip, backend) with batched
inference and kept on disk under a key that changes when any of those change.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from tlkit.data import Dataset, cache_dir, fingerprint, stratified_split
from tlkit.models import Preprocess, ToFloat, build_backbone, get_spec, resolve_weights
from tlkit.system import write_json
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
    backbone_params: int | None = None

    @property
    def images_per_second(self) -> float:
        """Extraction throughput (measured when the features were extracted, also if cached)."""
        return self.images / self.seconds if self.seconds else 0.0

    @property
    def dim(self) -> int:
        return int(next(iter(self.splits.values())).shape[1])

    def info(self) -> dict:
        return {"base": self.base, "img_size": self.img_size, "weights_source": self.weights_source,
                "dim": self.dim, "backbone_params": self.backbone_params,
                "extract_seconds": round(self.seconds, 2),
                "extract_images_per_second": round(self.images_per_second, 1),
                "from_cache": dict(self.cached)}


def extract_features(base: str, ds: Dataset, *, img_size: int | None = None,
                     weights: str | None = None, alpha: float | None = None,
                     weights_dir: str | Path | None = None, flip_train: bool = False,
                     batch_size: int = 128, cache: bool = True, verbose: int = 0) -> Features:
    """Pooled features of ``ds``'s train/val/test splits through a frozen backbone.

    ``flip_train`` also extracts mirrored training images (``train_flip``): a cheap,
    cacheable stand-in for flip augmentation. Cached under ``$TLKIT_CACHE_DIR/features``
    (features of random weights are not cached: they change with the initialisation).
    """
    spec = get_spec(base)
    size = img_size or spec.default_size
    if spec.alphas and alpha is None:
        alpha = 1.0
    wanted = [s for s in ("train", "val", "test") if getattr(ds, f"x_{s}") is not None]
    jobs = [(s, False) for s in wanted] + ([("train", True)] if flip_train else [])
    models: dict[bool, tuple[keras.Model, str]] = {}
    out: dict[str, np.ndarray] = {}
    cached: dict[str, bool] = {}
    seconds, images, params = 0.0, 0, None
    source = resolve_weights(base, weights, alpha, size, weights_dir)[1]
    # Random weights differ with every initialisation: their features are never cached.
    cache = cache and source != "random"
    for split, flip in jobs:
        name = split + ("_flip" if flip else "")
        x = getattr(ds, f"x_{split}")
        key = hashlib.sha1(repr((FEATURES_VERSION, base, alpha, _stamp(source), size, spec.preprocess,
                                 flip, keras.config.backend(), fingerprint(x))).encode()).hexdigest()[:20]
        path = cache_dir() / "features" / f"{base}-{size}-{name}-{key}.npy"
        meta_path = path.with_suffix(".json")
        if cache and path.exists() and meta_path.exists():
            out[name], cached[name] = np.load(path), True
            meta = json.loads(meta_path.read_text())
            seconds += meta["seconds"]
            images += meta["images"]
            params = meta["backbone_params"]
            continue
        if flip not in models:
            models[flip] = feature_extractor(base, ds.image_shape, size, weights, alpha, weights_dir, flip)
            if flip and False in models:  # the same backbone for both: random weights differ per build
                models[True][0].set_weights(models[False][0].get_weights())
        model, source = models[flip]
        params = model.count_params()
        model.predict(x[:batch_size], batch_size=batch_size, verbose=0)  # trace outside the timing
        start = time.perf_counter()
        feats = np.asarray(model.predict(x, batch_size=batch_size, verbose=verbose), dtype=np.float32)
        took = time.perf_counter() - start
        seconds += took
        images += len(x)
        out[name], cached[name] = feats, False
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.npy")
            np.save(tmp, feats)
            os.replace(tmp, path)
            write_json({"seconds": took, "images": len(x), "backbone_params": params,
                        "weights_source": source}, meta_path)
    extractor = models[False][0] if False in models else None
    return Features(base, size, source or "random", out, seconds, images, cached, extractor, params)


@keras.saving.register_keras_serializable(package="tlkit")
class Standardize(layers.Layer):
    """(x − mean) / std with fixed statistics of the training features.

    Random backbones give features of wildly different scales (1e-11 for a random
    MobileNetV2); standardizing makes one learning rate work for every backbone.
    """

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean_values = [float(v) for v in np.asarray(mean).ravel()]
        self.std_values = [float(v) for v in np.asarray(std).ravel()]

    def build(self, input_shape):
        self.mean = self.add_weight(shape=(len(self.mean_values),), trainable=False, name="mean",
                                    initializer=keras.initializers.Constant(self.mean_values))
        self.std = self.add_weight(shape=(len(self.std_values),), trainable=False, name="std",
                                   initializer=keras.initializers.Constant(self.std_values))

    def call(self, x):
        return (x - self.mean) / self.std

    def get_config(self):
        return {**super().get_config(), "mean": self.mean_values, "std": self.std_values}


def head_model(dim: int, num_classes: int, dropout: float = 0.2, mean: np.ndarray | None = None,
               std: np.ndarray | None = None) -> keras.Model:
    """The classification head alone: pooled features → standardize → dropout → softmax."""
    inputs = keras.Input((dim,), name="features")
    x = inputs
    if mean is not None and std is not None:
        x = Standardize(mean, std, name="standardize")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="head")(x)
    return keras.Model(inputs, outputs, name="head")


def fit_head(feats: Features, ds: Dataset, *, epochs: int = 30, batch_size: int = 256,
             lr: float = 1e-3, dropout: float = 0.2, weight_decay: float = 1e-4,
             label_smoothing: float = 0.0, early_stopping: int | None = 5,
             class_weight: str | dict | None = None, use_flips: bool = True,
             train_fraction: float = 1.0, seed: int = 0, verbose: int | str = 0
             ) -> tuple[keras.Model, TrainResult]:
    """Train a fresh head on cached features (plus mirrored copies when present).

    ``train_fraction`` < 1 trains on a seeded, stratified share of the training split.
    """
    idx = np.arange(len(ds.y_train))
    if train_fraction < 1.0:
        idx = stratified_split(ds.y_train, train_fraction, seed)[1]
    x, y = feats.splits["train"][idx], ds.y_train[idx]
    if use_flips and "train_flip" in feats.splits:
        x = np.concatenate([x, feats.splits["train_flip"][idx]])
        y = np.concatenate([y, y])
    x64 = x.astype(np.float64)
    std = x64.std(0)
    head = head_model(feats.dim, ds.num_classes, dropout, x64.mean(0), np.where(std > 0, std, 1.0))
    val = (feats.splits["val"], ds.y_val) if "val" in feats.splits else None
    result = fit(head, x, y, validation=val, num_classes=ds.num_classes, epochs=epochs,
                 batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                 label_smoothing=label_smoothing, early_stopping=early_stopping,
                 class_weight=class_weight, verbose=verbose)
    return head, result


def attach_head(feats: Features, head: keras.Model, ds: Dataset, alpha: float | None = None,
                weights_dir: str | Path | None = None) -> keras.Model:
    """The full image classifier (uint8 images in) made of the extractor and a trained head.

    Uses the extractor of this session's extraction, or rebuilds it from the weights file
    when the features came from the cache (only pretrained features are cached).
    """
    extractor = feats.extractor
    if extractor is None:
        source = feats.weights_source
        weights = "imagenet" if source == "imagenet:download" else source.split(":", 1)[1]
        extractor, _ = feature_extractor(feats.base, ds.image_shape, feats.img_size, weights,
                                         alpha, weights_dir)
    outputs = head(extractor.output)
    return keras.Model(extractor.input, outputs, name=f"{feats.base}_classifier")


def copy_head(head: keras.Model, clf) -> None:
    """Start a full classifier (``build_classifier``) from a head trained on features.

    The head's standardization is folded into the classifier's Dense layer:
    W' = W / std, b' = b − (mean / std) · W.
    """
    w, b = head.get_layer("head").get_weights()
    try:
        std_layer = head.get_layer("standardize")
    except ValueError:
        std_layer = None
    if std_layer is not None:
        mean = np.asarray(std_layer.mean_values)[:, None]
        std = np.asarray(std_layer.std_values)[:, None]
        w, b = w / std, b - ((mean / std) * w).sum(0)
    clf.model.get_layer("head").set_weights([w.astype(np.float32), b.astype(np.float32)])


@dataclass
class ProbeRun:
    """A frozen backbone with a trained head: features, head, training and evaluation."""

    feats: Features
    head: keras.Model
    result: TrainResult
    evaluation: dict
    note: str = ""

    def model_info(self) -> dict:
        return {"base": self.feats.base, "img_size": self.feats.img_size, "frozen": True,
                "weights_source": self.feats.weights_source, "head_params": self.head.count_params(),
                "backbone_params": self.feats.backbone_params, "feature_dim": self.feats.dim,
                "extraction": self.feats.info(), "note": self.note}

    @property
    def wall_seconds(self) -> float:
        """Extraction (this session) plus head training."""
        return self.feats.seconds + self.result.wall_seconds


def probe(base: str, ds: Dataset, *, img_size: int | None = None, weights: str | None = None,
          alpha: float | None = None, weights_dir: str | Path | None = None,
          fallback_to_random: bool = False, flip_train: bool = True, batch_size: int = 128,
          **head_kwargs) -> ProbeRun:
    """Extract (or read cached) features, fit a head and evaluate it on every split.

    With ``fallback_to_random``, a backbone whose ImageNet weights are neither local nor
    downloadable is built with random weights instead, and the run says so in ``note``.
    """
    from tlkit.evaluate import evaluate
    from tlkit.models import ModelError

    note = ""
    try:
        feats = extract_features(base, ds, img_size=img_size, weights=weights, alpha=alpha,
                                 weights_dir=weights_dir, flip_train=flip_train, batch_size=batch_size)
    except ModelError:
        if not fallback_to_random or str(weights).lower() != "imagenet":
            raise
        note = "no ImageNet weights here: random backbone (from scratch, not transfer)"
        feats = extract_features(base, ds, img_size=img_size, weights="none", alpha=alpha,
                                 flip_train=flip_train, batch_size=batch_size, cache=False)
    head, result = fit_head(feats, ds, **head_kwargs)
    evaluation = evaluate(head, ds, inputs=feats.splits)
    return ProbeRun(feats, head, result, evaluation, note)
