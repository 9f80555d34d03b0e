"""Frozen-feature cache: extract a frozen backbone's pooled features once, train heads in seconds.

A frozen backbone maps an image to the same features every epoch, so they are computed
once per (backbone, weights, data, image size, preprocessing, flip, backend, precision) with
batched inference and kept on disk under a key that changes when any of those change. Features
come from :func:`tlkit.models.build_extractor` and heads are :func:`tlkit.models.head_model`,
the two halves of ``build_classifier``'s model: ``build_classifier(..., head=head)`` puts a
head trained here into the full image classifier.

A damaged cache entry is removed with a warning and rebuilt, a disk that cannot be written
means running without the cache, and temporary files of killed runs are cleaned up.
"""
from __future__ import annotations

import inspect
import json
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from tlkit.cnn import HorizontalFlip, adapt
from tlkit.data import Dataset, stratified_split
from tlkit.models import build_extractor, get_spec, head_model, resolve_weights
from tlkit.system import (cache_dir, cache_key, cache_load, cache_store, clean_temp_files,
                          file_digest, fingerprint, write_json)
from tlkit.train import TrainResult, fit

FEATURES_VERSION = 2


def weights_stamp(source: str) -> str:
    """What identifies a weights source in a cache key: for a file its size and content
    hash (a replaced file changes the key; a touched, moved or copied one does not)."""
    path = source.split(":", 1)[-1]
    if os.path.isfile(path):
        return f"{os.path.getsize(path)}|{file_digest(path)}"
    return source


def feature_key(*parts) -> str:
    """The cache key of features made from ``parts`` (backbone, weights, size,
    preprocessing, flip, data) here: with the cache format, the Keras backend and the
    precision policy, since features computed in bfloat16, or by another backend's kernels,
    differ from float32 ones and are never mixed with them."""
    here = (keras.config.backend(), keras.mixed_precision.global_policy().name)
    return cache_key(FEATURES_VERSION, *parts, *here, length=20)


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
    taps: tuple[str, ...] = ()  # inner layers whose pooled features come first
    final_dim: int | None = None  # the last layer's share of the columns (the last ones)

    @property
    def images_per_second(self) -> float:
        """Extraction throughput (measured when the features were extracted, also if cached)."""
        return self.images / self.seconds if self.seconds else 0.0

    @property
    def dim(self) -> int:
        return int(next(iter(self.splits.values())).shape[1])

    def describe(self) -> str:
        """One line for a reader: what the features are, how many, how fast they were made."""
        splits = ", ".join(f"{name} {len(x):,}" for name, x in self.splits.items())
        cached = [name for name, hit in self.cached.items() if hit]
        where = f" from {' + '.join(self.taps)} + the last layer" if self.taps else ""
        return (f"{self.base} features at {self.img_size} px ({self.weights_source}){where}: "
                f"{self.dim:,} per image; {splits} images; extracted at "
                f"{self.images_per_second:.0f} images/s"
                + (f", read from the cache: {', '.join(cached)}" if cached else ""))

    def last_layer(self) -> "Features":
        """The same features without the taps' columns: the backbone's last layer only (no
        new extraction)."""
        if not self.taps:
            return self
        return replace(self, splits={k: v[:, -self.final_dim:] for k, v in self.splits.items()},
                       taps=(), final_dim=None, extractor=None)

    def info(self) -> dict:
        return {"base": self.base, "img_size": self.img_size, "weights_source": self.weights_source,
                "taps": list(self.taps), "dim": self.dim, "backbone_params": self.backbone_params,
                "extract_seconds": round(self.seconds, 2),
                "extract_images_per_second": round(self.images_per_second, 1),
                "from_cache": dict(self.cached)}


def _load_meta(path: Path, rows: int, taps: tuple[str, ...]) -> dict:
    meta = json.loads(path.read_text())
    if meta["images"] != rows or not isinstance(meta["seconds"], (int, float)):
        raise ValueError(f"metadata for {meta['images']} images, not {rows}")
    if taps and not isinstance(meta.get("final_dim"), int):
        raise ValueError("metadata without the last layer's feature count")
    return meta


