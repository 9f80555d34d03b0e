"""Keras 3 backends: the same tlkit code trains on every installed backend.

The suite itself runs on one backend (``KERAS_BACKEND``; ``make test`` runs it on
TensorFlow and the ``backends``-marked subset again on JAX); this test trains one
classifier, through the two-half graph, on each *other* installed backend in a subprocess.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
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
    before = [w.copy() for w in clf.head.get_weights()]
    result = fit(clf, x, y, epochs=1, batch_size=12, verbose=0)
    after = clf.head.get_weights()
    proba = predict_proba(clf.model, x)
    parts = predict_proba(clf.head, predict_proba(clf.extractor, x))
    print(json.dumps({"backend": keras.config.backend(), "history": result.history,
                      "changed": any(not np.array_equal(a, b) for a, b in zip(before, after)),
                      "proba_sums": proba.sum(1).tolist(),
                      "one_graph": float(np.abs(proba - parts).max())}))
""")

OTHERS = [b for b in ("tensorflow", "jax", "torch") if b != keras.config.backend()]


@pytest.mark.parametrize("backend", OTHERS)
def test_other_backend_trains_one_step(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == backend
    assert len(out["history"]["loss"]) == 1 and out["history"]["loss"][0] > 0
    assert out["changed"]  # one step moved the weights
    assert all(abs(s - 1) < 1e-4 for s in out["proba_sums"])
    assert out["one_graph"] < 1e-5
