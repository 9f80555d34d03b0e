"""Label efficiency: test accuracy against labelled training images per class.

Each point of the curve trains on the same seeded per-class subset of the training split
(:func:`tlkit.features.per_class_indices`), once as a head on a frozen backbone's cached
features and once as a network from scratch. Small subsets get more epochs (at least
``min_images`` images seen) and smaller batches, so that every point has enough steps;
nothing looks at the validation split while training (no early stopping), since with a few
labels per class a labelled validation split would hold more labels than the training set.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tlkit.cnn import with_flip_tta
from tlkit.data import Dataset
from tlkit.evaluate import evaluate
from tlkit.features import Features, ProbeRun, evaluate_head, fit_head, per_class_indices, train_subset
from tlkit.models import build_classifier
from tlkit.train import TrainResult, fit, set_seed


@dataclass
class Point:
    """One trained point of the curve: its subset, training and evaluation."""

    method: str
    per_class: int | None  # None: every training image
    ds: Dataset  # the data set as trained: its train split is the subset
    model: dict
    result: TrainResult
    evaluation: dict
    epochs: int
    batch_size: int

    @property
    def train_images(self) -> int:
        return len(self.ds.y_train)

    def params(self) -> dict:
        """What a record's params add for this point."""
        return {"method": self.method, "per_class": self.per_class, "train_images": self.train_images,
                "curve_epochs": self.epochs, "curve_batch_size": self.batch_size}


