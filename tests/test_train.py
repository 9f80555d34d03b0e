"""tlkit.train: a model can overfit, runs repeat under a seed, the transfer recipe."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import tlkit.train as train
from tlkit.data import make_synthetic
from tlkit.evaluate import predict_proba
from tlkit.models import build_classifier, count_trainable
from tlkit.train import TrainResult, fit, fit_dataset, set_seed, two_phase


def dense_model(dim: int = 4, k: int = 2) -> keras.Model:
    inputs = keras.Input((dim,))
    return keras.Model(inputs, keras.layers.Dense(k, activation="softmax")(inputs))


def peak_lr(optimizer, steps: int = 50) -> float:
    """The largest learning rate an optimizer's schedule reaches."""
    sched = optimizer._learning_rate
    if isinstance(sched, keras.optimizers.schedules.LearningRateSchedule):
        return max(float(sched(s)) for s in range(steps))
    return float(optimizer.learning_rate)


@pytest.mark.backends
def test_overfit_20_images():
    """The sanity check of every training loop: 20 images can be learnt by heart."""
    x, y, _ = make_synthetic(4, 5, 32, seed=0)
    set_seed(0)
    clf = build_classifier("cnn", 4, input_shape=(32, 32, 3), img_size=32, dropout=0.0)
    result = fit(clf, x, y, epochs=15, batch_size=4, lr=2e-3, verbose=0)
    acc = result.history["accuracy"]
    assert acc[0] < 0.7 and acc[-1] == 1.0 and result.history["loss"][-1] < 0.05
    # in inference mode too (BatchNormalization's moving statistics have caught up)
    assert (predict_proba(clf.model, x).argmax(1) == y).mean() >= 0.9
    assert result.epochs == 15 and result.images_seen == 15 * 20
    assert result.wall_seconds > 0 and result.images_per_second == pytest.approx(300 / result.wall_seconds)


@pytest.mark.backends
def test_same_seed_same_run(tiny_ds):
    """Same seed twice: identical history and predictions (augmentation included)."""
    runs = []
    for _ in range(2):
        set_seed(7)
        clf = build_classifier("cnn", tiny_ds.num_classes, img_size=32, augment=True)
        r = fit_dataset(clf, tiny_ds, epochs=2, batch_size=16, verbose=0)
        runs.append((r.history, predict_proba(clf.model, tiny_ds.x_test)))
    (h1, p1), (h2, p2) = runs
    assert set(h1) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    timeless = [{k: v for k, v in h.items() if k != "seconds"} for h in (h1, h2)]  # wall time varies
    assert timeless[0] == timeless[1]
    assert np.array_equal(p1, p2)


@pytest.mark.backends
def test_two_phase(tiny_ds, monkeypatch):
    seen = []
    real = train.compile_model

    def spy(model, lr=1e-3, **kw):
        real(model, lr, **kw)
        seen.append({"lr": lr, "optimizer": model.optimizer, "trainable": count_trainable(model)})

    monkeypatch.setattr(train, "compile_model", spy)
    set_seed(0)
    clf = build_classifier("cnn", tiny_ds.num_classes, img_size=32, augment=False)
    result = two_phase(clf, tiny_ds, head_epochs=2, finetune_epochs=1, lr=1e-3, unfreeze_last=6,
                       batch_size=16, verbose=0)
    assert result.history["phase"] == ["head", "head", "finetune"]
    assert len(result.history["loss"]) == 3 and len(result.history["val_accuracy"]) == 3
    assert result.images_seen == 3 * len(tiny_ds.y_train)
    assert [s["lr"] for s in seen] == [1e-3, pytest.approx(1e-4)]
    # the optimizers themselves: cosine schedules that peak at lr and at lr / 10
    head_opt, ft_opt = seen[0]["optimizer"], seen[1]["optimizer"]
    assert head_opt is not ft_opt and ft_opt is clf.model.optimizer
    assert peak_lr(head_opt) == pytest.approx(1e-3)
    assert peak_lr(ft_opt) == pytest.approx(1e-4)
    # phase 1 trains the head only, phase 2 the top of the backbone as well
    assert seen[0]["trainable"] == clf.model.get_layer("head").count_params()
    assert seen[1]["trainable"] > seen[0]["trainable"]
    bns = [l for l in clf.backbone.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and not any(l.trainable for l in bns)


def test_constant_schedule_lr(monkeypatch):
    model = dense_model()
    train.compile_model(model, 0.01, schedule="constant")
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    train.compile_model(model, 0.01, steps=100)
    sched = model.optimizer._learning_rate
    assert isinstance(sched, keras.optimizers.schedules.CosineDecay)
    assert float(sched(0)) == pytest.approx(0.001) and float(sched(10)) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="schedule"):
        train.compile_model(model, 0.01, schedule="step")