def _load_array(path: Path, rows: int) -> np.ndarray:
    feats = np.load(path, allow_pickle=False)
    if feats.ndim != 2 or len(feats) != rows:
        raise ValueError(f"{feats.shape} features for {rows} images")
    return feats


def extract_features(base: str, ds: Dataset, *, img_size: int | None = None,
                     weights: str | None = None, alpha: float | None = None,
                     weights_dir: str | Path | None = None, flip_train: bool = False,
                     batch_size: int = 128, cache: bool = True, verbose: int = 0,
                     taps: Sequence[str] = ()) -> Features:
    """Pooled features of ``ds``'s train/val/test splits through a frozen backbone.

    ``flip_train`` also extracts mirrored training images (``train_flip``): a cheap,
    cacheable stand-in for flip augmentation. ``taps``: inner layers whose pooled features
    come before the last layer's (:func:`tlkit.models.build_extractor`;
    :meth:`Features.last_layer` drops them again). Cached under ``$TLKIT_CACHE_DIR/features``
    (features of random weights are not cached: they change with the initialisation).
    """
    taps = tuple(taps)
    cfg = get_spec(base).config(alpha, img_size)
    alpha, size = cfg.alpha, cfg.img_size
    wanted = [s for s in ("train", "val", "test") if getattr(ds, f"x_{s}") is not None]
    jobs = [(s, False) for s in wanted] + ([("train", True)] if flip_train else [])
    extractor: keras.Model | None = None
    flipped: keras.Model | None = None
    out: dict[str, np.ndarray] = {}
    cached: dict[str, bool] = {}
    seconds, images, params, final_dim = 0.0, 0, None, None
    source = resolve_weights(base, weights, alpha, size, weights_dir)[1]
    # Random weights differ with every initialisation: their features are never cached.
    cache = cache and source != "random"
    folder = cache_dir() / "features"
    store = cache
    if cache:
        clean_temp_files(folder)
    for split, flip in jobs:
        name = split + ("_flip" if flip else "")
        x = getattr(ds, f"x_{split}")
        key = feature_key(base, alpha, weights_stamp(source), size, cfg.preprocess, flip, fingerprint(x),
                          *([list(taps)] if taps else []))
        path = folder / f"{base}-{size}-{name}-{key}.npy"
        meta_path = path.with_suffix(".json")
        meta = cache_load(meta_path, lambda p: _load_meta(p, len(x), taps)) if cache else None
        feats = cache_load(path, lambda p: _load_array(p, len(x))) if meta else None
        if feats is not None:
            out[name], cached[name] = feats, True
            seconds += meta["seconds"]
            images += meta["images"]
            params, final_dim = meta["backbone_params"], meta.get("final_dim")
            continue
        if extractor is None:
            extractor, source = build_extractor(base, ds.image_shape, size, weights, alpha,
                                                weights_dir, taps)
            extractor.trainable = False
            if taps:
                final_dim = int(extractor.get_layer("backbone").output[-1].shape[-1])
            if source == "random":  # as training would start: data-dependent layers fitted
                adapt(extractor, ds.x_train)
        model = extractor
        if flip:  # the same extractor behind a fixed mirror: the same (even random) weights
            if flipped is None:
                inputs = keras.Input(ds.image_shape, dtype="uint8", name="image")
                flipped = keras.Model(inputs, extractor(HorizontalFlip(name="flip")(inputs)))
            model = flipped
        params = extractor.count_params()
        model.predict(x[:batch_size], batch_size=batch_size, verbose=0)  # trace outside the timing
        start = time.perf_counter()
        feats = np.asarray(model.predict(x, batch_size=batch_size, verbose=verbose), dtype=np.float32)
        took = time.perf_counter() - start
        seconds += took
        images += len(x)
        out[name], cached[name] = feats, False
        # the array first, its metadata last: an entry counts only once both are complete;
        # a disk that cannot take it (full, read-only) warns once and the run goes on uncached
        if store:
            store = cache_store(path, lambda tmp: np.save(tmp, feats), suffix=".npy") and \
                cache_store(meta_path, lambda tmp: write_json(
                    {"seconds": took, "images": len(x), "backbone_params": params,
                     "weights_source": source, "final_dim": final_dim}, tmp))
    return Features(base, size, source or "random", out, seconds, images, cached, extractor, params,
                    taps, final_dim)


