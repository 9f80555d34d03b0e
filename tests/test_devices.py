"""Multi-device training on a CPU split into two logical devices, through train.device_scope."""
from __future__ import annotations

import importlib.util
import math
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, replicas

# Runs in a fresh process: the CPU must be split before the backend first touches it.
SCRIPT = textwrap.dedent("""
    import json
    import math

    import keras
    import numpy as np

    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from tlkit.data import make_synthetic
    from tlkit.evaluate import predict_proba
    from tlkit.models import ModelError, ToFloat, build_classifier, head_model
    from tlkit.train import device_scope, fit, set_seed


    def placement(variable):
        # the devices that hold a copy (or a shard) of a variable
        if backend == "jax":
            return sorted(str(d) for d in variable.value.sharding.device_set)
        return sorted(v.device for v in getattr(variable.value, "values", [variable.value]))


    set_seed(0)
    x, y, _ = make_synthetic(3, 8, 16, seed=0)
    outside = build_classifier("cnn", 3, input_shape=(32, 32, 3))  # no scope asked for: one device
    with device_scope(["cpu:0", "cpu:1"]):
        nested = type(device_scope()).__name__  # the default keeps the scope in force
        try:  # a head made outside the scope cannot train in it (TensorFlow): one clear line
            build_classifier("cnn", 3, input_shape=(32, 32, 3), head=outside.head)
            refused = ""
        except ModelError as e:
            refused = str(e)
        if backend == "tensorflow":
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
        else:
            replicas = int(keras.distribution.distribution().device_mesh.devices.size)
        # a small conv net with batch norm, and tlkit's head as a nested model
        inputs = keras.Input((16, 16, 3), dtype="uint8")
        h = ToFloat()(inputs)
        h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.GlobalAveragePooling2D()(keras.layers.Activation("relu")(h))
        model = keras.Model(inputs, head_model(8, 3, dropout=0.0)(h))
        before = [np.array(w) for w in model.trainable_weights]
        result = fit(model, x, y, epochs=2, batch_size=8, verbose=0)
    after = [np.array(w) for w in model.trainable_weights]
    proba = predict_proba(model, x)
    print(json.dumps({
        "backend": backend, "replicas": replicas,
        "placement": placement(model.get_layer("head").trainable_weights[0]),
        "loss": result.history["loss"], "devices": result.devices, "nested": nested, "refused": refused,
        "changed": sum(not np.array_equal(a, b) for a, b in zip(before, after)),
        "weights": len(after), "sums": proba.sum(1).tolist(), "finite": bool(np.isfinite(proba).all()),
    }))
""")

BACKENDS = {
    "tensorflow": {},
    "jax": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"},
}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_data_parallel_on_two_cpu_devices(backend):
    """Two logical CPU devices: the scope replicates the model on both, trains, and the
    result is sane (finite falling-or-not loss, moved weights, probabilities summing to 1)."""
    if importlib.util.find_spec({"tensorflow": "tensorflow", "jax": "jax"}[backend]) is None:
        pytest.skip(f"{backend} is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, **BACKENDS[backend]}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == backend and out["replicas"] == 2
    assert len(out["placement"]) == 2 and all("cpu" in d.lower() for d in out["placement"])
    assert len(out["loss"]) == 2 and all(math.isfinite(v) and v > 0 for v in out["loss"])
    assert out["changed"] == out["weights"] > 0  # every trainable weight moved
    assert out["finite"] and all(abs(s - 1) < 1e-4 for s in out["sums"])
    assert out["devices"] == ["cpu:0", "cpu:1"] and out["nested"] == "nullcontext"
    assert ("outside the device scope" in out["refused"]) == (backend == "tensorflow")


@pytest.mark.parametrize("value", ["cpu:0,cpu:0", "gpu0", "cpu:0;cpu:1", "npu:1"])
def test_tlkit_devices_must_name_distinct_devices(monkeypatch, value):
    from tlkit import TlkitError
    from tlkit.system import wanted_devices

    monkeypatch.setenv("TLKIT_DEVICES", value)
    with pytest.raises(TlkitError, match="TLKIT_DEVICES=.* is not a list of distinct devices"):
        wanted_devices()
    monkeypatch.setenv("TLKIT_DEVICES", " CPU:0, cpu:1 ")
    assert wanted_devices() == ["cpu:0", "cpu:1"]


def test_splitting_the_cpu_after_the_backend_started_says_so(monkeypatch):
    """This process's backend has run already: the CPU cannot be split any more, and the
    error says to set TLKIT_DEVICES before the process starts."""
    import keras

    from tlkit import TlkitError
    from tlkit.system import split_cpu

    if keras.config.backend() not in ("tensorflow", "jax"):
        pytest.skip("the CPU is split on TensorFlow and JAX")
    monkeypatch.setenv("XLA_FLAGS", "")  # restored after the test
    keras.ops.convert_to_numpy(keras.ops.ones(2) + 1)  # the backend has started
    with pytest.raises(TlkitError, match="started before tlkit could split the CPU"):
        split_cpu(8)


# Notebooks 1 and 3 on the smoke profile, shortened: each training step still runs, once.
NOTEBOOKS = {"01_cnn_from_scratch": dict(epochs=1),
             "03_fine_tuning": dict(head_epochs=1, finetune_epochs=1, stages=[10])}
NOTEBOOK_RECORDS = {"01_cnn_from_scratch": ["01_cnn_scratch"],
                    "03_fine_tuning": ["03_head_only", "03_finetune_last_n", "03_finetune_progressive"]}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_smoke_notebooks_on_two_cpu_devices(backend, tmp_path, monkeypatch):
    """Notebooks 1 and 3 in fresh kernels with ``TLKIT_DEVICES=cpu:0,cpu:1``: the CPU is split
    in two (tlkit.quiet, before the backend starts), every model is built and compiled in the
    device scope, and each record says that training ran data-parallel on both devices."""
    for module in ("papermill", "ipykernel", {"tensorflow": "tensorflow", "jax": "jax"}[backend]):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    import papermill as pm

    monkeypatch.setenv("TLKIT_DEVICES", "cpu:0,cpu:1")
    monkeypatch.setenv("KERAS_BACKEND", backend)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # tlkit sets the host device count itself
    for name, settings in NOTEBOOKS.items():
        pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                            parameters={"profile": "smoke", "limit_per_class": 40,
                                        "out_dir": str(tmp_path), **settings},
                            kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
        for record in NOTEBOOK_RECORDS[name]:
            rec = json.loads((tmp_path / "records" / f"{record}.json").read_text())
            assert rec["backend"] == backend and rec["devices"] == ["cpu:0", "cpu:1"], record


def test_device_scope_single_device_is_a_no_op():
    """Fewer than two devices named: nothing distributed, models build as usual."""
    import keras

    from tlkit.train import device_scope

    with device_scope(["cpu:0"]):
        assert replicas() == 1
        inputs = keras.Input((4,))
        assert keras.Model(inputs, keras.layers.Dense(2)(inputs)).output_shape == (None, 2)
    assert replicas() == 1
