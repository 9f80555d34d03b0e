"""tlkit.models: registry, classifier structure, freezing, and ImageNet weight lookup."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from conftest import MNV2_035
from tlkit import models
from tlkit.course import GPU
from tlkit.models import ModelError, build_classifier, resolve_weights

pytestmark = pytest.mark.backends  # also run on JAX by `make test`

COMPARED = GPU["04"]["models_to_compare"]  # notebook 4's list, the one place it is written
NINE = set(COMPARED)


# --------------------------------------------------------------------------- registry

def test_registry_names():
    assert len(NINE) == len(COMPARED) == 9
    assert set(models.REGISTRY) == NINE | {"cnn", "baseline_cnn", "mobilenet"}
    for name in NINE | {"mobilenet"}:
        assert models.get_spec(name).pretrained, name
    assert not models.get_spec("cnn").pretrained and not models.get_spec("baseline_cnn").pretrained
    assert models.get_spec("MobileNetV2").name == "mobilenetv2"  # case-insensitive


def test_unknown_model_lists_valid_names():
    with pytest.raises(ModelError) as e:
        models.get_spec("resnet5")
    msg = str(e.value)
    assert "unknown model 'resnet5'" in msg
    assert all(n in msg for n in models.REGISTRY)


def test_weight_file_names_are_keras_names():
    assert models.get_spec("mobilenetv2").weight_files(0.35, 96)[0] == \
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    assert MNV2_035 in models.get_spec("mobilenetv2").weight_files(0.35, 96)
    assert models.get_spec("mobilenet").weight_files(0.25, 224)[0] == "mobilenet_2_5_224_tf_no_top.h5"
    assert models.get_spec("resnet50").weight_files(None, 224) == [
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"]
    known = models.known_weight_files()
    assert known[MNV2_035] == ("mobilenetv2", 0.35)
    assert known["mobilenet_2_5_224_tf_no_top.h5"] == ("mobilenet", 0.25)
    assert known["efficientnetb0_notop.h5"] == ("efficientnetb0", None)


def test_config_fills_the_registry_defaults_once():
    """alpha, input size and preprocessing come from the registry entry, in one place."""
    spec = models.get_spec("mobilenetv2")
    assert spec.config() == models.ModelConfig("mobilenetv2", 1.0, 224, "tf")
    assert spec.config(0.35, 96) == models.ModelConfig("mobilenetv2", 0.35, 96, "tf")
    assert models.get_spec("resnet50").config(img_size=96) == models.ModelConfig("resnet50", None, 96, "caffe")
    assert models.get_spec("efficientnetb3").config().img_size == 300
    assert models.get_spec("cnn").config() == models.ModelConfig("cnn", None, 32, "unit")
    with pytest.raises(ModelError, match=r"mobilenetv2 takes alpha in \(0.35, .*\), not 0.3"):
        spec.config(0.3)
    with pytest.raises(ModelError, match="resnet50 takes alpha in nothing, not 1.0"):
        models.get_spec("resnet50").config(1.0)
    with pytest.raises(ModelError, match="mobilenetv2 needs images of at least 32 px, not 0"):
        spec.config(img_size=0)


# --------------------------------------------------------------------------- classifier

def test_classifier_structure_with_resize():
    clf = build_classifier("cnn", 3, input_shape=(16, 16, 3), img_size=32, augment=True)
    m = clf.model
    assert m.inputs[0].dtype == "uint8" and tuple(m.input_shape) == (None, 16, 16, 3)
    # image → float → augmentation → extractor → head
    assert [l.name for l in m.layers] == ["image", "to_float", "augment_flip", "augment_translate",
                                          "extractor", "head"]
    assert isinstance(m.get_layer("augment_flip"), keras.layers.RandomFlip)
    assert m.get_layer("extractor") is clf.extractor and m.get_layer("head") is clf.head
    names = [l.name for l in clf.extractor.layers]
    assert names[0] == "image" and names.index("resize") < names.index("preprocess") < names.index("backbone")
    assert not any("Random" in type(l).__name__ for l in clf.extractor.layers)  # train-only: not here
    assert clf.extractor.get_layer("resize").get_config()["height"] == 32
    assert clf.extractor.get_layer("preprocess").mode == "unit"
    assert clf.extractor.get_layer("backbone") is clf.backbone
    assert [l.name for l in clf.head.layers] == ["features", "dropout", "classes"]
    dense = clf.head.get_layer("classes")
    assert dense.units == 3 and dense.activation.__name__ == "softmax"
    assert tuple(m.output_shape) == (None, 3)
    assert clf.weights_source == "random" and not clf.transfer
    assert clf.backbone.trainable  # from scratch: not frozen
    assert clf.augment == ("flip", "translate")
    p = np.asarray(m.predict(np.zeros((2, 16, 16, 3), np.uint8), verbose=0))
    assert p.shape == (2, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    info = clf.info()
    assert info["params"] == m.count_params() and info["weights_source"] == "random"
    assert info["trainable_params"] == models.count_trainable(m)


def test_classifier_without_resize():
    clf = build_classifier("baseline_cnn", 2, input_shape=(32, 32, 3), img_size=32, augment=False)
    names = [l.name for l in clf.extractor.layers]
    assert "resize" not in names and "pool" not in names  # baseline flattens itself
    assert not any(l.name.startswith("augment_") for l in clf.model.layers)


@pytest.fixture(scope="module")
def mnv2_parts(fake_mnv2):
    """A pretrained-like MobileNetV2 (fake ImageNet weights) at 96 px fed 32-px images."""
    folder, _, _ = fake_mnv2
    kw = dict(input_shape=(32, 32, 3), img_size=96, weights="imagenet", alpha=0.35,
              weights_dir=folder)
    x = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    return kw, x


@pytest.mark.parametrize("standardize", [False, True])
def test_full_model_is_head_of_extractor(mnv2_parts, standardize):
    """One graph: model(x) == head(extractor(x)), augmentation (training only) included,
    with the classifier's own head or with a given (standardizing) head."""
    kw, x = mnv2_parts
    head = None
    if standardize:
        rng = np.random.default_rng(1)
        head = models.head_model(1280, 3, 0.2, rng.normal(0, 1, 1280), rng.uniform(0.5, 2, 1280))
        head.get_layer("classes").set_weights([rng.normal(0, 0.3, (1280, 3)).astype("float32"),
                                               rng.normal(0, 0.3, 3).astype("float32")])
    clf = build_classifier("mobilenetv2", 3, augment=True, head=head, **kw)
    assert clf.transfer and "resize" in [l.name for l in clf.extractor.layers]
    assert (clf.head is head) if standardize else ("standardize" not in
                                                   [l.name for l in clf.head.layers])
    full = np.asarray(clf.model.predict(x, verbose=0))
    feats = np.asarray(clf.extractor.predict(x, verbose=0))
    parts = np.asarray(clf.head.predict(feats, verbose=0))
    assert feats.shape == (6, 1280) and np.allclose(full.sum(1), 1, atol=1e-5)
    assert np.abs(full - parts).max() < 1e-5
    # a separately built extractor with the same weights gives the same features
    other, _ = models.build_extractor("mobilenetv2", **kw)
    assert np.abs(np.asarray(other.predict(x, verbose=0)) - feats).max() < 1e-4