def train_indices(y: np.ndarray, train_fraction: float = 1.0, seed: int = 0) -> np.ndarray:
    """The training images a head learns from: all, or a seeded, stratified share."""
    if train_fraction >= 1.0:
        return np.arange(len(y))
    return stratified_split(y, train_fraction, seed)[1]


def evaluate_head(head: keras.Model, feats: Features, ds: Dataset, *, train_fraction: float = 1.0,
                  seed: int = 0) -> dict:
    """Score a head on the cached features of every split. The train split is scored on the
    images the head was trained on (its share of the training split), so a train − test gap
    compares like with like."""
    from tlkit.evaluate import evaluate

    idx = train_indices(ds.y_train, train_fraction, seed)
    trained = replace(ds, x_train=ds.x_train[idx], y_train=ds.y_train[idx])
    return evaluate(head, trained, inputs={**feats.splits, "train": feats.splits["train"][idx]}, seed=seed)


def fit_head(feats: Features, ds: Dataset, *, epochs: int = 30, batch_size: int = 256,
             lr: float = 1e-3, dropout: float = 0.2, weight_decay: float = 1e-4,
             label_smoothing: float = 0.0, early_stopping: int | None = 5,
             class_weight: str | dict | None = None, use_flips: bool = True,
             train_fraction: float = 1.0, seed: int = 0, verbose: int | str = 0
             ) -> tuple[keras.Model, TrainResult]:
    """Train a fresh head on cached features (plus mirrored copies when present).

    ``train_fraction`` < 1 trains on a seeded, stratified share of the training split
    (:func:`train_indices`); score it with :func:`evaluate_head` and the same arguments.
    ``seed`` also seeds the head's initialisation and shuffling (Keras's global seed): the
    head comes out the same whether the features were just extracted (building a backbone
    draws random numbers) or read from the cache.
    """
    keras.utils.set_random_seed(seed)
    x, y = _head_data(feats, ds, use_flips, train_fraction, seed)
    mean, std = _statistics(x)
    head = head_model(feats.dim, ds.num_classes, dropout, mean, std)
    val = (feats.splits["val"], ds.y_val) if "val" in feats.splits else None
    result = fit(head, x, y, validation=val, num_classes=ds.num_classes, epochs=epochs,
                 batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                 label_smoothing=label_smoothing, early_stopping=early_stopping,
                 class_weight=class_weight, verbose=verbose)
    return head, result


