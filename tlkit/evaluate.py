"""Evaluation: accuracy, precision/recall/F1, confusion matrix, top-k, gaps, 'unknown' and
its threshold, and the images with the highest loss."""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Sequence

import keras
import numpy as np
from sklearn import metrics as skm

from tlkit.data import Dataset

UNKNOWN = "unknown"


def predict_proba(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for a batch of uint8 images (or features, for a head)."""
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)


def top_k_accuracy(y_true: np.ndarray, proba: np.ndarray, k: int) -> float:
    """Fraction of samples whose true class is among the ``k`` most probable ones.

    The same ranking as scikit-learn's ``top_k_accuracy_score`` for many classes, but for
    any class count: scikit-learn reads two-class labels as binary and refuses 2-d scores.
    """
    ranked = np.argsort(proba, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return float((ranked == np.asarray(y_true)[:, None]).any(1).mean())


def image_losses(proba: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """Each image's cross-entropy loss: minus the log of the probability given to its label."""
    y_true = np.asarray(y_true)
    return -np.log(np.clip(proba[np.arange(len(y_true)), y_true], 1e-12, 1.0))


def top_losses(proba: np.ndarray, y_true: np.ndarray, k: int = 16) -> np.ndarray:
    """Indices of the ``k`` images with the highest loss, highest first (fastai's
    ``top_losses``): the model is sure of another class. In a folder of one's own photos,
    these are where mislabelled and ambiguous images turn up; look at them
    (:func:`tlkit.plots.top_losses`) before trusting the labels or the accuracy."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    return np.argsort(-image_losses(proba, y_true), kind="stable")[:k]


def top_losses_in(ds: Dataset, proba: dict[str, np.ndarray], k: int = 16) -> list[dict]:
    """The ``k`` images of ``ds`` with the highest loss over the splits ``proba`` scores (its
    class probabilities per split), highest first: each :meth:`~tlkit.data.Dataset.about` the
    image, with the model's ``predicted`` class, its ``probability`` and the ``loss``."""
    splits = list(proba)
    y = np.concatenate([getattr(ds, f"y_{s}") for s in splits])
    p = np.concatenate([proba[s] for s in splits])
    where = [(s, i) for s in splits for i in range(len(proba[s]))]
    loss = image_losses(p, y)
    return [{**ds.about(*where[j]), "predicted": ds.class_names[int(p[j].argmax())],
             "probability": float(p[j].max()), "loss": float(loss[j])} for j in top_losses(p, y, k)]


def pack_correct(correct: np.ndarray) -> str:
    """Which images a model got right, one bit each (``np.packbits``), as base64 text:
    10,000 test images take 1,668 characters of a run record."""
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool))).decode("ascii")


def unpack_correct(bits: str, n: int) -> np.ndarray:
    """The ``n`` booleans of :func:`pack_correct`'s text; a text of another length is an error."""
    raw = np.frombuffer(base64.b64decode(bits, validate=True), dtype=np.uint8)
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"per-image results of {len(raw)} bytes cannot hold {n:,} images")
    return np.unpackbits(raw, count=n).astype(bool)


def images_id(x: np.ndarray, y: np.ndarray) -> str:
    """A short digest of a split's images and labels, in their order: two scorings with the
    same one were made on the same images, so their per-image results pair up image by image."""
    h = hashlib.blake2b(digest_size=8)
    x = np.ascontiguousarray(x)
    h.update(f"{x.shape}{x.dtype}".encode())
    h.update(x.tobytes())
    h.update(np.asarray(y, dtype=np.int64).tobytes())
    return h.hexdigest()