def test_given_head_must_fit(mnv2_parts):
    kw, _ = mnv2_parts
    with pytest.raises(ModelError, match="the head maps"):
        build_classifier("mobilenetv2", 3, head=models.head_model(1280, 4), **kw)
    with pytest.raises(ModelError, match="the head maps"):
        build_classifier("mobilenetv2", 3, head=models.head_model(256, 3), **kw)


def test_preprocess_modes():
    x = keras.ops.convert_to_tensor(np.array([[[[0.0, 127.5, 255.0]]]], np.float32))
    tf_mode = np.asarray(models.Preprocess("tf")(x))
    assert np.allclose(tf_mode, [-1, 0, 1])
    assert np.allclose(np.asarray(models.Preprocess("unit")(x)), [0, 0.5, 1])
    caffe = np.asarray(models.Preprocess("caffe")(x))
    assert np.allclose(caffe, [255 - 103.939, 127.5 - 116.779, 0 - 123.68], atol=1e-3)
    with pytest.raises(ValueError):
        models.Preprocess("bgr")


@pytest.mark.parametrize("kwargs, match", [
    ({"base": "cnn", "num_classes": 1}, "at least 2 classes"),
    ({"base": "cnn", "num_classes": 3, "input_shape": (32, 32)}, "input_shape"),
    ({"base": "cnn", "num_classes": 3, "img_size": 16}, "at least 32 px"),
    ({"base": "cnn", "num_classes": 3, "augment": ["flip", "blur"]}, "unknown augmentation"),
    ({"base": "mobilenetv2", "num_classes": 3, "alpha": 0.3, "weights": "none"}, "alpha"),
    ({"base": "cnn", "num_classes": 3, "weights": "imagenet"}, "--weights none"),
])
def test_classifier_errors(kwargs, match):
    with pytest.raises(ModelError, match=match):
        build_classifier(**kwargs)


