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
    from tlkit.models import ToFloat, head_model
    from tlkit.train import device_scope, fit, set_seed


    def placement(variable):
        # the devices that hold a copy (or a shard) of a variable
        if backend == "jax":
            return sorted(str(d) for d in variable.value.sharding.device_set)
        return sorted(v.device for v in getattr(variable.value, "values", [variable.value]))


    set_seed(0)
    x, y, _ = make_synthetic(3, 8, 16, seed=0)
    with device_scope(["cpu:0", "cpu:1"]):
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
        "loss": result.history["loss"],
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


def test_device_scope_single_device_is_a_no_op():
    """Fewer than two devices named: nothing distributed, models build as usual."""
    import keras

    from tlkit.train import device_scope

    with device_scope(["cpu:0"]):
        assert replicas() == 1
        inputs = keras.Input((4,))
        assert keras.Model(inputs, keras.layers.Dense(2)(inputs)).output_shape == (None, 2)
    assert replicas() == 1