def _head_data(feats: Features, ds: Dataset, use_flips: bool, train_fraction: float,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A head's training features and labels: its share of the training split, with the
    mirrored copies when asked for and extracted."""
    idx = train_indices(ds.y_train, train_fraction, seed)
    x, y = feats.splits["train"][idx], ds.y_train[idx]
    if use_flips and "train_flip" in feats.splits:
        x = np.concatenate([x, feats.splits["train_flip"][idx]])
        y = np.concatenate([y, y])
    return x, y


def _statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of training features, for :class:`~tlkit.models.Standardize`."""
    x64 = x.astype(np.float64)
    mean, std = x64.mean(0), x64.std(0)
    # A feature that varies less than the float32 round-off of the features' scale is
    # constant: dividing by its "std" would blow round-off (which differs between backends
    # and graphs) up into signal.
    std = np.where(std > 1e-5 * np.abs(x64).max(initial=0.0), std, 1.0)
    return mean, std


LINEAR_CS = (0.001, 0.003, 0.01)  # L2 strengths (scikit-learn's C, inverse) tried by fit_linear_head


def fit_linear_head(feats: Features, ds: Dataset, *, cs: Sequence[float] = LINEAR_CS,
                    use_flips: bool = True, train_fraction: float = 1.0, seed: int = 0,
                    max_iter: int = 1000, verbose: int | str = 0) -> tuple[keras.Model, TrainResult]:
    """A linear probe as the papers fit it: multinomial logistic regression on standardised
    features, solved by L-BFGS (scikit-learn) for each L2 strength ``cs`` (weakest
    regularisation last, each fit starting from the last), the one with the best validation
    accuracy kept.

    Returned as the same Keras head as :func:`fit_head`'s (standardize → dense softmax), so
    it scores, records, exports and fine-tunes like one. Its history has one entry per C
    (``C``, ``accuracy``, ``val_accuracy``, ``iterations``, ``seconds``), not per epoch.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if "val" not in feats.splits:
        raise ValueError("fit_linear_head chooses its L2 strength on the validation split; "
                         "this data set has none")
    cs = sorted(float(c) for c in cs)
    if not cs or cs[0] <= 0:
        raise ValueError(f"cs must hold positive L2 strengths, not {cs}")
    x, y = _head_data(feats, ds, use_flips, train_fraction, seed)
    mean, std = _statistics(x)
    scale = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    z, z_val = scale(x), scale(feats.splits["val"])
    model = LogisticRegression(max_iter=max_iter, warm_start=True, random_state=seed)
    history: dict[str, list] = {k: [] for k in ("C", "accuracy", "val_accuracy", "iterations",
                                                "converged", "seconds")}
    best, start = None, time.perf_counter()
    for c in cs:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.set_params(C=c).fit(z, y)
        val_acc = float(model.score(z_val, ds.y_val))
        row = {"C": c, "accuracy": float(model.score(z, y)), "val_accuracy": val_acc,
               "iterations": int(np.max(model.n_iter_)), "seconds": time.perf_counter() - start,
               "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught)}
        for k, v in row.items():
            history[k].append(v)
        if verbose:
            print(f"C={c:g}: train {row['accuracy']:.3f}, validation {val_acc:.3f}, "
                  f"{row['iterations']} iterations, {row['seconds']:.0f} s", flush=True)
        if best is None or val_acc > best[0]:
            best = (val_acc, model.coef_.copy(), model.intercept_.copy(), model.classes_.copy())
    _, coef, intercept, classes = best
    head = head_model(feats.dim, ds.num_classes, 0.0, mean, std)
    head.get_layer("classes").set_weights(_dense_weights(coef, intercept, classes, ds.num_classes))
    wall = time.perf_counter() - start
    return head, TrainResult(history, wall, len(x) * sum(history["iterations"]))


def _dense_weights(coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray,
                   num_classes: int) -> list[np.ndarray]:
    """A softmax Dense layer's (kernel, bias) computing scikit-learn's logistic regression:
    a two-class model's one logit split as ±½ over its two classes; a class the training
    share never showed gets a logit far below the others."""
    if len(classes) == 2 and len(coef) == 1:
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    kernel = np.zeros((coef.shape[1], num_classes), np.float32)
    bias = np.full(num_classes, float(intercept.min()) - 100.0, np.float32)
    kernel[:, classes] = coef.T
    bias[classes] = intercept
    return [kernel, bias]


HEADS = {"adamw": fit_head, "linear": fit_linear_head}  # how probe trains a head on features


HEAD_KNOBS = ("dropout", "weight_decay", "use_flips", "train_fraction")  # what notebook 5 varies


def head_setting(params: dict) -> dict:
    """The :data:`HEAD_KNOBS` a head was trained with: those in ``params`` (e.g. a run
    record's), the others at :func:`fit_head`'s defaults. Two heads with the same setting
    differ only in their seed."""
    defaults = inspect.signature(fit_head).parameters
    return {k: params.get(k, defaults[k].default) for k in HEAD_KNOBS}


@dataclass
class ProbeRun:
    """A frozen backbone with a trained head: features, head, training and evaluation."""

    feats: Features
    head: keras.Model
    result: TrainResult
    evaluation: dict
    head_kind: str = "adamw"  # the key of HEADS that fitted it

    def model_info(self) -> dict:
        return {"base": self.feats.base, "img_size": self.feats.img_size, "frozen": True,
                "taps": list(self.feats.taps), "head": self.head_kind,
                "weights_source": self.feats.weights_source, "head_params": self.head.count_params(),
                "backbone_params": self.feats.backbone_params, "feature_dim": self.feats.dim,
                "extraction": self.feats.info()}

    @property
    def wall_seconds(self) -> float:
        """Extraction (this session) plus head training."""
        return self.feats.seconds + self.result.wall_seconds

    def record_fields(self) -> dict:
        """What a run record keeps of a probe (:meth:`tlkit.records.Recorder.save`)."""
        return {"model": self.model_info(), "evaluation": self.evaluation, "result": self.result,
                "wall_seconds": self.wall_seconds, "images_per_second": self.feats.images_per_second}


def probe(base: str, ds: Dataset, *, img_size: int | None = None, weights: str | None = None,
          alpha: float | None = None, weights_dir: str | Path | None = None,
          flip_train: bool = True, batch_size: int = 128, taps: Sequence[str] = (),
          head: str = "adamw", cache: bool = True, **head_kwargs) -> ProbeRun:
    """Extract (or read cached) features, fit a head and evaluate it on every split.

    ``taps``: inner layers read beside the last (:func:`extract_features`); ``head``: a key
    of :data:`HEADS`, ``adamw`` (:func:`fit_head`) or ``linear`` (:func:`fit_linear_head`),
    given ``head_kwargs``; ``cache=False`` extracts anew (a benchmark times its own extraction)."""
    if head not in HEADS:
        raise ValueError(f"unknown head '{head}'; choose from {', '.join(HEADS)}")
    feats = extract_features(base, ds, img_size=img_size, weights=weights, alpha=alpha,
                             weights_dir=weights_dir, flip_train=flip_train, batch_size=batch_size,
                             taps=taps, cache=cache)
    return probe_features(feats, ds, head=head, **head_kwargs)


def probe_features(feats: Features, ds: Dataset, *, head: str = "adamw", **head_kwargs) -> ProbeRun:
    """Fit a head (a key of :data:`HEADS`) on features already at hand and evaluate it."""
    head_model_, result = HEADS[head](feats, ds, **head_kwargs)
    evaluation = evaluate_head(head_model_, feats, ds, train_fraction=head_kwargs.get("train_fraction", 1.0),
                               seed=head_kwargs.get("seed", 0))
    return ProbeRun(feats, head_model_, result, evaluation, head)


def heads_by_depth(feats: Features, ds: Dataset, *, epochs: int, seed: int = 0,
                   skip: Sequence[tuple[str, str]] = ()) -> dict[tuple[str, str], ProbeRun]:
    """Where to read features from and how to fit the head, each change alone: a head of each
    kind in :data:`HEADS` (AdamW for ``epochs``) on the last layer's features and, when
    ``feats`` has taps, on all of them. Keys: (what was read, as ``records.to_frame``'s
    ``read_from``, head kind); ``skip``: keys already at hand."""
    runs = {}
    for f in [feats.last_layer(), *([feats] if feats.taps else [])]:
        where = " + ".join([*f.taps, "last layer"])
        for head in HEADS:
            if (where, head) not in skip:
                kw = {"epochs": epochs} if head == "adamw" else {}
                runs[(where, head)] = probe_features(f, ds, head=head, seed=seed, **kw)
    return runs


def per_class_indices(y: np.ndarray, per_class: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``per_class`` training images of every class (None: all), a seeded
    stratified choice. With one seed, a smaller count's images are part of every larger
    count's, so points of a label-efficiency curve differ only in how many labels they add."""
    if per_class is None:
        return np.arange(len(y))
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(f"per_class must be a whole number of at least 1 or None, not {per_class!r}")
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < per_class:
        raise ValueError(f"class {classes[counts.argmin()]} has {counts.min()} training images, "
                         f"fewer than {per_class} per class")
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in classes]))