# --------------------------------------------------------------------------- weights

def test_imagenet_weights_from_weights_dir(fake_mnv2, no_local_keras):
    folder, path, saved = fake_mnv2
    clf = build_classifier("mobilenetv2", 3, alpha=0.35, img_size=96, weights="imagenet",
                           weights_dir=folder)
    assert clf.weights_source == f"imagenet:{path.resolve()}"
    assert clf.transfer and clf.alpha == 0.35
    loaded = clf.backbone.get_weights()
    assert len(loaded) == len(saved)
    assert all(np.array_equal(a, b) for a, b in zip(loaded, saved))
    fresh = keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None,
                                           input_shape=(96, 96, 3))
    assert not all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), saved))
    # pretrained: frozen by default, the head alone trains
    assert not clf.backbone.trainable
    assert models.count_trainable(clf.model) == clf.head.count_params()
    assert clf.extractor.get_layer("preprocess").mode == "tf"


def test_imagenet_weights_from_env(fake_mnv2, no_local_keras, monkeypatch):
    folder, path, _ = fake_mnv2
    monkeypatch.setenv("TLKIT_WEIGHTS_DIR", str(folder))
    assert resolve_weights("mobilenetv2", "imagenet", 0.35, 96) == (
        str(path.resolve()), f"imagenet:{path.resolve()}")
    # None means auto: imagenet for a pretrained backbone
    assert resolve_weights("mobilenetv2", None, 0.35, 96)[1] == f"imagenet:{path.resolve()}"
    # another alpha has no file there
    assert models.find_weights("mobilenetv2", 0.5, 96) is None


def test_imagenet_weights_from_keras_home(fake_mnv2, no_local_keras, monkeypatch, tmp_path):
    _, path, saved = fake_mnv2
    keras_home = tmp_path / "kh"
    (keras_home / "models").mkdir(parents=True)
    target = keras_home / "models" / MNV2_035
    target.write_bytes(path.read_bytes())
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    assert models.weights_dirs()[-1] == keras_home / "models"
    arg, source = resolve_weights("mobilenetv2", "imagenet", 0.35, 96)
    assert source == f"imagenet:{target.resolve()}"
    backbone, source2 = models.build_backbone("mobilenetv2", 96, "imagenet", 0.35)
    assert source2 == source and backbone.name == "backbone"
    assert all(np.array_equal(a, b) for a, b in zip(backbone.get_weights(), saved))


def test_weights_dir_argument_comes_first(fake_mnv2, no_local_keras, monkeypatch, tmp_path):
    folder, path, _ = fake_mnv2
    other = tmp_path / "other"
    other.mkdir()
    (other / MNV2_035).write_bytes(path.read_bytes())
    monkeypatch.setenv("TLKIT_WEIGHTS_DIR", str(folder))
    assert resolve_weights("mobilenetv2", "imagenet", 0.35, 96, weights_dir=other)[1] == \
        f"imagenet:{(other / MNV2_035).resolve()}"


def test_weights_from_a_file_path(fake_mnv2):
    _, path, saved = fake_mnv2
    clf = build_classifier("mobilenetv2", 2, alpha=0.35, img_size=96, weights=str(path),
                           input_shape=(96, 96, 3))
    assert clf.weights_source == f"file:{path.resolve()}"
    assert "resize" not in [l.name for l in clf.extractor.layers]
    assert all(np.array_equal(a, b) for a, b in zip(clf.backbone.get_weights(), saved))


def test_weights_file_that_does_not_fit(fake_mnv2):
    _, path, _ = fake_mnv2
    with pytest.raises(ModelError, match="could not load weights"):
        models.build_backbone("mobilenetv2", 96, str(path), alpha=0.5)


def test_imagenet_offline_without_file(no_local_keras, offline):
    with pytest.raises(ModelError) as e:
        build_classifier("mobilenetv2", 3, alpha=0.35, img_size=96, weights="imagenet")
    msg = str(e.value)
    assert "--weights none" in msg and "--weights-dir" in msg
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5" in msg


