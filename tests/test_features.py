"""tlkit.features: the frozen-feature cache (and how it heals), heads trained on features,
and those heads inside full classifiers."""
from __future__ import annotations

import errno
import hashlib
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import count_opens
from tlkit import features
from tlkit.evaluate import evaluate, predict_proba
from tlkit.features import extract_features, fit_head, probe
from tlkit.models import build_backbone, build_classifier
from tlkit.system import TMP_MARK
from tlkit.train import set_seed


def _files(cache_dir, pattern="*.npy"):
    return sorted(p.name for p in (cache_dir / "features").glob(pattern))


@pytest.fixture(scope="module")
def cnn_weights(tmp_path_factory):
    """A weights file of the course CNN's body, standing in for pretrained weights."""
    set_seed(1)
    path = tmp_path_factory.mktemp("cnnw") / "cnn.weights.h5"
    build_backbone("cnn", 32)[0].save_weights(path)
    return str(path)


@pytest.mark.backends
def test_extract_features_cached(tiny_ds, cache_dir, cnn_weights):
    set_seed(0)
    w = cnn_weights
    a = extract_features("cnn", tiny_ds, img_size=32, weights=w)
    assert a.cached == {"train": False, "val": False, "test": False}
    dim = int(a.extractor.output_shape[-1])
    assert a.weights_source.startswith("file:") and a.dim == dim and a.img_size == 32
    assert {k: v.shape for k, v in a.splits.items()} == {
        "train": (len(tiny_ds.y_train), dim), "val": (len(tiny_ds.y_val), dim),
        "test": (len(tiny_ds.y_test), dim)}
    assert a.images == len(tiny_ds.y_train) + len(tiny_ds.y_val) + len(tiny_ds.y_test)
    assert a.images_per_second > 0
    files = _files(cache_dir)
    assert len(files) == 3 and all(f.startswith("cnn-32-") for f in files)
    assert not list((cache_dir / "features").glob(".*"))  # no temporaries left

    b = extract_features("cnn", tiny_ds, img_size=32, weights=w)
    assert b.cached == {"train": True, "val": True, "test": True}
    assert b.extractor is None  # nothing was built
    # the cache keeps how long extraction took, so throughput is known for cached features too
    assert b.images == a.images and b.seconds == pytest.approx(a.seconds)
    assert b.backbone_params == a.backbone_params == a.extractor.count_params()
    assert len(_files(cache_dir, "*.json")) == 3
    for k in a.splits:
        assert np.array_equal(a.splits[k], b.splits[k])
    assert _files(cache_dir) == files
    assert b.info()["from_cache"] == b.cached
    n = len(tiny_ds.y_train)
    assert b.describe().startswith(f"cnn features at 32 px ({b.weights_source}): {b.dim:,} per image; train {n:,},")
    assert b.describe().endswith("read from the cache: train, val, test") and "from the cache" not in a.describe()

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
    # bfloat16 features are never mixed with float32 ones
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    g = extract_features("cnn", tiny_ds, img_size=32, weights=w)
    assert not any(g.cached.values()) and len(_files(cache_dir)) == 11
    assert all(extract_features("cnn", tiny_ds, img_size=32, weights=w).cached.values())


def test_feature_key_holds_backend_and_precision(monkeypatch):
    parts = ("cnn", None, "file-stamp", 32, "cnn", False, "data-fingerprint")
    key = features.feature_key(*parts)
    assert features.feature_key(*parts) == key and len(key) == 20
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    assert features.feature_key(*parts) != key
    keras.mixed_precision.set_global_policy("float32")
    assert features.feature_key(*parts) == key
    other = "jax" if keras.config.backend() != "jax" else "tensorflow"
    monkeypatch.setattr(keras.config, "backend", lambda: other)
    assert features.feature_key(*parts) != key