def score(y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str], k: int = 5,
          images: str | None = None) -> dict:
    """Every metric of one split from labels and predicted probabilities, with ``correct``,
    which images were right (:func:`pack_correct`), and ``images``, which images these were
    (:func:`images_id`, or None when not given): what a paired comparison of two models on
    the same images reads (:func:`tlkit.findings.compare`)."""
    y_true = np.asarray(y_true)
    n_classes = len(class_names)
    y_pred = proba.argmax(1)
    labels = list(range(n_classes))
    k = max(min(k, n_classes - 1), 1)
    report = skm.classification_report(y_true, y_pred, labels=labels, target_names=list(class_names),
                                       output_dict=True, zero_division=0)
    out = {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()),
        "correct": pack_correct(y_pred == y_true), "images": images,
        "loss": float(image_losses(proba, y_true).mean()),
        f"top{k}_accuracy": top_k_accuracy(y_true, proba, k),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "per_class": {c: {m: float(report[c][m]) for m in ("precision", "recall", "f1-score", "support")}
                      for c in class_names},
    }
    for avg in ("macro", "weighted"):
        prf = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg,
                                                  zero_division=0)
        out.update({f"precision_{avg}": float(prf[0]), f"recall_{avg}": float(prf[1]),
                    f"f1_{avg}": float(prf[2])})
    return out


def score_split(model: keras.Model, ds: Dataset, split: str = "test", batch_size: int = 256) -> dict:
    """:func:`score` of one split of ``ds`` (all its images), with the images' identity."""
    x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
    return score(y, predict_proba(model, x, batch_size), ds.class_names, images=images_id(x, y))


def gaps(train: dict, val: dict | None, test: dict) -> dict:
    """The overfitting gap: train − validation and train − test accuracy, and the loss
    gaps the other way round (held-out loss − train loss). Positive means overfitting."""
    out = {"gap_train_test_accuracy": train["accuracy"] - test["accuracy"],
           "gap_test_train_loss": test["loss"] - train["loss"]}
    if val is not None:
        out.update({"gap_train_val_accuracy": train["accuracy"] - val["accuracy"],
                    "gap_val_train_loss": val["loss"] - train["loss"]})
    return out


def evaluate(model: keras.Model, ds: Dataset, *, batch_size: int = 256, max_train: int | None = 5000,
             seed: int = 0, inputs: dict[str, np.ndarray] | None = None) -> dict:
    """Score a model on every split of a data set and compute the gaps.

    The train split is scored without augmentation, on a seeded sample of at most
    ``max_train`` images. ``inputs`` replaces the images per split (e.g. cached features);
    each split's ``images`` identity is still that of its images (:func:`score`).
    Returns ``{"train": {...}, "val": {...}, "test": {...}, "summary": {...}}``.
    """
    result: dict = {}
    for split in ("train", "val", "test"):
        images = getattr(ds, f"x_{split}")
        x = (inputs or {}).get(split, images)
        y = getattr(ds, f"y_{split}")
        if x is None:
            continue
        if split == "train" and max_train and len(y) > max_train:
            idx = np.random.default_rng(seed).choice(len(y), max_train, replace=False)
            x, y, images = x[idx], y[idx], None if images is None else images[idx]
        result[split] = score(y, predict_proba(model, x, batch_size), ds.class_names,
                              images=None if images is None else images_id(images, y))
    result["summary"] = summarize(result)
    return result


def summarize(result: dict) -> dict:
    """The flat numbers a run record's ``metrics`` holds."""
    test, train, val = result["test"], result["train"], result.get("val")
    flat = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
            "train_accuracy": train["accuracy"], "train_loss": train["loss"]}
    if val is not None:
        flat.update({"val_accuracy": val["accuracy"], "val_loss": val["loss"]})
    for key, v in test.items():
        if key.startswith(("precision_", "recall_", "f1_", "top")):
            flat[f"test_{key}"] = v
    flat.update(gaps(train, val, test))
    return flat