def test_weights_none_and_missing_path(no_local_keras, tmp_path):
    assert resolve_weights("mobilenetv2", "none") == (None, "random")
    assert resolve_weights("resnet50", "random") == (None, "random")
    assert resolve_weights("cnn", None) == (None, "random")
    assert resolve_weights("mobilenetv2", "imagenet", 0.35, 96) == ("imagenet", "imagenet:download")
    with pytest.raises(ModelError, match="neither imagenet, none, nor an existing file"):
        resolve_weights("mobilenetv2", str(tmp_path / "missing.h5"))
    clf = build_classifier("mobilenetv2", 3, alpha=0.35, img_size=96, weights="none")
    assert clf.weights_source == "random" and not clf.transfer and clf.backbone.trainable


def test_local_weights_listing(tmp_path):
    for name in (MNV2_035, "mobilenet_2_5_224_tf_no_top.h5", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "unrelated.h5"):
        (tmp_path / name).write_bytes(b"x" * 10)
    found = {w["model"]: w for w in models.local_weights(tmp_path)}
    assert set(found) == {"mobilenetv2", "mobilenet", "resnet50"}
    assert found["mobilenetv2"]["alpha"] == 0.35 and found["resnet50"]["alpha"] is None
    assert found["mobilenet"]["path"] == str((tmp_path / "mobilenet_2_5_224_tf_no_top.h5").resolve())


def test_weights_unavailable(fake_mnv2, no_local_keras):
    folder, _, _ = fake_mnv2
    assert models.weights_unavailable("mobilenetv2", "imagenet", 0.35, 96)
    assert not models.weights_unavailable("mobilenetv2", "imagenet", 0.35, 96, weights_dir=folder)
    assert not models.weights_unavailable("mobilenetv2", "none", 0.35, 96)


# --------------------------------------------------------------------------- freezing

@pytest.fixture(scope="module")
def pretrained(fake_mnv2):
    folder, _, _ = fake_mnv2
    return build_classifier("mobilenetv2", 3, alpha=0.35, img_size=96, weights="imagenet",
                            weights_dir=folder, input_shape=(32, 32, 3))


def _bn_all_frozen(backbone):
    bns = [l for l in backbone.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns
    return all(not l.trainable and not l.trainable_weights for l in bns)


def test_freeze_and_unfreeze_last_n(pretrained):
    clf = pretrained
    models.freeze_backbone(clf)
    head_params = clf.head.count_params()
    assert models.count_trainable(clf.model) == head_params
    report = models.param_report(clf.model)
    assert report == (f"{clf.model.name}: {head_params:,} trainable / "
                      f"{clf.model.count_params() - head_params:,} non-trainable parameters")

    n = models.unfreeze(clf, last_n=10)
    layers = clf.backbone.layers
    assert all(not l.trainable for l in layers[:-10])
    tail = [l for l in layers[-10:] if not isinstance(l, keras.layers.BatchNormalization)]
    assert tail and all(l.trainable for l in tail)
    assert n == sum(1 for l in tail if l.weights)
    assert _bn_all_frozen(clf.backbone)
    expected = head_params + sum(int(np.prod(w.shape)) for l in tail for w in l.trainable_weights)
    assert models.count_trainable(clf.model) == expected
    assert f"{expected:,} trainable" in models.param_report(clf.model)

    models.freeze_backbone(clf)
    assert models.count_trainable(clf.model) == head_params


def test_unfreeze_from_layer_and_all(pretrained):
    clf = pretrained
    models.unfreeze(clf, from_layer="block_16")
    layers = clf.backbone.layers
    first = next(i for i, l in enumerate(layers) if l.name.startswith("block_16"))
    assert all(not l.trainable for l in layers[:first])
    assert all(l.trainable for l in layers[first:] if not isinstance(l, keras.layers.BatchNormalization))
    assert _bn_all_frozen(clf.backbone)
    models.unfreeze(clf)  # everything but BatchNormalization
    assert all(l.trainable != isinstance(l, keras.layers.BatchNormalization) for l in layers)
    with pytest.raises(ModelError, match="no layer named 'block_99"):
        models.unfreeze(clf, from_layer="block_99")
    models.freeze_backbone(clf)
