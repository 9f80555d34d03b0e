"""tlkit.serve: load a trained model, name images, say 'unknown' below the threshold."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import CLI_PREFIX
from tlkit import TlkitError
from tlkit.data import load_dataset
from tlkit.serve import Predictor


@pytest.fixture(scope="module")
def predictor(cli_run):
    out, _ = cli_run
    return Predictor.load(out / f"{CLI_PREFIX}_model.keras")


def test_load_reads_class_names(predictor, cli_run):
    out, _ = cli_run
    record = json.loads((out / f"{CLI_PREFIX}_record.json").read_text())
    assert predictor.class_names == record["dataset"]["class_names"]
    assert predictor.input_shape == (32, 32, 3) and predictor.threshold == 0.5


def test_predict_matches_the_run(predictor, cli_run):
    """The loaded model is the trained one: it reproduces the record's test accuracy."""
    out, _ = cli_run
    record = json.loads((out / f"{CLI_PREFIX}_record.json").read_text())
    ds = load_dataset("synthetic", seed=0)  # what `tlkit train --dataset synthetic` used
    predictor.threshold = 0.0
    results = predictor.predict(ds.x_test)
    assert len(results) == len(ds.y_test)
    labels = [label for label, _ in results]
    accuracy = np.mean([label == ds.class_names[y] for label, y in zip(labels, ds.y_test)])
    assert accuracy == pytest.approx(record["metrics"]["test_accuracy"])
    assert all(0 < conf <= 1 for _, conf in results)
    # one image without a batch axis
    (label, conf), = predictor.predict(ds.x_test[0])
    assert label == labels[0] and conf == pytest.approx(results[0][1], abs=1e-5)


def test_unknown_threshold(predictor):
    x = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    predictor.threshold = 0.0
    confident = predictor.predict(x)
    assert all(label in predictor.class_names for label, _ in confident)
    cut = float(np.median([c for _, c in confident]))
    predictor.threshold = cut
    mixed = predictor.predict(x)
    for (l0, c0), (l1, c1) in zip(confident, mixed):
        assert c0 == pytest.approx(c1)
        assert l1 == (l0 if c0 >= cut else "unknown")
    assert any(l == "unknown" for l, _ in mixed) and any(l != "unknown" for l, _ in mixed)
    predictor.threshold = 1.5
    with pytest.raises(ValueError, match="between 0 and 1"):
        predictor.predict(x)
    predictor.threshold = 0.5


def test_wrong_shape(predictor):
    with pytest.raises(TlkitError, match=r"\(16, 16, 3\).*\(32, 32, 3\).*predict_files"):
        predictor.predict(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(TlkitError):
        predictor.predict(np.zeros((2, 32, 32), np.uint8))


def test_load_errors(tmp_path, cli_run):
    with pytest.raises(TlkitError, match="no model file"):
        Predictor.load(tmp_path / "nothing_model.keras")
    out, _ = cli_run
    lonely = tmp_path / "x_model.keras"
    shutil.copy(out / f"{CLI_PREFIX}_model.keras", lonely)
    with pytest.raises(TlkitError, match="no record x_record.json"):
        Predictor.load(lonely)
    p = Predictor.load(lonely, class_names=["a", "b", "c", "d"], threshold=0.0)
    assert p.class_names == ["a", "b", "c", "d"]
    assert p.predict(np.zeros((32, 32, 3), np.uint8))[0][0] in p.class_names