def schedule(n_images: int, *, epochs: int, batch_size: int, min_images: int = 0,
             min_batch: int = 32) -> tuple[int, int]:
    """(epochs, batch size) for ``n_images`` training images: at least ``epochs`` epochs and at
    least ``min_images`` images seen; batches of about an eighth of the set (a power of two,
    at least ``min_batch``, at most ``batch_size``), so a small set still gets several steps
    per epoch."""
    if n_images < 1:
        raise ValueError(f"a curve point needs training images, not {n_images}")
    batch = 2 ** int(math.log2(max(n_images // 8, 1)))
    batch = max(1, min(batch_size, max(min_batch, batch), n_images))
    return max(epochs, math.ceil(min_images / n_images)), batch


def usable_counts(y: np.ndarray, counts: Sequence[int]) -> tuple[list[int], list[int]]:
    """(counts every class can fill with fewer images than it has, the others), sorted; a
    count that takes a whole class is the "all" point, which the curve has anyway."""
    smallest = int(np.bincount(y).min())
    counts = sorted({int(c) for c in counts})
    return [c for c in counts if c < smallest], [c for c in counts if c >= smallest]


def frozen_point(feats: Features, ds: Dataset, per_class: int | None, *, epochs: int = 40,
                 batch_size: int = 256, min_images: int = 0, seed: int = 0, **head_kwargs) -> Point:
    """A fresh head on the cached features of ``per_class`` images of each class (None: all)."""
    sub_feats, sub = train_subset(feats, ds, per_class_indices(ds.y_train, per_class, seed))
    n_epochs, batch = schedule(len(sub.y_train), epochs=epochs, batch_size=batch_size,
                               min_images=min_images)
    # trained without the validation split (none of its labels, and no pass over it each epoch)
    blind = dataclasses.replace(sub_feats, splits={k: v for k, v in sub_feats.splits.items() if k != "val"})
    set_seed(seed)
    head, result = fit_head(blind, sub, epochs=n_epochs, batch_size=batch, early_stopping=None,
                            seed=seed, **head_kwargs)
    ev = evaluate_head(head, sub_feats, sub, seed=seed)
    return Point("frozen", per_class, sub, ProbeRun(sub_feats, head, result, ev).model_info(), result,
                 ev, n_epochs, batch)


def scratch_point(ds: Dataset, per_class: int | None, *, base: str = "cnn",
                  augment: Sequence[str] | None = ("flip", "translate"), epochs: int = 10,
                  batch_size: int = 256, lr: float = 4e-3, label_smoothing: float = 0.0,
                  min_images: int = 0, tta: bool = True, seed: int = 0, verbose: int = 0) -> Point:
    """A network trained from scratch on ``per_class`` images of each class (None: all),
    scored with flip test-time augmentation when ``tta``."""
    idx = per_class_indices(ds.y_train, per_class, seed)
    sub = dataclasses.replace(ds, x_train=ds.x_train[idx], y_train=ds.y_train[idx])
    n_epochs, batch = schedule(len(sub.y_train), epochs=epochs, batch_size=batch_size,
                               min_images=min_images)
    set_seed(seed)
    clf = build_classifier(base, sub.num_classes, input_shape=sub.image_shape,
                           augment=list(augment) if augment else None)
    result = fit(clf, sub.x_train, sub.y_train, num_classes=sub.num_classes, epochs=n_epochs,
                 batch_size=batch, lr=lr, label_smoothing=label_smoothing, verbose=verbose)
    ev = evaluate(with_flip_tta(clf.model) if tta else clf.model, sub, seed=seed)
    return Point("scratch", per_class, sub, clf.info(), result, ev, n_epochs, batch)


def per_class_of(record: dict) -> float:
    """Training images per class of a record (its mean over classes)."""
    counts = record["dataset"]["counts"]["train"]
    return sum(counts) / len(counts)


def same_data(record: dict, ds: Dataset) -> bool:
    """Whether ``record`` trained and was tested on ``ds``'s data (its name and the per-class
    counts of every split): then it is the curve's "all" point for its method."""
    return record["dataset"]["name"] == ds.name and record["dataset"]["counts"] == ds.counts()


def curve_frame(curves: dict[str, Sequence[dict]]):
    """A tidy DataFrame of curve records: method, per_class, train_images, test_accuracy,
    test_images (how many it was measured on), run."""
    import pandas as pd

    rows = [{"method": method, "per_class": per_class_of(r), "train_images": sum(r["dataset"]["counts"]["train"]),
             "test_accuracy": r["metrics"]["test_accuracy"],
             # as tlkit.records.split_images counts them (a core module does not import records)
             "test_images": r.get("evaluation", {}).get("test", {}).get("n", sum(r["dataset"]["counts"]["test"])),
             "run": r["name"]}
            for method, recs in curves.items() for r in recs]
    return pd.DataFrame(rows).sort_values(["method", "per_class"], ignore_index=True)


def two_protocols(point: dict, sweep: dict) -> str | None:
    """Why a frozen curve point on all the training images (``point``) and notebook 2's size-sweep
    run on the same data at the same size (``sweep``) are two numbers, in one sentence; None when
    they are not that pair. Both train a head on the same cached features; the curve never looks
    at the validation split and keeps its last epoch, the sweep keeps its epoch of lowest
    validation loss (tlkit's default early stopping, which restores the best weights)."""
    px = point["model"].get("img_size")
    params = point["params"]
    if (params.get("method") != "frozen" or "per_class" not in params or params["per_class"] is not None
            or sweep["kind"] != "frozen" or sweep["model"].get("img_size") != px
            or sweep["dataset"]["counts"] != point["dataset"]["counts"]):
        return None
    val = sweep["history"].get("val_loss") or []
    kept = (f"keeps its epoch of lowest validation loss ({int(np.argmin(val)) + 1} of {len(val)})" if val
            else f"trains {len(sweep['history'].get('loss', []))} epochs")
    n = sum(point["dataset"]["counts"]["train"])
    return (f"A frozen head on all {n:,} training images at {px} px, from the same cached features, has two "
            f"test accuracies here: {point['metrics']['test_accuracy']:.3f} on the label-efficiency curve, "
            f"which trains {len(point['history'].get('loss', []))} epochs without the validation split and keeps "
            f"the last, and {sweep['metrics']['test_accuracy']:.3f} in the size sweep, which {kept}.")
