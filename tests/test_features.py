"""tlkit.features: the frozen-feature cache, heads trained on features, full models."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tlkit.evaluate import evaluate, predict_proba
from tlkit.features import attach_head, extract_features, fit_head, probe
from tlkit.train import set_seed


def _files(cache_dir):
    return sorted(p.name for p in (cache_dir / "features").glob("*.npy"))


@pytest.fixture(scope="module")
def cnn_weights(tmp_path_factory):
    """A weights file of the course CNN, standing in for pretrained weights."""
    from tlkit.models import cnn_body

    set_seed(1)
    path = tmp_path_factory.mktemp("cnnw") / "cnn.weights.h5"
    cnn_body((32, 32, 3)).save_weights(path)
    return str(path)


def test_extract_features_cached(tiny_ds, cache_dir, cnn_weights):
    set_seed(0)
    w = cnn_weights
    a = extract_features("cnn", tiny_ds, img_size=32, weights=w)
    assert a.cached == {"train": False, "val": False, "test": False}
    assert a.weights_source.startswith("file:") and a.dim == 256 and a.img_size == 32
    assert {k: v.shape for k, v in a.splits.items()} == {
        "train": (len(tiny_ds.y_train), 256), "val": (len(tiny_ds.y_val), 256),
        "test": (len(tiny_ds.y_test), 256)}
    assert a.images == len(tiny_ds.y_train) + len(tiny_ds.y_val) + len(tiny_ds.y_test)
    assert a.images_per_second > 0 and a.extractor is not None
    files = _files(cache_dir)
    assert len(files) == 3 and all(f.startswith("cnn-32-") for f in files)
    assert not list((cache_dir / "features").glob(".*"))  # no temporaries left

    b = extract_features("cnn", tiny_ds, img_size=32, weights=w)
    assert b.cached == {"train": True, "val": True, "test": True}
    assert b.extractor is None  # nothing was built
    # the cache keeps how long extraction took, so throughput is known for cached features too
    assert b.images == a.images and b.seconds == pytest.approx(a.seconds)
    assert b.backbone_params == a.backbone_params == a.extractor.count_params()
    assert len(list((cache_dir / "features").glob("*.json"))) == 3
    for k in a.splits:
        assert np.array_equal(a.splits[k], b.splits[k])
    assert _files(cache_dir) == files
    assert b.info()["from_cache"] == b.cached

    # the key changes with the input size ...
    c = extract_features("cnn", tiny_ds, img_size=48, weights=w)
    assert not any(c.cached.values()) and len(_files(cache_dir)) == 6
    # ... with mirrored training images (the other splits stay cached) ...
    d = extract_features("cnn", tiny_ds, img_size=32, weights=w, flip_train=True)
    assert d.cached == {"train": True, "val": True, "test": True, "train_flip": False}
    assert len(_files(cache_dir)) == 7 and any("train_flip" in f for f in _files(cache_dir))
    # ... and with the data
    x_test = tiny_ds.x_test.copy()
    x_test[0, 0, 0] ^= 255
    e = extract_features("cnn", replace(tiny_ds, x_test=x_test), img_size=32, weights=w)
    assert e.cached == {"train": True, "val": True, "test": False}
    assert len(_files(cache_dir)) == 8
    # without the cache nothing is read or written
    f = extract_features("cnn", tiny_ds, img_size=32, weights=w, cache=False)
    assert not any(f.cached.values()) and len(_files(cache_dir)) == 8


def test_flip_features_are_mirrored_images(tiny_ds):
    """Features of mirrored images equal the features of images mirrored beforehand."""
    set_seed(0)
    feats = extract_features("cnn", tiny_ds, img_size=32, weights="none", flip_train=True, cache=False)
    mirrored = np.asarray(feats.extractor.predict(tiny_ds.x_train[:, :, ::-1], verbose=0))
    assert np.allclose(feats.splits["train_flip"], mirrored, atol=1e-4)
    assert not np.allclose(feats.splits["train_flip"], feats.splits["train"], atol=1e-3)


@pytest.fixture(scope="module")
def ds40():
    from tlkit.data import load_dataset

    return load_dataset("synthetic", synthetic_per_class=40, synthetic_size=32, seed=0)


def test_fit_head_and_attach_head(ds40):
    """A linear head on frozen (here random-conv) features beats chance on synthetic data,
    and the attached full model reproduces head(features) from uint8 images."""
    set_seed(0)
    feats = extract_features("cnn", ds40, img_size=32, weights="none", flip_train=True)
    head, result = fit_head(feats, ds40, epochs=10, batch_size=32, lr=1e-2, early_stopping=None)
    assert result.epochs == 10
    assert result.images_seen == 10 * 2 * len(ds40.y_train)  # mirrored copies included
    assert tuple(head.input_shape) == (None, 256) and tuple(head.output_shape) == (None, 4)
    res = evaluate(head, ds40, inputs=feats.splits)
    chance = 1 / ds40.num_classes
    assert res["train"]["accuracy"] > chance + 0.3
    assert res["val"]["accuracy"] > chance + 0.2 and res["test"]["accuracy"] > chance + 0.15

    model = attach_head(feats, head, ds40)
    assert model.inputs[0].dtype == "uint8"
    full = predict_proba(model, ds40.x_test)
    direct = predict_proba(head, feats.splits["test"])
    assert np.allclose(full, direct, atol=1e-5)


def test_random_features_are_never_cached(tiny_ds, cache_dir):
    """Random weights change with every initialisation: their features must not be reused."""
    set_seed(0)
    a = extract_features("cnn", tiny_ds, img_size=32, weights="none")
    b = extract_features("cnn", tiny_ds, img_size=32, weights="none")
    assert not any(a.cached.values()) and not any(b.cached.values())
    assert _files(cache_dir) == []
    head, _ = fit_head(b, tiny_ds, epochs=1, early_stopping=None)
    assert attach_head(b, head, tiny_ds).inputs[0].dtype == "uint8"


def test_attach_head_needs_rebuildable_backbone(fake_mnv2, tiny_ds):
    """A cached pretrained extractor is rebuilt from its weights file when a head is attached."""
    folder, _, _ = fake_mnv2
    set_seed(0)
    kw = dict(img_size=96, weights="imagenet", alpha=0.35, weights_dir=folder)
    first = extract_features("mobilenetv2", tiny_ds, **kw)
    cached = extract_features("mobilenetv2", tiny_ds, **kw)
    assert all(cached.cached.values()) and cached.extractor is None
    head, _ = fit_head(cached, tiny_ds, epochs=1, early_stopping=None)
    full = attach_head(cached, head, tiny_ds, alpha=0.35, weights_dir=folder)
    assert np.allclose(predict_proba(full, tiny_ds.x_test), predict_proba(head, first.splits["test"]),
                       atol=1e-4)


def test_train_fraction(tiny_ds):
    set_seed(0)
    feats = extract_features("cnn", tiny_ds, img_size=32, weights="none")
    _, result = fit_head(feats, tiny_ds, epochs=1, train_fraction=0.5, early_stopping=None)
    assert result.images_seen == pytest.approx(len(tiny_ds.y_train) / 2, abs=tiny_ds.num_classes)


def test_probe_with_imagenet_weights_file(fake_mnv2, tiny_ds):
    """probe(): extraction through real (here: fake) ImageNet weights, a head, evaluation."""
    folder, path, _ = fake_mnv2
    set_seed(0)
    run = probe("mobilenetv2", tiny_ds, img_size=96, weights="imagenet", alpha=0.35,
                weights_dir=folder, flip_train=False, epochs=2, early_stopping=None)
    assert run.feats.weights_source == f"imagenet:{path.resolve()}"
    assert run.feats.dim == 1280 and run.note == ""
    info = run.model_info()
    assert info["frozen"] and info["feature_dim"] == 1280 and info["weights_source"].startswith("imagenet:")
    assert {"train", "val", "test", "summary"} == set(run.evaluation)
    assert run.wall_seconds > 0
