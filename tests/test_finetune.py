"""tlkit.finetune: the one fine-tuning recipe (a head on cached features, then the backbone's
top at a 10× lower rate with BatchNormalization frozen) and its pieces."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import tlkit.train as train
from tlkit.evaluate import predict_proba
from tlkit.finetune import classifier_with_head, fine_tune
from tlkit.models import ModelError, count_trainable
from tlkit.train import set_seed


def peak_lr(optimizer, steps: int = 50) -> float:
    """The largest learning rate an optimizer's schedule reaches."""
    sched = optimizer._learning_rate
    if isinstance(sched, keras.optimizers.schedules.LearningRateSchedule):
        return max(float(sched(s)) for s in range(steps))
    return float(optimizer.learning_rate)


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.backends
def test_fine_tune_trains_the_top_around_the_trained_head(fake_mnv2, tiny_ds, monkeypatch):
    """Phase 2 starts from the trained head (a copy: the phase-1 head stays as trained), runs
    at lr / 10, changes only the last N non-BatchNormalization layers of the backbone and
    leaves every BatchNormalization layer, moving statistics included, as it was."""
    folder, _, _ = fake_mnv2
    compiled = []
    real = train.compile_model

    def spy(model, lr=1e-3, **kw):
        real(model, lr, **kw)
        compiled.append((lr, model.optimizer))

    monkeypatch.setattr(train, "compile_model", spy)
    before = {}

    def snapshot(clf):
        before["backbone"] = [lyr.get_weights() for lyr in clf.backbone.layers]
        before["head"] = clf.head.get_weights()

    set_seed(0)
    last_n = 12
    run = fine_tune("mobilenetv2", tiny_ds, img_size=96, weights="imagenet", alpha=0.35,
                    weights_dir=folder, head_epochs=2, epochs=1, unfreeze_last=last_n, lr=1e-3,
                    batch_size=16, verbose=0, before_finetune=snapshot)
    clf, trained_head = run.clf, run.head_run.head
    assert "train_flip" in run.head_run.feats.splits  # the classifier flips: so do the features

    # the learning rates: phase 1 at lr, phase 2 at lr / 10, each its own optimizer
    assert [lr for lr, _ in compiled] == [1e-3, pytest.approx(1e-4)]
    assert compiled[1][1] is clf.model.optimizer and compiled[0][1] is not compiled[1][1]
    assert peak_lr(compiled[1][1]) == pytest.approx(1e-4)

    # the head: phase 2 began from the trained head's weights, in a copy, and trained it further
    assert clf.head is not trained_head and _same(before["head"], trained_head.get_weights())
    assert not _same(before["head"], clf.head.get_weights())

    # the backbone: only the last N layers that are not BatchNormalization changed
    layers = clf.backbone.layers
    cut = len(layers) - last_n
    bn = [isinstance(lyr, keras.layers.BatchNormalization) for lyr in layers]
    assert any(bn[cut:]) and any(bn[:cut])  # both halves hold BatchNormalization layers
    changed = [not _same(w, lyr.get_weights()) for w, lyr in zip(before["backbone"], layers)]
    assert not any(changed[:cut]) and not any(c for c, b in zip(changed, bn) if b)
    assert all(c for c, b, lyr in zip(changed[cut:], bn[cut:], layers[cut:]) if lyr.weights and not b)

    with pytest.raises(ModelError, match="the head was trained on features of imagenet:.* not random"):
        classifier_with_head(run.head_run, tiny_ds, weights="none", alpha=0.35)

    # both phases in one history, and the recipe's time in three parts
    assert run.both.history["phase"] == ["head"] * run.head_run.result.epochs + ["finetune"]
    assert run.wall_seconds == pytest.approx(run.extract_seconds + run.head_seconds + run.finetune_seconds)
    assert min(run.extract_seconds, run.head_seconds, run.finetune_seconds) > 0


def test_a_random_backbone_keeps_the_weights_its_features_came_from(tiny_ds):
    """Random features are never cached; the classifier gets the very backbone they came
    from, so the full model gives the head's predictions. ``epochs=0``: no phase 2."""
    set_seed(0)
    run = fine_tune("mobilenetv2", tiny_ds, img_size=32, weights="none", alpha=0.35, head_epochs=1,
                    epochs=0, augment=None)
    assert run.result.epochs == 0 and "train_flip" not in run.head_run.feats.splits
    assert count_trainable(run.clf.model) == count_trainable(run.clf.head)  # the backbone is frozen
    full = predict_proba(run.clf.model, tiny_ds.x_test)
    head = predict_proba(run.head_run.head, run.head_run.feats.splits["test"])
    assert np.abs(full - head).max() < 1e-4
    # a second classifier from the same run starts from the same head and backbone
    again = classifier_with_head(run.head_run, tiny_ds, weights="none", alpha=0.35)
    assert again.augment == ("flip",) and again.head is not run.clf.head
    assert _same(again.extractor.get_weights(), run.clf.extractor.get_weights())


def _bn_net() -> keras.Model:
    """Dense → BatchNormalization → Dense → BatchNormalization → Dense (5 layers with weights)."""
    inputs = keras.Input((6,))
    x = inputs
    for i, width in enumerate((8, 8)):
        x = keras.layers.Dense(width, name=f"dense_{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(x))


@pytest.mark.backends
@pytest.mark.parametrize("bn_trains", [False, True])
def test_weight_changes_shows_what_a_fit_moved(bn_trains):
    """Notebook 3's table: after thawing the last 3 layers with BatchNormalization frozen only
    the last layers' kernels change; when BatchNormalization trains, its arrays and moving
    statistics change too, and the table says so."""
    from tlkit.finetune import BN_SCALE, BN_STATS, KERNELS, LARGEST_CHANGE, weight_changes

    set_seed(0)
    net = _bn_net()
    for i, layer in enumerate(net.layers):  # Input, dense_0, bn_0, dense_1, bn_1, out
        layer.trainable = i >= len(net.layers) - 3 and (
            bn_trains or not isinstance(layer, keras.layers.BatchNormalization))
    net.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    before = net.get_weights()
    x = np.random.default_rng(0).normal(2, 3, (64, 6)).astype("float32")
    net.fit(x, np.arange(64) % 3, epochs=1, batch_size=16, verbose=0)
    table = weight_changes(net, before, last_n=3)
    assert table.loc[("first 3", KERNELS), "changed"] == 0
    assert table.loc[("first 3", BN_STATS), "changed"] == 0 and table.loc[("last 3", BN_STATS), "arrays"] == 2
    assert table.loc[("last 3", KERNELS), "changed"] == 4  # dense_1 and out: kernel and bias
    assert table.loc[("last 3", KERNELS), LARGEST_CHANGE] > 0
    assert list(table.index) == [(a, b) for a in ("first 3", "last 3") for b in (KERNELS, BN_SCALE, BN_STATS)]
    assert table["parameters"].sum() == net.count_params()
    moved_bn = table.loc[("last 3", BN_SCALE), "changed"] + table.loc[("last 3", BN_STATS), "changed"]
    assert moved_bn == (4 if bn_trains else 0)


def test_weight_changes_needs_the_same_architecture():
    from tlkit.finetune import weight_changes

    with pytest.raises(ModelError, match="same architecture"):
        weight_changes(_bn_net(), _bn_net().get_weights()[:-1], last_n=2)
