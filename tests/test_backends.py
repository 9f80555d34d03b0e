"""Keras 3 backends: tlkit is backend-agnostic; the JAX backend builds and trains the CNN."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

SCRIPT = textwrap.dedent("""
    import json
    import keras
    import numpy as np
    from tlkit.data import make_synthetic
    from tlkit.evaluate import predict_proba
    from tlkit.models import build_classifier
    from tlkit.train import fit, set_seed

    set_seed(0)
    clf = build_classifier("cnn", 3)
    x, y, _ = make_synthetic(3, 4, 32, seed=0)
    before = [w.copy() for w in clf.model.get_layer("head").get_weights()]
    result = fit(clf, x, y, epochs=1, batch_size=12, verbose=0)
    after = clf.model.get_layer("head").get_weights()
    proba = predict_proba(clf.model, x)
    print(json.dumps({"backend": keras.config.backend(), "history": result.history,
                      "changed": any(not np.array_equal(a, b) for a, b in zip(before, after)),
                      "proba_sums": proba.sum(1).tolist()}))
""")


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_backend_trains_one_step(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax"
    assert len(out["history"]["loss"]) == 1 and out["history"]["loss"][0] > 0
    assert out["changed"]  # one step moved the weights
    assert all(abs(s - 1) < 1e-4 for s in out["proba_sums"])
