"""Fine-tuning, the course's one recipe (modelled on fastai's ``fine_tune``).

Phase 1 trains a head on the frozen backbone's cached features (:func:`tlkit.features.probe`);
:func:`classifier_with_head` puts a copy of it into the full image model; phase 2 unfreezes
the backbone's last layers (:func:`tlkit.models.unfreeze`: BatchNormalization stays frozen,
in inference mode) and trains at a learning rate about 10× lower. :func:`fine_tune` runs
them in turn; each piece is usable alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np

from tlkit.data import Dataset
from tlkit.features import ProbeRun, probe
from tlkit.models import DEFAULT_AUGMENT, Classifier, ModelError, build_classifier, unfreeze
from tlkit.train import TrainResult, device_scope, fit_dataset


@dataclass
class FineTuneRun:
    """Both phases of a fine-tuning run: the head on cached features, then the classifier
    whose backbone top was fine-tuned around a copy of that head."""

    head_run: ProbeRun
    clf: Classifier
    result: TrainResult  # phase 2

    @property
    def both(self) -> TrainResult:
        """The two phases' training as one history (``phase``: ``head``, then ``finetune``)."""
        return TrainResult().extend(self.head_run.result, "head").extend(self.result, "finetune")

    @property
    def extract_seconds(self) -> float:
        """Feature extraction, as measured when the features were extracted (also if cached)."""
        return self.head_run.feats.seconds

    @property
    def head_seconds(self) -> float:
        return self.head_run.result.wall_seconds

    @property
    def finetune_seconds(self) -> float:
        return self.result.wall_seconds

    @property
    def wall_seconds(self) -> float:
        """The whole recipe: extraction, head and fine-tuning."""
        return self.extract_seconds + self.head_seconds + self.finetune_seconds


def classifier_with_head(run: ProbeRun, ds: Dataset, *, weights: str | Path | None = None,
                         alpha: float | None = None, weights_dir: str | Path | None = None,
                         augment: bool | Sequence[str] | None = ("flip",)) -> Classifier:
    """The full image model of ``run``'s backbone around a copy of its trained head (the
    run's head stays as trained), backbone frozen. ``weights``, ``alpha`` and ``weights_dir``
    are the ones the run's features were extracted with; a random backbone gets the very
    weights the features came from."""
    with device_scope():  # data parallel over several GPUs, as `tlkit train` does
        head = keras.models.clone_model(run.head)
        head.set_weights(run.head.get_weights())
        clf = build_classifier(run.feats.base, ds.num_classes, input_shape=ds.image_shape,
                               img_size=run.feats.img_size, weights=weights, alpha=alpha,
                               weights_dir=weights_dir, augment=augment, head=head, freeze=True,
                               taps=run.feats.taps)
        if clf.weights_source != run.feats.weights_source:
            raise ModelError(f"the head was trained on features of {run.feats.weights_source} weights, "
                             f"not {clf.weights_source}: pass the weights, alpha and weights_dir "
                             "the features were extracted with")
        if not clf.transfer:  # random features are never cached: their extractor is at hand
            clf.extractor.set_weights(run.feats.extractor.get_weights())
    return clf