def train_subset(feats: Features, ds: Dataset, idx: np.ndarray) -> tuple[Features, Dataset]:
    """The features and data set with only the training images ``idx`` (their mirrored
    features too); validation and test splits unchanged. Train a head on them with
    :func:`fit_head` and score it with :func:`evaluate_head`."""
    splits = {k: (v[idx] if k in ("train", "train_flip") else v) for k, v in feats.splits.items()}
    return (replace(feats, splits=splits),
            replace(ds, x_train=ds.x_train[idx], y_train=ds.y_train[idx]))


# --------------------------------------------------------------------------- checking a data set with features

def out_of_fold_proba(feats: Features, ds: Dataset, *, folds: int = 5, seed: int = 0,
                      **head_kwargs) -> np.ndarray:
    """Class probabilities of every training image from a head that never saw it: ``folds``
    heads (:func:`fit_head`, with ``head_kwargs``), each trained on cached features of the
    other folds (stratified, seeded). A model scoring its own training images would have
    learnt their labels, mistakes included; these probabilities show which labels the rest of
    the data disagrees with (:func:`tlkit.evaluate.top_losses`)."""
    from tlkit.evaluate import predict_proba

    if folds < 2:
        raise ValueError(f"folds must be at least 2, not {folds}")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(ds.y_train), np.int64)
    for c in np.unique(ds.y_train):  # every class spread over the folds
        idx = rng.permutation(np.flatnonzero(ds.y_train == c))
        fold[idx] = np.arange(len(idx)) % folds
    proba = np.zeros((len(ds.y_train), ds.num_classes))
    for k in range(folds):
        sub_feats, sub_ds = train_subset(feats, ds, np.flatnonzero(fold != k))
        head, _ = fit_head(sub_feats, sub_ds, seed=seed, **head_kwargs)
        held = fold == k
        proba[held] = predict_proba(head, feats.splits["train"][held])
    return proba


