"""tlkit.export: every format the backend supports, labels beside each export, and parity:
ONNX Runtime and TFLite give Keras's probabilities within 1e-4 on a batch."""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from servekit import NAMES, tiny_model
from tlkit.cli import main
from tlkit.export import ExportError, export_model, load_exported, unavailable
from tlkit.modelfile import load_model

TF = keras.backend.backend() == "tensorflow"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("export-model"))


@pytest.fixture(scope="module")
def batch_and_reference(model_file):
    x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    model, _, _ = load_model(model_file)
    return x, np.asarray(model.predict(x, verbose=0))


def _labels(folder, stem="tiny_model") -> dict:
    return json.loads((folder / f"{stem}_labels.json").read_text())


def test_keras_export_carries_the_labels(model_file, tmp_path, batch_and_reference):
    out = export_model(model_file, "keras", tmp_path)
    assert out == tmp_path / "tiny_model.keras"
    model, names, meta = load_model(out)
    assert names == NAMES and meta["base"] == "cnn"
    x, ref = batch_and_reference
    np.testing.assert_allclose(model.predict(x, verbose=0), ref, atol=1e-6)
    labels = _labels(tmp_path)
    assert labels["class_names"] == NAMES and labels["input_shape"] == [32, 32, 3]
    with pytest.raises(ExportError, match="already a .keras file"):
        export_model(model_file, "keras")


def test_onnx_parity(model_file, tmp_path, batch_and_reference):
    """ONNX Runtime on the exported file: same top-1, probabilities within 1e-4 (the
    exact GELU of TensorFlow needs tf2onnx's missing Erfc, which export.py supplies)."""
    if unavailable("onnx"):
        pytest.skip(unavailable("onnx"))
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    path = export_model(model_file, "onnx", tmp_path)
    assert path == tmp_path / "tiny_model.onnx" and _labels(tmp_path)["format"] == "onnx"
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["class_names"]) == NAMES
    x, ref = batch_and_reference
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert (got.argmax(1) == ref.argmax(1)).all()
    np.testing.assert_allclose(load_exported(path)(x[:3]), ref[:3], atol=1e-4)