def test_balanced_class_weight(monkeypatch):
    x = np.random.default_rng(0).normal(size=(12, 4)).astype("float32")
    y = np.array([0] * 9 + [1] * 3)
    model = dense_model()
    captured = {}
    real_fit = model.fit

    def spy(*args, **kwargs):
        captured.update(kwargs)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(model, "fit", spy)
    fit(model, x, y, epochs=1, batch_size=12, class_weight="balanced", verbose=0)
    assert captured["class_weight"] == pytest.approx({0: 12 / 18, 1: 2.0})
    fit(model, x, y, epochs=1, batch_size=12, class_weight=None, verbose=0)
    assert captured["class_weight"] is None
    with pytest.raises(ValueError, match="balanced"):
        fit(model, x, y, epochs=1, class_weight="inverse", verbose=0)


@pytest.mark.backends
def test_early_stopping_restores_best_weights():
    """Validation labels are the opposite of the training labels, so validation loss is
    best after the first epoch and only grows: training stops after ``patience`` more
    epochs and the weights of epoch 1 come back."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype(int)
    set_seed(0)
    model = dense_model()
    result = fit(model, x, y, validation=(x, 1 - y), epochs=20, batch_size=16, lr=0.05,
                 schedule="constant", early_stopping=2, verbose=0)
    val_loss = result.history["val_loss"]
    assert len(val_loss) == 3 and np.argmin(val_loss) == 0 and val_loss[-1] > val_loss[0]
    p = np.clip(np.asarray(model.predict(x, verbose=0)), 1e-7, 1)
    loss_now = -np.log(p[np.arange(len(y)), 1 - y]).mean()
    assert loss_now == pytest.approx(val_loss[0], rel=1e-3)
    assert loss_now != pytest.approx(val_loss[-1], rel=1e-3)


def test_train_result_extend():
    a = TrainResult({"loss": [1.0]}, 2.0, 10)
    b = TrainResult({"loss": [0.5, 0.4]}, 3.0, 20, ["gpu:0", "gpu:1"])
    a.extend(b, "finetune")
    assert a.history == {"loss": [1.0, 0.5, 0.4], "phase": ["finetune", "finetune"]}
    assert a.wall_seconds == 5.0 and a.images_per_second == 6.0 and a.epochs == 3
    assert a.extend(b, "finetune").devices == ["gpu:0", "gpu:1"]


def test_history_has_seconds_for_accuracy_against_time():
    a = TrainResult({"loss": [1.0], "seconds": [2.0]}, 2.0, 10)
    a.extend(TrainResult({"loss": [0.5, 0.4], "seconds": [1.0, 3.0]}, 3.0, 20), "finetune")
    assert a.history["seconds"] == [2.0, 3.0, 5.0]  # phase 2 continues the clock
    x = np.zeros((8, 4), np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    result = fit(model, x, np.arange(8) % 2, epochs=3, batch_size=4, verbose=0)
    t = result.history["seconds"]
    assert len(t) == 3 and 0 < t[0] < t[1] < t[2] <= result.wall_seconds + 1e-6


def test_precision_on_cpu():
    assert train.configure_precision() in ("float32", "mixed_bfloat16", "mixed_float16")
    if not train.accelerators():
        assert keras.mixed_precision.global_policy().name == "float32"
    train.configure_precision("float32")


def test_device_scope_is_a_no_op_without_accelerators():
    import contextlib

    if train.accelerators():
        pytest.skip("this machine has accelerators")
    scope = train.device_scope()
    assert isinstance(scope, contextlib.nullcontext)
    with scope:
        assert tuple(dense_model().output_shape) == (None, 2)


def test_cpu_precision_follows_the_model_and_the_cpu(monkeypatch):
    if train.accelerators():
        pytest.skip("this machine has accelerators")
    monkeypatch.setattr(train, "cpu_bf16", lambda: True)
    expected = "mixed_bfloat16" if keras.config.backend() == "tensorflow" else "float32"
    assert train.configure_precision(model="cnn") == expected
    assert keras.mixed_precision.global_policy().name == expected
    assert train.configure_precision(model="mobilenetv2") == "float32"  # depthwise: bf16 loses
    monkeypatch.setattr(train, "cpu_bf16", lambda: False)  # emulated bfloat16 is slow
    assert train.configure_precision(model="cnn") == "float32"