SPLIT_PAIRS = (("train", "val"), ("train", "test"), ("val", "test"))


def leaks(feats: Features, ds: Dataset, threshold: float = 0.9) -> list[dict]:
    """Near-duplicates across splits (:func:`near_duplicates` of each pair of splits'
    features), most similar first: each ``{"splits": "train-test", "a": ..., "b": ...,
    "similarity": ...}``, ``a`` and ``b`` :meth:`~tlkit.data.Dataset.about` the two images.
    The features are centred on their mean over the splits first."""
    splits = [s for s in ("train", "val", "test") if s in feats.splits]
    center = np.concatenate([feats.splits[s] for s in splits]).mean(0)
    out = []
    for a, b in SPLIT_PAIRS:
        if a in splits and b in splits:
            out += [{"splits": f"{a}-{b}", "a": ds.about(a, i), "b": ds.about(b, j), "similarity": sim}
                    for i, j, sim in near_duplicates(feats.splits[a], feats.splits[b], threshold, center=center)]
    return sorted(out, key=lambda p: -p["similarity"])


def count_leaks(pairs: list[dict]) -> dict[str, int]:
    """How many of :func:`leaks`'s pairs each pair of splits has (``"train-test"``: ...)."""
    return {f"{a}-{b}": sum(p["splits"] == f"{a}-{b}" for p in pairs) for a, b in SPLIT_PAIRS}


def near_duplicates(a: np.ndarray, b: np.ndarray | None = None, threshold: float = 0.9,
                    chunk: int = 1024, center: np.ndarray | None = None) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, similarity)`` of rows of ``a`` and ``b`` (e.g. frozen features of the
    training and test images) whose cosine similarity is at least ``threshold``, most similar
    first; without ``b``, pairs within ``a`` (i < j). The same photo resized, re-encoded or
    shot twice lands there; across splits, such pairs leak test images into training.
    ``center`` is subtracted from every row first: pooled features after a ReLU are all
    positive, so any two images look alike until their common mean is taken away. Memory:
    ``chunk`` x ``len(b)`` similarities at a time, never the whole matrix."""
    def unit(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, np.float32) - (0 if center is None else np.asarray(center, np.float32))
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    ua = unit(a)
    ub = ua if b is None else unit(b)
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, len(ua), chunk):
        sims = ua[start:start + chunk] @ ub.T
        if b is None:  # each pair once, no image with itself
            sims[np.arange(len(sims))[:, None] + start >= np.arange(len(ub))[None, :]] = -np.inf
        i, j = np.nonzero(sims >= threshold)
        pairs += zip((i + start).tolist(), j.tolist(), sims[i, j].astype(float).tolist())
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))