@pytest.mark.skipif(not TF, reason="TFLite export needs the tensorflow backend")
def test_tflite_parity(model_file, tmp_path, batch_and_reference):
    path = export_model(model_file, "tflite", tmp_path)
    x, ref = batch_and_reference
    got = load_exported(path)(x)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_savedmodel_export_replaces_a_previous_one(model_file, tmp_path, batch_and_reference):
    if unavailable("savedmodel"):
        pytest.skip(unavailable("savedmodel"))
    import tensorflow as tf

    target = tmp_path / "tiny_model_savedmodel"
    target.mkdir()
    (target / "stale.txt").write_text("from an older export")
    assert export_model(model_file, "savedmodel", tmp_path) == target
    assert not (target / "stale.txt").exists()
    assert json.loads((target / "labels.json").read_text())["class_names"] == NAMES
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    x, ref = batch_and_reference
    loaded = tf.saved_model.load(str(target))  # keep it referenced: its variables live in it
    got = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_unavailable_formats_are_said_before_loading(monkeypatch, model_file, tmp_path, capsys):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert "needs the tensorflow backend, this is jax" in unavailable("tflite")
    monkeypatch.setattr("tlkit.modelfile.load_model", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(ExportError, match="cannot export to tflite here"):
        export_model(model_file, "tflite", tmp_path)
    assert main(["export", str(model_file), "--format", "tflite", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("tlkit: error: cannot export to tflite here")
    monkeypatch.setattr("tlkit.export._has", lambda *m: False)
    assert "ONNX export on jax needs jax2onnx and onnx" in unavailable("onnx")
    assert "unknown format 'pt'" in unavailable("pt")


def test_export_errors(model_file, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(ExportError, match="is a file; pass a folder"):
        export_model(model_file, "keras", tmp_path / "file")
    assert main(["export", str(tmp_path / "missing.keras"), "--format", "keras", "--out", str(tmp_path)]) == 2
    assert "no model file" in capsys.readouterr().err
    assert main(["export", str(model_file), "--format", "keras", "--out", str(tmp_path / "o")]) == 0
    assert capsys.readouterr().out.strip() == f"exported {tmp_path / 'o' / 'tiny_model.keras'}"


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_export_to_a_folder_that_cannot_be_made_is_one_line(where, model_file, tmp_path, capsys):
    if where == "in /proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "sub" if where == "under a file" else Path("/proc/nope")
    assert main(["export", str(model_file), "--format", "keras", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tlkit: error: --out {out} cannot be created (") and len(err.strip().splitlines()) == 1


def test_onnx_export_of_a_classifier_with_augmentation(tmp_path):
    """Augmentation layers act in training only; the export leaves them out, so it converts."""
    from tlkit.modelfile import save_model
    from tlkit.models import build_classifier, inference_model

    if unavailable("onnx"):
        pytest.skip(unavailable("onnx"))
    clf = build_classifier("mobilenetv2", 3, input_shape=(32, 32, 3), img_size=32, weights="none",
                           alpha=0.35, augment=["flip", "translate"])
    assert inference_model(clf.model) is not clf.model
    path = save_model(clf.model, tmp_path / "m.keras", ["a", "b", "c"])
    run = load_exported(export_model(path, "onnx", tmp_path / "out"))
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    expected = np.asarray(clf.model.predict(x, verbose=0))
    np.testing.assert_allclose(np.asarray(run(x)), expected, atol=1e-4)


# A model trained under each precision policy exports in float32: the export matches the
# float32 Keras model it was made from (1e-4), and the model as trained within its policy's
# rounding (float16: 10 mantissa bits, bfloat16: 7).
POLICIES = {"float32": 1e-4, "mixed_float16": 2e-3, "mixed_bfloat16": 5e-2}


@pytest.fixture(scope="module", params=list(POLICIES))
def trained_under(request, tmp_path_factory):
    """(policy, a 32-px CNN trained two epochs under it and saved, a test batch)."""
    from tlkit.data import load_dataset
    from tlkit.modelfile import save_model
    from tlkit.models import build_classifier
    from tlkit.train import fit_dataset, set_seed

    ds = load_dataset("synthetic", synthetic_classes=3, synthetic_per_class=16, seed=0)
    set_seed(0)
    keras.mixed_precision.set_global_policy(request.param)
    try:
        clf = build_classifier("cnn", ds.num_classes, input_shape=ds.image_shape, augment=["flip"])
        fit_dataset(clf, ds, epochs=2, batch_size=16, lr=2e-3, verbose=0)
        path = save_model(clf.model, tmp_path_factory.mktemp(request.param) / "m.keras", ds.class_names)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return request.param, path, ds.x_test


def _policies(model) -> set[str]:
    """The precision policies of a model's layers, nested models' layers included."""
    return {p for lyr in model.layers
            for p in ({lyr.dtype_policy.name} | (_policies(lyr) if hasattr(lyr, "layers") else set()))}


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_mixed_precision_models_export_in_float32(trained_under, fmt, tmp_path):
    from tlkit.models import inference_model

    policy, path, x = trained_under
    if unavailable(fmt):
        pytest.skip(unavailable(fmt))
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    model, _, _ = load_model(path)
    float32 = inference_model(model)
    assert policy in _policies(model) and not any(p.startswith("mixed_") for p in _policies(float32))
    got = np.asarray(load_exported(export_model(path, fmt, tmp_path))(x))
    np.testing.assert_allclose(got, float32.predict(x, verbose=0), atol=1e-4)
    as_trained = np.asarray(model.predict(x, verbose=0), dtype=np.float32)
    np.testing.assert_allclose(got, as_trained, atol=POLICIES[policy])
    assert np.mean(got.argmax(1) == as_trained.argmax(1)) >= 0.9
    assert keras.mixed_precision.global_policy().name == "float32"