@pytest.mark.backends
@pytest.mark.parametrize("damage", ["truncated-npy", "garbage-npy", "garbage-json",
                                    "wrong-rows-json", "missing-json"])
def test_damaged_entry_is_removed_and_rebuilt(tiny_ds, cache_dir, cnn_weights, damage):
    """A cache is an optimisation: a damaged entry warns in one line and is rebuilt."""
    set_seed(0)
    a = extract_features("cnn", tiny_ds, img_size=32, weights=cnn_weights)
    npy = next((cache_dir / "features").glob("cnn-32-train-*.npy"))
    meta = npy.with_suffix(".json")
    if damage == "truncated-npy":
        npy.write_bytes(npy.read_bytes()[:-100])
    elif damage == "garbage-npy":
        npy.write_bytes(b"\x00not an array")
    elif damage == "garbage-json":
        meta.write_text("{\"seconds\": 1.0, ")
    elif damage == "wrong-rows-json":
        meta.write_text('{"seconds": 1.0, "images": 3, "backbone_params": 1}')
    else:
        meta.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b = extract_features("cnn", tiny_ds, img_size=32, weights=cnn_weights)
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if damage == "missing-json":
        assert msgs == []  # an incomplete entry is simply rebuilt
    else:
        assert len(msgs) == 1 and "removed unreadable cache entry" in msgs[0] and "\n" not in msgs[0]
    assert b.cached == {"train": False, "val": True, "test": True}
    assert np.allclose(b.splits["train"], a.splits["train"], atol=1e-5)
    c = extract_features("cnn", tiny_ds, img_size=32, weights=cnn_weights)  # healed
    assert all(c.cached.values()) and np.array_equal(c.splits["train"], b.splits["train"])


