"""tlkit.train: a model can overfit, runs repeat under a seed, schedules, class weights."""
from __future__ import annotations

import os

import keras
import numpy as np
import pytest

import tlkit.train as train
from conftest import replicas
from tlkit.data import make_synthetic
from tlkit.evaluate import predict_proba
from tlkit.models import build_classifier
from tlkit.train import TrainResult, fit, fit_dataset, set_seed


def dense_model(dim: int = 4, k: int = 2) -> keras.Model:
    inputs = keras.Input((dim,))
    return keras.Model(inputs, keras.layers.Dense(k, activation="softmax")(inputs))


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


def test_time_budget_stops_before_the_epoch_that_would_overrun(monkeypatch):
    """Epochs of 30 s on a 100 s budget: the third ends at 90 s, a fourth would end at 120 s."""
    import tlkit.train as train_mod

    clock = iter(float(t) for t in (0, 30, 60, 90))
    monkeypatch.setattr(train_mod.time, "perf_counter", lambda: next(clock))
    budget, model = train_mod.TimeBudget(100), type("M", (), {"stop_training": False})()
    budget.set_model(model)
    budget.on_train_begin()
    stops = []
    for epoch in range(3):
        budget.on_epoch_end(epoch)
        stops.append(model.stop_training)
    assert stops == [False, False, True]


def test_time_budget_needs_a_constant_rate():
    x, y = np.zeros((8, 4), "float32"), np.zeros(8, int)
    with pytest.raises(ValueError, match="schedule='constant'"):
        fit(dense_model(), x, y, epochs=1, time_budget=10, verbose=0)


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
    """Nothing distributed: a model built and trained in the scope runs on one device."""
    if train.accelerators():
        pytest.skip("this machine has accelerators")
    with train.device_scope():
        assert replicas() == 1
        model = dense_model()
        fit(model, np.zeros((8, 4), np.float32), np.arange(8) % 2, epochs=1, batch_size=4, verbose=0)
    assert replicas() == 1


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


def _gpu(name: str, capability: tuple[int, int] | None) -> dict:
    return {"name": name, "kind": "gpu", "compute_capability": capability}


A100, H100, L4 = _gpu("NVIDIA A100-SXM4-40GB", (8, 0)), _gpu("NVIDIA H100 80GB HBM3", (9, 0)), _gpu("NVIDIA L4", (8, 9))
T4, V100 = _gpu("Tesla T4", (7, 5)), _gpu("Tesla V100-SXM2-16GB", (7, 0))
TPU = {"name": "TPU v4", "kind": "tpu", "compute_capability": None}


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_precision_per_device(backend):
    """bfloat16 only where the device computes it natively, the same on every backend."""
    choose = train.choose_precision
    for devices, policy in [([A100], "mixed_bfloat16"), ([H100], "mixed_bfloat16"), ([L4], "mixed_bfloat16"),
                            ([TPU], "mixed_bfloat16"), ([H100, H100], "mixed_bfloat16"),
                            ([T4], "mixed_float16"), ([V100], "mixed_float16"),
                            ([_gpu("AMD Instinct MI100", None)], "mixed_float16"),  # capability unknown
                            ([A100, T4], "mixed_float16")]:  # what every device computes natively
        for cpu_bf16 in (False, True):
            for model in ("cnn", "resnet50", None):
                assert choose(devices, cpu_bf16, model, backend) == policy, (devices, model)
    # a CPU: float32, except the dense CNN on TensorFlow where bfloat16 is native (bench: it wins)
    assert choose([], True, "cnn", backend) == ("mixed_bfloat16" if backend == "tensorflow" else "float32")
    assert choose([], True, "mobilenetv2", backend) == choose([], False, "cnn", backend) == "float32"


@pytest.mark.parametrize("text, capability", [("8.6", (8, 6)), ((7, 5), (7, 5)), ([9, 0], (9, 0)),
                                              ("gfx90a", None), (None, None), ("", None)])
def test_compute_capability_is_read_from_every_backend_form(text, capability):
    from tlkit.system import _capability

    assert _capability(text) == capability


def _fake_gpu(monkeypatch, name: str, capability: tuple[int, int]) -> None:
    """One GPU in the current backend's own device listing."""
    from types import SimpleNamespace

    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpu = SimpleNamespace(name="/physical_device:GPU:0", device_type="GPU")
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [gpu] if kind == "GPU" else [])
        monkeypatch.setattr(tf.config.experimental, "get_device_details",
                            lambda d: {"device_name": name, "compute_capability": capability})
    elif backend == "jax":
        import jax

        monkeypatch.setattr(jax, "devices", lambda *a: [SimpleNamespace(
            platform="gpu", device_kind=name, compute_capability="%d.%d" % capability)])
    else:
        pytest.skip(f"no faked device listing for {backend}")


@pytest.mark.backends
@pytest.mark.parametrize("gpu, policy", [(A100, "mixed_bfloat16"), (T4, "mixed_float16")])
def test_precision_from_a_faked_gpu(monkeypatch, gpu, policy):
    from tlkit.system import accelerator_info

    _fake_gpu(monkeypatch, gpu["name"], gpu["compute_capability"])
    assert accelerator_info() == [gpu]
    assert train.accelerators() == [gpu["name"]]
    assert train.configure_precision(model="cnn") == policy
    assert keras.mixed_precision.global_policy().name == policy


@pytest.fixture
def _deterministic_after(monkeypatch):
    yield
    monkeypatch.undo()  # the real devices and flags back first
    set_seed(0)  # the tests after this one run deterministic, as by default


@pytest.mark.backends
@pytest.mark.usefixtures("_deterministic_after")
def test_determinism_is_a_choice_the_record_states():
    from tlkit.records import environment

    backend = keras.config.backend()
    set_seed(0, deterministic=False)
    env = environment()
    # a CPU: TensorFlow compiles without XLA there anyway; JAX always compiles with XLA, and
    # its CPU kernels are deterministic
    assert (env["deterministic"], env["xla"]) == ((False, False) if backend == "tensorflow" else (True, True))
    set_seed(0)
    env = environment()
    assert env["deterministic"] is True and env["xla"] is (backend == "jax")
    assert isinstance(env["precision"], str)


@pytest.mark.backends
@pytest.mark.usefixtures("_deterministic_after")
def test_determinism_on_a_faked_gpu(monkeypatch):
    """On a GPU the choice is deterministic (slower) or XLA (faster), and the record says which."""
    from tlkit.system import JAX_DETERMINISM_FLAG, execution

    _fake_gpu(monkeypatch, A100["name"], A100["compute_capability"])
    if keras.config.backend() == "tensorflow":
        set_seed(0, deterministic=False)
        assert execution() == {"deterministic": False, "xla": True}
        set_seed(0)
        assert execution() == {"deterministic": True, "xla": False}  # Keras turns XLA off
        return
    from jax._src import xla_bridge

    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
    set_seed(0)
    assert os.environ["XLA_FLAGS"].split() == ["--xla_dump_to=/tmp/x", JAX_DETERMINISM_FLAG]
    assert execution() == {"deterministic": True, "xla": True}
    set_seed(0, deterministic=False)
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
    assert execution() == {"deterministic": False, "xla": True}
    # once JAX has started on the GPU, XLA keeps its flags: one line says so, the record stays true
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: True)
    with pytest.warns(RuntimeWarning, match="JAX has started on the GPU.*XLA_FLAGS") as caught:
        set_seed(0)
    assert "\n" not in str(caught[0].message)
    assert execution() == {"deterministic": False, "xla": True}