def fine_tune(base: str, ds: Dataset, *, img_size: int | None = None, weights: str | Path | None = None,
              alpha: float | None = None, weights_dir: str | Path | None = None,
              head_epochs: int = 20, epochs: int = 6, unfreeze_last: int = 40, lr: float = 1e-3,
              finetune_lr: float | None = None, augment: bool | Sequence[str] | None = ("flip",),
              seed: int = 0, head_kwargs: dict | None = None, cache: bool = True,
              before_finetune: Callable[[Classifier], None] | None = None, **kwargs) -> FineTuneRun:
    """Train a head on cached features for ``head_epochs`` at ``lr``, then fine-tune the
    backbone's last ``unfreeze_last`` layers with the head for ``epochs`` at ``finetune_lr``
    (default ``lr / 10``), BatchNormalization frozen in inference mode.

    ``head_kwargs`` holds more arguments of phase 1's :func:`~tlkit.features.fit_head` (dropout,
    batch_size, early_stopping...), ``kwargs`` those of phase 2's :func:`~tlkit.train.fit`
    (batch_size, label_smoothing, verbose...). Mirrored training images stand in for flip
    augmentation in phase 1 when ``augment`` flips. ``before_finetune`` is called with the
    classifier before phase 2 (to report it, or check it fits on disk). ``epochs=0``: the
    classifier around the head, untrained further. ``cache=False``: features extracted anew,
    not read from the features cache (so ``extract_seconds`` is this run's).
    """
    flips = "flip" in (DEFAULT_AUGMENT if augment is True else augment or ())
    head_run = probe(base, ds, img_size=img_size, weights=weights, alpha=alpha, weights_dir=weights_dir,
                     flip_train=flips, cache=cache, epochs=head_epochs, lr=lr, seed=seed,
                     **(head_kwargs or {}))
    clf = classifier_with_head(head_run, ds, weights=weights, alpha=alpha, weights_dir=weights_dir,
                               augment=augment)
    if before_finetune is not None:
        before_finetune(clf)
    result = TrainResult()
    if epochs > 0:
        unfreeze(clf, last_n=unfreeze_last)
        with device_scope():
            result = fit_dataset(clf, ds, epochs=epochs, lr=finetune_lr or lr / 10, **kwargs)
    return FineTuneRun(head_run, clf, result)


# What a backbone's weight arrays are, for :func:`weight_changes`, in the order it shows them.
KERNELS = "kernels and biases"
BN_SCALE = "BatchNormalization gamma, beta"
BN_STATS = "BatchNormalization moving mean, variance"
MEDIAN_CHANGE, LARGEST_CHANGE = "median change (%)", "largest change (%)"


def _part(layer: keras.layers.Layer, variable) -> str:
    if not isinstance(layer, keras.layers.BatchNormalization):
        return KERNELS
    return BN_STATS if variable.name.startswith("moving_") else BN_SCALE


def weight_changes(model: keras.Model, before: list[np.ndarray], last_n: int):
    """Which of ``model``'s weight arrays differ from ``before`` (``model.get_weights()`` taken
    earlier, or those of a model of the same architecture), by where they sit (the first
    layers, or the last ``last_n``) and what they are (:data:`KERNELS`, :data:`BN_SCALE`,
    :data:`BN_STATS`): a DataFrame with the arrays, parameters and changed arrays of each
    group, and the median and largest relative change of its arrays (``|after - before| /
    |before|``, in percent, to two significant digits)."""
    import pandas as pd

    now = model.get_weights()
    if len(now) != len(before) or any(a.shape != np.shape(b) for a, b in zip(now, before)):
        raise ModelError(f"{model.name} has {len(now)} weight arrays; the {len(before)} given "
                         "before are not those of the same architecture")
    cut = max(len(model.layers) - last_n, 0)
    first, last = f"first {cut}", f"last {len(model.layers) - cut}"
    where = {id(v): (last if i >= cut else first, _part(layer, v))
             for i, layer in enumerate(model.layers) for v in layer.weights}
    rows = []
    for v, a, b in zip(model.weights, before, now):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        rows.append({"layers": where[id(v)][0], "weights": where[id(v)][1], "parameters": a.size,
                     "changed": not np.array_equal(a, b),
                     "change": 100 * float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-12))})
    table = pd.DataFrame(rows).groupby(["layers", "weights"]).agg(
        arrays=("changed", "size"), parameters=("parameters", "sum"), changed=("changed", "sum"),
        **{MEDIAN_CHANGE: ("change", "median"), LARGEST_CHANGE: ("change", "max")})
    for col in (MEDIAN_CHANGE, LARGEST_CHANGE):
        table[col] = [float(f"{x:.2g}") for x in table[col]]
    order = [(part_of, w) for part_of in (first, last) for w in (KERNELS, BN_SCALE, BN_STATS)]
    return table.reindex([i for i in order if i in table.index]).astype({"changed": int})