def test_full_disk_runs_without_cache(tiny_ds, cache_dir, cnn_weights, monkeypatch):
    """A disk that fills up while writing: one warning, the features, no partial files."""
    real_save = np.save

    def save_then_fail(path, arr, *args, **kwargs):
        real_save(path, arr[: len(arr) // 2], *args, **kwargs)  # part of it made it to disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", save_then_fail)
    set_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = extract_features("cnn", tiny_ds, img_size=32, weights=cnn_weights)
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and "No space left on device" in msgs[0] and "without the cache" in msgs[0]
    assert {k: v.shape[0] for k, v in a.splits.items()} == {
        "train": len(tiny_ds.y_train), "val": len(tiny_ds.y_val), "test": len(tiny_ds.y_test)}
    assert not any(a.cached.values())
    assert list((cache_dir / "features").iterdir()) == []  # no entry and no temporary file


def test_orphaned_temporaries_are_cleaned(tiny_ds, cache_dir, cnn_weights):
    """Temporary files of killed runs go; a fresh one (a writer at work) stays."""
    folder = cache_dir / "features"
    folder.mkdir(parents=True)
    old = folder / f".cnn-32-train-x.npy.123.ab{TMP_MARK}.npy"
    fresh = folder / f".cnn-32-train-y.npy.456.cd{TMP_MARK}.npy"
    for p in (old, fresh):
        p.write_bytes(b"partial")
    os.utime(old, (time.time() - 2 * 3600,) * 2)
    set_seed(0)
    extract_features("cnn", tiny_ds, img_size=32, weights=cnn_weights)
    assert not old.exists() and fresh.exists()


def test_key_follows_weights_content_not_mtime(tiny_ds, cache_dir, cnn_weights, tmp_path):
    """Touching or copying a weights file keeps its features; new content of the same size
    under the same name and mtime does not."""
    src = tmp_path / "w.weights.h5"
    src.write_bytes(open(cnn_weights, "rb").read())
    set_seed(0)
    a = extract_features("cnn", tiny_ds, img_size=32, weights=str(src))
    os.utime(src, (time.time() + 100,) * 2)  # touched
    assert all(extract_features("cnn", tiny_ds, img_size=32, weights=str(src)).cached.values())
    copy = tmp_path / "elsewhere" / "copy.weights.h5"
    copy.parent.mkdir()
    copy.write_bytes(src.read_bytes())
    assert all(extract_features("cnn", tiny_ds, img_size=32, weights=str(copy)).cached.values())
    # other weights, same size, same mtime: a key of (path, size, mtime) would reuse stale features
    st = src.stat()
    set_seed(5)
    other = tmp_path / "other.weights.h5"
    build_backbone("cnn", 32)[0].save_weights(other)
    assert other.stat().st_size == st.st_size
    os.replace(other, src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    b = extract_features("cnn", tiny_ds, img_size=32, weights=str(src))
    assert not any(b.cached.values())
    assert not np.allclose(a.splits["test"], b.splits["test"], atol=1e-3)


@pytest.mark.backends
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


def test_fit_head_is_the_same_after_a_backbone_was_built(ds40):
    """A head trained on cached features equals one trained right after extraction, which
    built a backbone and drew random numbers on the way (seed by seed)."""
    feats = extract_features("cnn", ds40, img_size=32, weights="none")

    def weights_after(draw: bool) -> list[np.ndarray]:
        set_seed(0)
        if draw:
            build_backbone("cnn", 32)
            np.random.rand(3)
        head, _ = fit_head(feats, ds40, epochs=2, batch_size=32, early_stopping=None, seed=3)
        return head.get_weights()

    for a, b in zip(weights_after(False), weights_after(True)):
        np.testing.assert_array_equal(a, b)


def test_fit_head_learns(ds40):
    """A linear head on frozen (here random-conv) features beats chance on synthetic data."""
    set_seed(0)
    feats = extract_features("cnn", ds40, img_size=32, weights="none", flip_train=True)
    head, result = fit_head(feats, ds40, epochs=10, batch_size=32, lr=1e-2, early_stopping=None)
    assert result.epochs == 10
    assert result.images_seen == 10 * 2 * len(ds40.y_train)  # mirrored copies included
    assert tuple(head.input_shape) == (None, feats.dim) and tuple(head.output_shape) == (None, 4)
    assert "standardize" in [l.name for l in head.layers]
    res = evaluate(head, ds40, inputs=feats.splits)
    chance = 1 / ds40.num_classes
    assert res["train"]["accuracy"] > chance + 0.3
    # held out: val and test pooled (16 val images alone are too few to judge)
    n_val, n_test = len(ds40.y_val), len(ds40.y_test)
    held_out = (res["val"]["accuracy"] * n_val + res["test"]["accuracy"] * n_test) / (n_val + n_test)
    assert held_out > chance + 0.15


def test_constant_features_are_not_blown_up(tiny_ds):
    """A feature that varies only by float round-off keeps std 1 in the head's
    standardization (dividing by ~1e-9 would make backends and graphs disagree)."""
    rng = np.random.default_rng(0)

    def split(n):
        x = rng.normal(0.3, 0.1, (n, 8)).astype(np.float32)
        x[:, 0] = 0.25 + rng.normal(0, 1e-9, n)  # constant up to round-off
        x[:, 1] = rng.normal(0, 1e-3, n)  # small but real variation
        return x

    feats = features.Features("cnn", 32, "file:w", {s: split(len(getattr(tiny_ds, f"y_{s}")))
                                                    for s in ("train", "val", "test")})
    head, _ = fit_head(feats, tiny_ds, epochs=1, early_stopping=None)
    std = np.asarray(head.get_layer("standardize").std)
    assert std[0] == 1.0
    assert std[1] == pytest.approx(feats.splits["train"][:, 1].std(), rel=1e-3)
    assert std[2:] == pytest.approx(feats.splits["train"][:, 2:].std(0), rel=1e-3)


def test_random_features_are_never_cached(tiny_ds, cache_dir):
    """Random weights change with every initialisation: their features must not be reused."""
    set_seed(0)
    a = extract_features("cnn", tiny_ds, img_size=32, weights="none")
    b = extract_features("cnn", tiny_ds, img_size=32, weights="none")
    assert not any(a.cached.values()) and not any(b.cached.values())
    assert _files(cache_dir) == []


def test_probe_without_cache_extracts_anew(tiny_ds, cache_dir, cnn_weights):
    """``cache=False`` (the bench's way) times this run's extraction: a cached entry is neither
    read nor rewritten."""
    set_seed(0)
    kw = dict(img_size=32, weights=cnn_weights, flip_train=False, epochs=1)
    probe("cnn", tiny_ds, **kw)
    stored = {f: (cache_dir / "features" / f).stat().st_mtime_ns for f in _files(cache_dir)}
    assert len(stored) == 3 and all(probe("cnn", tiny_ds, **kw).feats.cached.values())
    fresh = probe("cnn", tiny_ds, cache=False, **kw).feats
    assert not any(fresh.cached.values()) and fresh.extractor is not None
    assert {f: (cache_dir / "features" / f).stat().st_mtime_ns for f in _files(cache_dir)} == stored


@pytest.mark.backends
def test_head_on_cached_features_drops_into_the_classifier(fake_mnv2, tiny_ds):
    """A head trained on cached pretrained features is the head of a full image classifier
    built with the same weights: the same probabilities from uint8 images, augmentation on."""
    folder, _, _ = fake_mnv2
    set_seed(0)
    kw = dict(img_size=96, weights="imagenet", alpha=0.35, weights_dir=folder)
    first = extract_features("mobilenetv2", tiny_ds, **kw)
    cached = extract_features("mobilenetv2", tiny_ds, **kw)
    assert all(cached.cached.values()) and cached.extractor is None
    head, _ = fit_head(cached, tiny_ds, epochs=1, early_stopping=None)
    clf = build_classifier("mobilenetv2", tiny_ds.num_classes, input_shape=tiny_ds.image_shape,
                           augment=True, head=head, **kw)
    assert clf.head is head and clf.model.inputs[0].dtype == "uint8"
    full = predict_proba(clf.model, tiny_ds.x_test)
    assert np.abs(full - predict_proba(head, first.splits["test"])).max() < 1e-5


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
    assert run.feats.dim == 1280
    info = run.model_info()
    assert info["frozen"] and info["feature_dim"] == 1280 and info["weights_source"].startswith("imagenet:")
    assert {"train", "val", "test", "summary"} == set(run.evaluation)
    assert run.wall_seconds > 0


def test_weights_stamp_is_size_and_content(cnn_weights, tmp_path, monkeypatch):
    """A weights file is stamped by its size and SHA-256, read once while unchanged (every
    split asks for its stamp); a download by its source."""
    content = Path(cnn_weights).read_bytes()
    path = tmp_path / "w.weights.h5"
    path.write_bytes(content)
    reads = count_opens(monkeypatch)
    expected = f"{len(content)}|{hashlib.sha256(content).hexdigest()}"
    for _ in range(3):
        assert features.weights_stamp(f"file:{path}") == expected
    assert len(reads) == 1
    assert features.weights_stamp("imagenet:download") == "imagenet:download"


def test_head_on_a_share_is_scored_on_the_images_it_trained_on(tiny_ds):
    """The data-size ablation: train accuracy comes from the trained share, not the whole split."""
    from tlkit.features import evaluate_head, extract_features, fit_head, train_indices

    feats = extract_features("mobilenetv2", tiny_ds, img_size=32, weights="none", alpha=0.35, cache=False)
    head, _ = fit_head(feats, tiny_ds, epochs=2, train_fraction=0.25, seed=0)
    idx = train_indices(tiny_ds.y_train, 0.25, seed=0)
    assert 0 < len(idx) < len(tiny_ds.y_train)
    ev = evaluate_head(head, feats, tiny_ds, train_fraction=0.25, seed=0)
    assert ev["train"]["n"] == len(idx)
    proba = np.asarray(head.predict(feats.splits["train"][idx], verbose=0))
    assert ev["train"]["accuracy"] == pytest.approx(float((proba.argmax(1) == tiny_ds.y_train[idx]).mean()))
    assert ev["test"]["n"] == len(tiny_ds.y_test)


def test_per_class_indices_are_stratified_seeded_and_nested(tiny_ds):
    """k images of every class; the same seed gives the same choice, and a smaller count's
    images are part of a larger count's (curve points differ only by the labels they add)."""
    from tlkit.features import per_class_indices

    y = tiny_ds.y_train
    three = per_class_indices(y, 3, seed=0)
    assert np.bincount(y[three]).tolist() == [3] * tiny_ds.num_classes
    assert (three == np.sort(three)).all() and len(set(three)) == len(three)
    assert (per_class_indices(y, 3, seed=0) == three).all()
    assert set(three) <= set(per_class_indices(y, 6, seed=0))
    assert not (per_class_indices(y, 3, seed=1) == three).all()
    assert (per_class_indices(y, None) == np.arange(len(y))).all()
    with pytest.raises(ValueError, match="fewer than"):
        per_class_indices(y, int(np.bincount(y).min()) + 1)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="whole number"):
            per_class_indices(y, bad)


def test_train_subset_keeps_val_and_test(tiny_ds):
    from tlkit.features import per_class_indices, train_subset

    rng = np.random.default_rng(0)
    splits = {s: rng.normal(size=(len(getattr(tiny_ds, f"y_{s}")), 5)).astype(np.float32)
              for s in ("train", "val", "test")}
    splits["train_flip"] = splits["train"] + 1
    feats = features.Features("cnn", 32, "random", splits)
    idx = per_class_indices(tiny_ds.y_train, 2)
    sub_feats, sub = train_subset(feats, tiny_ds, idx)
    assert (sub_feats.splits["train"] == splits["train"][idx]).all()
    assert (sub_feats.splits["train_flip"] == splits["train_flip"][idx]).all()
    assert sub_feats.splits["test"] is splits["test"] and sub.x_test is tiny_ds.x_test
    assert (sub.y_train == tiny_ds.y_train[idx]).all() and len(sub.x_train) == len(idx)
    assert feats.splits["train"] is splits["train"]  # the original is left as it was


def test_head_setting_fills_fit_heads_defaults():
    from tlkit.features import head_setting

    assert head_setting({"dropout": 0.5, "knob": "dropout", "seed": 3}) == {
        "dropout": 0.5, "weight_decay": 1e-4, "use_flips": True, "train_fraction": 1.0}
    assert head_setting({}) == head_setting({"dropout": 0.2, "train_fraction": 1.0})


def test_taps_are_cached_apart_and_drop_into_the_classifier(fake_mnv2, tiny_ds, cache_dir):
    """Features read from an inner layer beside the last: the last layer's columns are the
    plain features, the cache keeps both apart (and knows the split), and a head trained on
    them is the head of the full image classifier with the same taps."""
    folder, _, _ = fake_mnv2
    set_seed(0)
    kw = dict(img_size=96, weights="imagenet", alpha=0.35, weights_dir=folder)
    taps = ["block_13_expand_relu"]
    plain = extract_features("mobilenetv2", tiny_ds, **kw)
    tapped = extract_features("mobilenetv2", tiny_ds, taps=taps, **kw)
    assert not any(tapped.cached.values()) and tapped.taps == tuple(taps)
    assert tapped.dim == plain.dim + 192 and tapped.final_dim == plain.dim  # alpha 0.35: 6 × 32
    np.testing.assert_allclose(tapped.last_layer().splits["test"], plain.splits["test"], atol=1e-5)
    again = extract_features("mobilenetv2", tiny_ds, taps=taps, **kw)
    assert all(again.cached.values()) and again.final_dim == plain.dim
    head, _ = fit_head(again, tiny_ds, epochs=1, early_stopping=None)
    clf = build_classifier("mobilenetv2", tiny_ds.num_classes, input_shape=tiny_ds.image_shape,
                           head=head, taps=taps, **kw)
    assert clf.info()["taps"] == taps
    full = predict_proba(clf.model, tiny_ds.x_test)
    assert np.abs(full - predict_proba(head, tapped.splits["test"])).max() < 1e-5


def test_an_unknown_tap_names_layers_that_exist(tiny_ds):
    from tlkit.models import ModelError, build_extractor

    with pytest.raises(ModelError, match="no layer 'block_99' .*e.g. .*out_relu"):
        build_extractor("mobilenetv2", (32, 32, 3), 32, "none", taps=["block_99"])
    with pytest.raises(ModelError, match="no pooled features"):
        build_extractor("cnn", (32, 32, 3), 32, "none", taps=["conv"])


def test_linear_head_is_sklearns_logistic_regression(tiny_ds):
    """fit_linear_head chooses C on validation and its Keras head gives scikit-learn's
    probabilities for the chosen C (from standardised features)."""
    from sklearn.linear_model import LogisticRegression

    set_seed(0)
    feats = extract_features("cnn", tiny_ds, img_size=32, weights="none", flip_train=True)
    head, result = features.fit_linear_head(feats, tiny_ds, cs=(0.01, 0.1, 1.0))
    h = result.history
    assert h["C"] == [0.01, 0.1, 1.0] and len(h["val_accuracy"]) == 3 and all(h["converged"])
    chosen = h["C"][int(np.argmax(h["val_accuracy"]))]
    x = np.concatenate([feats.splits["train"], feats.splits["train_flip"]]).astype(np.float64)
    y = np.concatenate([tiny_ds.y_train, tiny_ds.y_train])
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-5 * np.abs(x).max(), std, 1.0)
    ref = LogisticRegression(C=chosen, max_iter=1000).fit((x - mean) / std, y)
    want = ref.predict_proba((feats.splits["test"] - mean) / std)
    np.testing.assert_allclose(predict_proba(head, feats.splits["test"]), want, atol=2e-3)
    run = features.probe_features(feats, tiny_ds, head="linear", cs=(0.1,))
    assert run.model_info()["head"] == "linear" and run.evaluation["summary"]["test_accuracy"] > 0.25


def test_linear_head_of_two_classes_and_its_refusals(tiny_ds):
    keep = lambda y: y < 2  # noqa: E731
    two = replace(tiny_ds, x_train=tiny_ds.x_train[keep(tiny_ds.y_train)], y_train=tiny_ds.y_train[keep(tiny_ds.y_train)],
                  x_val=tiny_ds.x_val[keep(tiny_ds.y_val)], y_val=tiny_ds.y_val[keep(tiny_ds.y_val)],
                  x_test=tiny_ds.x_test[keep(tiny_ds.y_test)], y_test=tiny_ds.y_test[keep(tiny_ds.y_test)],
                  class_names=tiny_ds.class_names[:2])
    feats = extract_features("cnn", two, img_size=32, weights="none")
    head, _ = features.fit_linear_head(feats, two, cs=(1.0,))
    p = predict_proba(head, feats.splits["train"])
    assert p.shape[1] == 2 and np.allclose(p.sum(1), 1, atol=1e-5)
    assert (p.argmax(1) == two.y_train).mean() > 0.9  # 24 images, 256 features: separable
    with pytest.raises(ValueError, match="validation split"):
        features.fit_linear_head(replace(feats, splits={"train": feats.splits["train"]}), two)
    with pytest.raises(ValueError, match="unknown head 'svm'"):
        probe("cnn", two, img_size=32, weights="none", head="svm")