def predict_labels(proba: np.ndarray, class_names: Sequence[str], threshold: float = 0.0) -> list[str]:
    """Class names of the most likely classes, or ``"unknown"`` where the top probability
    is below ``threshold`` (an image of none of the known classes should land there)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, not {threshold}")
    top = proba.argmax(1)
    conf = proba.max(1)
    return [class_names[i] if c >= threshold else UNKNOWN for i, c in zip(top, conf)]


def threshold_curve(proba: np.ndarray, y_true: np.ndarray) -> dict[str, np.ndarray]:
    """At each threshold (every distinct top-class probability, high to low): ``precision``,
    the accuracy on the images answered (top probability at least the threshold), and
    ``coverage``, the share of images answered; the rest are ``unknown``."""
    conf = proba.max(1)
    order = np.argsort(-conf, kind="stable")
    correct = (proba.argmax(1) == np.asarray(y_true))[order]
    conf = conf[order]
    last = np.flatnonzero(np.r_[conf[1:] != conf[:-1], True])  # the last image of each distinct value
    answered = last + 1
    return {"threshold": conf[last], "precision": np.cumsum(correct)[last] / answered,
            "coverage": answered / len(conf)}


@dataclass
class Threshold:
    """An 'unknown' threshold chosen for a precision, and where it leaves the split it was
    chosen on (``curve``: :func:`threshold_curve`)."""

    threshold: float
    target: float  # the precision asked for
    precision: float  # reached on the images answered
    coverage: float  # the share of images answered
    reached: bool  # whether any threshold gives ``target``
    n: int
    curve: dict

    def info(self) -> dict:
        """What a run record stores (the curve left out)."""
        return {"threshold": self.threshold, "target_precision": self.target, "precision": self.precision,
                "coverage": self.coverage, "reached": self.reached, "n": self.n}


def choose_threshold(proba: np.ndarray, y_true: np.ndarray, precision: float = 0.95) -> Threshold:
    """The lowest threshold whose answered images reach ``precision`` (so it answers as many
    as it can), chosen on a held-out split, e.g. validation; images below it are
    ``unknown``. When none reaches it, the threshold of the highest precision."""
    if not 0.0 < precision <= 1.0:
        raise ValueError(f"precision must be in (0, 1], not {precision}")
    curve = threshold_curve(proba, y_true)
    ok = np.flatnonzero(curve["precision"] >= precision)
    i = int(ok[-1]) if len(ok) else int(np.argmax(curve["precision"]))
    return Threshold(float(curve["threshold"][i]), precision, float(curve["precision"][i]),
                     float(curve["coverage"][i]), bool(len(ok)), len(y_true), curve)


def at_threshold(proba: np.ndarray, threshold: float, y_true: np.ndarray | None = None) -> dict:
    """What a threshold does to a set of images: ``coverage``, the share answered (top
    probability at least ``threshold``), ``unknown``, the rest, ``n``, and with labels
    ``precision``, the accuracy on the images answered (0 when none is)."""
    answered = proba.max(1) >= threshold
    out = {"coverage": float(answered.mean()), "unknown": float(1 - answered.mean()), "n": int(len(proba))}
    if y_true is not None:
        right = proba.argmax(1) == np.asarray(y_true)
        out["precision"] = float(right[answered].mean()) if answered.any() else 0.0
    return out


def per_class_accuracy(confusion: Sequence[Sequence[int]]) -> np.ndarray:
    """Recall of every class from a confusion matrix."""
    cm = np.asarray(confusion, dtype=float)
    return np.divide(np.diag(cm), cm.sum(1), out=np.zeros(len(cm)), where=cm.sum(1) > 0)


def diagnose(train_accuracy: float, val_accuracy: float, num_classes: int,
             gap_threshold: float = 0.08) -> tuple[str, str]:
    """A rule-of-thumb diagnosis of one run and what to try next.

    Underfitting: training accuracy itself is low (less than halfway from chance to
    perfect). Overfitting: train − validation accuracy above ``gap_threshold``.
    """
    chance = 1.0 / num_classes
    gap = train_accuracy - val_accuracy
    if train_accuracy < chance + 0.5 * (1 - chance):
        return "underfitting", ("more capacity or epochs, a higher learning rate, larger inputs "
                                "for pretrained models, or unfreeze more layers")
    if gap > gap_threshold:
        return "overfitting", ("more data or augmentation, more dropout or weight decay, "
                               "early stopping, or freeze more of the backbone")
    return "good fit", "train longer or use a bigger model only if validation still improves"
