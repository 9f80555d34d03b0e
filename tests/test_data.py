"""tlkit.data: synthetic data, image folders and archives, splits, errors, lookup, cache."""
from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tlkit.data as data
from conftest import image_files, png_bytes, write_dataset, write_folder, write_tar
from tlkit.data import DatasetError, Dataset, load_dataset, make_synthetic

KINDS = ["folder", "tar", "zip"]


# --------------------------------------------------------------------------- synthetic

def test_synthetic_is_deterministic_by_seed():
    x1, y1, n1 = make_synthetic(4, 10, 16, seed=3)
    x2, y2, n2 = make_synthetic(4, 10, 16, seed=3)
    x3, _, _ = make_synthetic(4, 10, 16, seed=4)
    assert x1.dtype == np.uint8 and x1.shape == (40, 16, 16, 3)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2) and n1 == n2
    assert not np.array_equal(x1, x3)
    assert np.bincount(y1).tolist() == [10] * 4
    assert len(set(n1)) == 4


def test_synthetic_is_learnable():
    """Classes differ in shape, not in one pixel: a translation-invariant linear model
    (Fourier magnitudes + logistic regression) separates all ten of them."""
    from sklearn.linear_model import LogisticRegression

    x, y, names = make_synthetic(10, 40, 16, seed=1)
    g = x.astype(np.float32).mean(-1)
    g -= g.mean((1, 2), keepdims=True)
    feats = np.abs(np.fft.fft2(g)).reshape(len(x), -1)
    train = np.arange(len(x)) % 2 == 0
    clf = LogisticRegression(max_iter=3000).fit(feats[train], y[train])
    assert clf.score(feats[~train], y[~train]) > 0.8  # chance is 0.1
    # and the shapes are what differs, not the mean colour
    means = np.array([x[y == c].mean() for c in range(10)])
    assert means.std() < 20


def test_synthetic_class_count_checked():
    with pytest.raises(DatasetError, match="2 to 10 classes"):
        make_synthetic(1, 5)


def test_load_synthetic_splits():
    ds = load_dataset("synthetic", synthetic_per_class=20, synthetic_size=16, synthetic_classes=3)
    assert ds.name == "synthetic" and ds.num_classes == 3 and ds.image_shape == (16, 16, 3)
    c = ds.counts()
    assert set(c) == {"train", "val", "test"}
    assert [a + b for a, b in zip(c["train"], c["val"])] == [20] * 3
    assert c["test"] == [5] * 3
    ds2 = load_dataset("synthetic", synthetic_per_class=20, synthetic_size=16, synthetic_classes=3)
    assert np.array_equal(ds.x_train, ds2.x_train) and np.array_equal(ds.y_val, ds2.y_val)


# --------------------------------------------------------------------------- image folders

@pytest.mark.parametrize("kind", KINDS)
def test_class_folders(kind, tmp_path):
    files = image_files({"cat": 6, "dog": 6, "fox": 6}, size=8)
    src = write_dataset(kind, tmp_path, files)
    ds = load_dataset(src, test_fraction=0.34, val_fraction=0.25, seed=0)
    assert ds.class_names == ["cat", "dog", "fox"]
    assert ds.image_shape == (8, 8, 3) and ds.x_train.dtype == np.uint8
    assert ds.name == "ds"
    c = ds.counts()
    assert sum(map(sum, c.values())) == 18
    for split in ("train", "val", "test"):
        assert all(n >= 1 for n in c[split]), (split, c)
    # labels follow the folders: each class's tint is its dominant channel
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        channel = x.reshape(len(x), -1, 3).mean(1).argmax(1)
        assert np.array_equal(channel, y)
    assert ds.corrupt == []


@pytest.mark.parametrize("kind", KINDS)
def test_train_test_split_folders(kind, tmp_path):
    files = image_files({"train/cat": 5, "train/dog": 4, "test/cat": 2, "test/dog": 3}, size=16)
    src = write_dataset(kind, tmp_path, files)
    ds = load_dataset(src, val_fraction=0.2, seed=0)
    assert ds.class_names == ["cat", "dog"]
    assert ds.counts()["test"] == [2, 3]  # the given test split is kept as it is
    assert [a + b for a, b in zip(ds.counts()["train"], ds.counts()["val"])] == [5, 4]
    assert ds.image_shape == (16, 16, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_common_top_folder(kind, tmp_path):
    """Archives usually hold one top folder (flowers/..., cifar10-jpg/train/...)."""
    flat = image_files({"cat": 4, "dog": 4}, prefix="flowers/")
    ds = load_dataset(write_dataset(kind, tmp_path / "a", flat), seed=0)
    assert ds.class_names == ["cat", "dog"]
    assert sum(ds.counts()["test"]) + sum(ds.counts()["train"]) + sum(ds.counts()["val"]) == 8
    split = image_files({"train/cat": 3, "train/dog": 3, "test/cat": 2, "test/dog": 2},
                        prefix="cifar10-jpg/")
    ds = load_dataset(write_dataset(kind, tmp_path / "b", split), seed=0)
    assert ds.class_names == ["cat", "dog"] and ds.counts()["test"] == [2, 2]


def test_validation_folder_is_used(tmp_path):
    files = image_files({"train/cat": 4, "train/dog": 4, "valid/cat": 2, "valid/dog": 1,
                         "test/cat": 1, "test/dog": 1})
    ds = load_dataset(write_folder(tmp_path / "ds", files))
    assert ds.counts() == {"train": [4, 4], "val": [2, 1], "test": [1, 1]}


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_images_are_counted_and_listed(kind, tmp_path):
    files = image_files({"cat": 4, "dog": 4})
    files["cat/broken.png"] = b"not an image at all"
    files["dog/truncated.jpg"] = png_bytes(np.random.default_rng(0))[:20]
    ds = load_dataset(write_dataset(kind, tmp_path, files), seed=0)
    assert ds.corrupt == ["cat/broken.png", "dog/truncated.jpg"]
    assert sum(map(sum, ds.counts().values())) == 8
    assert "2 unreadable image(s)" in ds.describe() and "cat/broken.png" in ds.describe()
    assert ds.info()["corrupt"] == ds.corrupt


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("kind", KINDS)
def test_empty_class_folder(kind, tmp_path):
    src = write_dataset(kind, tmp_path, image_files({"cat": 3, "dog": 3}), empty_dirs=("fox",))
    with pytest.raises(DatasetError) as e:
        load_dataset(src)
    msg = str(e.value)
    assert "fox" in msg and "no images" in msg and "remove the empty folder" in msg


@pytest.mark.parametrize("kind", KINDS)
def test_single_class(kind, tmp_path):
    src = write_dataset(kind, tmp_path, image_files({"cat": 4}))
    with pytest.raises(DatasetError) as e:
        load_dataset(src)
    assert "only one class (cat)" in str(e.value) and "at least two class folders" in str(e.value)


def test_loose_images_outside_class_folders(tmp_path):
    files = image_files({"cat": 2, "dog": 2})
    files["stray.png"] = png_bytes(np.random.default_rng(0))
    with pytest.raises(DatasetError, match="not inside a class folder"):
        load_dataset(write_folder(tmp_path / "ds", files))


def test_no_images(tmp_path):
    (tmp_path / "ds" / "cat").mkdir(parents=True)
    (tmp_path / "ds" / "cat" / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match="no images .* found .* one folder per class"):
        load_dataset(tmp_path / "ds")


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_mixed_sizes(kind, tmp_path):
    files = image_files({"cat": 3, "dog": 2}, size=8)
    rng = np.random.default_rng(1)
    files["dog/big0.png"] = png_bytes(rng, (12, 10))  # 12 high, 10 wide
    files["dog/big1.png"] = png_bytes(rng, (12, 10))
    src = write_dataset(kind, tmp_path, files)
    with pytest.raises(DatasetError) as e:
        load_dataset(src)
    msg = str(e.value)
    assert "different sizes" in msg and "image_size=" in msg and "--img-size" in msg
    assert "8x8" in msg and "10x12" in msg
    for kw in ({"image_size": 12}, {"fallback_size": 12}):
        ds = load_dataset(src, **kw)
        assert ds.image_shape == (12, 12, 3)
        assert sum(map(sum, ds.counts().values())) == 7


def test_image_size_resizes_everything(tmp_path):
    src = write_folder(tmp_path / "ds", image_files({"cat": 3, "dog": 3}, size=8))
    assert load_dataset(src, image_size=16).image_shape == (16, 16, 3)
    assert load_dataset(src, fallback_size=16).image_shape == (8, 8, 3)  # sizes agree already


def test_missing_path():
    with pytest.raises(DatasetError) as e:
        load_dataset("/no/such/place")
    msg = str(e.value)
    assert "/no/such/place" in msg and "image folder" in msg and "synthetic" in msg


def test_unknown_name():
    with pytest.raises(DatasetError) as e:
        load_dataset("imagenet21k")
    msg = str(e.value)
    assert "unknown data set 'imagenet21k'" in msg
    assert all(n in msg for n in ("synthetic", "cifar10", "flowers")) and "path" in msg


def test_not_an_archive(tmp_path):
    bad = tmp_path / "data.bin"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError, match="neither a folder nor a .tar"):
        load_dataset(bad)


def test_split_without_test(tmp_path):
    src = write_folder(tmp_path / "ds", image_files({"train/cat": 3, "train/dog": 3}))
    with pytest.raises(DatasetError, match="need train/ and test/"):
        load_dataset(src)


# --------------------------------------------------------------------------- splits and counts

def test_stratified_split():
    y = np.repeat(np.arange(4), [10, 6, 3, 2])
    keep, held = data.stratified_split(y, 0.2, seed=5)
    assert set(np.unique(y[held])) == {0, 1, 2, 3}  # every class, even the tiny ones
    assert set(np.unique(y[keep])) == {0, 1, 2, 3}
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(len(y)))
    assert np.bincount(y[held]).tolist() == [2, 1, 1, 1]
    k2, h2 = data.stratified_split(y, 0.2, seed=5)
    assert np.array_equal(keep, k2) and np.array_equal(held, h2)
    k3, h3 = data.stratified_split(y, 0.2, seed=6)
    assert not np.array_equal(np.sort(held), np.sort(h3)) or not np.array_equal(keep, k3)
    with pytest.raises(ValueError):
        data.stratified_split(y, 1.5)


def test_every_class_in_val_and_test(tmp_path):
    files = image_files({"cat": 10, "dog": 4, "fox": 3})
    a = load_dataset(write_folder(tmp_path / "ds", files), seed=7)
    b = load_dataset(tmp_path / "ds", seed=7)
    c = load_dataset(tmp_path / "ds", seed=8)
    assert all(n >= 1 for n in a.counts()["val"]) and all(n >= 1 for n in a.counts()["test"])
    assert np.array_equal(a.x_val, b.x_val) and np.array_equal(a.x_test, b.x_test)
    assert not (np.array_equal(a.x_test, c.x_test) and np.array_equal(a.x_val, c.x_val))


def test_limit_per_class(tmp_path):
    y = np.repeat(np.arange(3), [5, 2, 8])
    idx = data.limit_per_class(y, 3, seed=0)
    assert np.bincount(y[idx]).tolist() == [3, 2, 3]
    assert np.array_equal(idx, data.limit_per_class(y, 3, seed=0))
    assert np.array_equal(data.limit_per_class(y, None), np.arange(len(y)))
    with pytest.raises(DatasetError, match="at least 1"):
        data.limit_per_class(y, 0)
    src = write_folder(tmp_path / "ds", image_files({"cat": 9, "dog": 9, "fox": 4}))
    ds = load_dataset(src, limit_per_class=5, seed=0)
    total = np.sum([ds.counts()[s] for s in ("train", "val", "test")], axis=0).tolist()
    assert total == [5, 5, 4]
    src = write_folder(tmp_path / "sp", image_files({"train/cat": 6, "train/dog": 6,
                                                      "test/cat": 5, "test/dog": 1}))
    ds = load_dataset(src, limit_per_class=3, val_fraction=0)
    assert ds.counts() == {"train": [3, 3], "test": [3, 1]}


def test_counts_and_imbalance():
    x = np.zeros((8, 4, 4, 3), np.uint8)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    ds = Dataset("d", "here", ["a", "b", "c"], x, y, x[:3], np.array([0, 1, 2]))
    assert ds.counts() == {"train": [6, 2, 0], "test": [1, 1, 1]}
    assert ds.imbalance() == 6.0  # an absent class counts as 1
    ds2 = Dataset("d", "here", ["a", "b"], x, y, x[:2], np.array([0, 1]))
    assert ds2.imbalance() == 3.0
    assert "imbalance (max/min train class) 3.00" in ds2.describe()
    info = ds2.info()
    assert info["counts"]["train"] == [6, 2] and info["imbalance"] == 3.0


def test_class_weights():
    w = data.class_weights(np.array([0, 0, 0, 1]))
    assert w == pytest.approx({0: 4 / 6, 1: 2.0})
    w = data.class_weights(np.array([0, 0, 1, 1]), num_classes=3)
    assert w == {0: pytest.approx(4 / 6), 1: pytest.approx(4 / 6), 2: 0.0}


# --------------------------------------------------------------------------- local-first lookup

def _fake_cifar(path, classes=("airplane", "cat")):
    layout = {f"{s}/{c}": n for s, n in (("train", 4), ("test", 2)) for c in classes}
    return write_tar(path, image_files(layout, size=8, prefix="cifar10-mini/"))


def test_cifar10_from_data_dir(tmp_path, no_local_keras):
    archive = _fake_cifar(tmp_path / "data" / "cifar10-mini.tar.gz")
    ds = load_dataset("cifar10", data_dir=tmp_path / "data")
    assert ds.name == "cifar10" and ds.source == str(archive.resolve())
    assert ds.class_names == ["airplane", "cat"] and ds.counts()["test"] == [2, 2]
    assert data.find_local("cifar10", tmp_path / "data") == archive


def test_cifar10_from_env(tmp_path, no_local_keras, monkeypatch):
    archive = _fake_cifar(tmp_path / "env" / "cifar10-mini.tar.gz")
    monkeypatch.setenv("TLKIT_DATA_DIR", str(tmp_path / "env"))
    ds = load_dataset("cifar10")
    assert ds.source == str(archive.resolve())
    # an explicit data_dir comes first
    other = _fake_cifar(tmp_path / "arg" / "cifar10-other.tar.gz", classes=("bird", "dog"))
    ds = load_dataset("cifar10", data_dir=tmp_path / "arg")
    assert ds.source == str(other.resolve()) and ds.class_names == ["bird", "dog"]


def test_cifar100_is_not_cifar10(tmp_path):
    d = tmp_path / "data"
    c100 = _fake_cifar(d / "cifar100-mini.tar.gz")
    assert data.find_local("cifar10", d) is None
    assert data.find_local("cifar100", d) == c100
    # when both are there, cifar10 takes its own even if cifar100's name sorts first
    c10 = _fake_cifar(d / "cifar10_z.tar.gz")
    assert sorted(p.name for p in d.iterdir())[0].startswith("cifar100")
    assert data.find_local("cifar10", d) == c10
    (d / "flower_photos").mkdir()
    assert data.find_local("flowers", d) == d / "flower_photos"


def test_cifar10_offline_without_local_copy(tmp_path, no_local_keras, offline):
    _fake_cifar(tmp_path / "data" / "cifar100-mini.tar.gz")  # must not be taken for cifar10
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", data_dir=tmp_path / "data")
    msg = str(e.value)
    assert "--data-dir" in msg and "TLKIT_DATA_DIR" in msg and "cifar10" in msg


# --------------------------------------------------------------------------- cache

def _fail_on_second_call(monkeypatch):
    calls = []
    real = data.read_images

    def read_once(*args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            raise AssertionError("read_images called again: the cache was not used")
        return real(*args, **kwargs)

    monkeypatch.setattr(data, "read_images", read_once)
    return calls


@pytest.mark.parametrize("kind", ["folder", "tar"])
def test_cache_hit(kind, tmp_path, monkeypatch, cache_dir):
    files = image_files({"cat": 4, "dog": 4})
    files["cat/bad.png"] = b"junk"
    src = write_dataset(kind, tmp_path, files)
    calls = _fail_on_second_call(monkeypatch)
    a = load_dataset(src, seed=0)
    b = load_dataset(src, seed=0)
    assert len(calls) == 1
    assert list((cache_dir / "datasets").glob("*.npz"))
    assert not list((cache_dir / "datasets").glob("*tmp*"))
    assert a.class_names == b.class_names and a.corrupt == b.corrupt == ["cat/bad.png"]
    for s in ("train", "val", "test"):
        assert np.array_equal(getattr(a, f"x_{s}"), getattr(b, f"x_{s}"))
        assert np.array_equal(getattr(a, f"y_{s}"), getattr(b, f"y_{s}"))
    # a different image size is a different cache entry
    with pytest.raises(AssertionError, match="cache was not used"):
        load_dataset(src, image_size=16)


def test_cache_invalidated_by_changed_folder(tmp_path, monkeypatch):
    src = write_folder(tmp_path / "ds", image_files({"cat": 4, "dog": 4, "fox": 4}))
    calls = []
    real = data.read_images
    monkeypatch.setattr(data, "read_images", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert load_dataset(src).num_classes == 3
    load_dataset(src)
    assert len(calls) == 1
    # an added image
    (src / "dog" / "new.png").write_bytes(png_bytes(np.random.default_rng(9)))
    ds = load_dataset(src, val_fraction=0, test_fraction=0.25)
    assert len(calls) == 2 and sum(map(sum, ds.counts().values())) == 13
    # a removed class folder (not the newest one)
    shutil.rmtree(src / "cat")
    ds = load_dataset(src)
    assert len(calls) == 3 and ds.class_names == ["dog", "fox"]


def test_cache_invalidated_by_changed_archive(tmp_path, monkeypatch):
    path = tmp_path / "ds.tar.gz"
    write_tar(path, image_files({"cat": 3, "dog": 3}))
    assert load_dataset(path).num_classes == 2
    write_tar(path, image_files({"cat": 3, "dog": 3, "fox": 3}))
    calls = _fail_on_second_call(monkeypatch)
    ds = load_dataset(path)
    assert len(calls) == 1 and ds.class_names == ["cat", "dog", "fox"]


# --------------------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_limit_per_class_is_one_clear_error_before_reading(bad, tmp_path, monkeypatch):
    src = write_folder(tmp_path / "ds", image_files({"cat": 3, "dog": 3}))
    calls = []
    monkeypatch.setattr(data, "read_images", lambda *a, **k: calls.append(a))
    with pytest.raises(DatasetError, match=r"limit_per_class \(--limit-per-class\) must be a whole "
                                           r"number of at least 1.*leave it out"):
        load_dataset(src, limit_per_class=bad)
    assert not calls


@pytest.mark.parametrize("kw, match", [
    ({"image_size": 0}, "image_size must be a whole number"),
    ({"fallback_size": -32}, "fallback_size must be"),
    ({"test_fraction": 1.5}, r"test_fraction must be in \(0, 1\)"),
    ({"val_fraction": -0.1}, r"val_fraction must be in \[0, 1\)")])
def test_bad_sizes_and_fractions(kw, match, tmp_path):
    src = write_folder(tmp_path / "ds", image_files({"cat": 3, "dog": 3}))
    with pytest.raises(DatasetError, match=match):
        load_dataset(src, **kw)


# --------------------------------------------------------------------------- memory

def test_fallback_size_shrinks_larger_images(tmp_path):
    """Images larger than the working size are stored at it, not at their own size."""
    src = write_folder(tmp_path / "ds", image_files({"cat": 3, "dog": 3}, size=40))
    assert load_dataset(src, fallback_size=16).image_shape == (16, 16, 3)
    assert load_dataset(src).image_shape == (40, 40, 3)  # no size asked: as they are


def test_mixed_sizes_are_decoded_once(tmp_path, monkeypatch):
    files = image_files({"cat": 3, "dog": 2}, size=8)
    big = image_files({"dog": 2}, size=20).values()
    files.update({f"dog/big{i}.png": v for i, v in enumerate(big)})
    src = write_folder(tmp_path / "ds", files)
    calls = []
    real = data._decode
    monkeypatch.setattr(data, "_decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    ds = load_dataset(src, fallback_size=12)
    assert ds.image_shape == (12, 12, 3) and len(calls) == 7


PEAK = """
import sys
from pathlib import Path
import PIL.Image
import tlkit.data as data

def hwm():
    line = [l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM")]
    return int(line[0].split()[1]) / 1024

before = hwm()
ds = data.load_dataset(sys.argv[1], fallback_size=32, val_fraction=0)
print(json.dumps({"grew_mb": hwm() - before, "shape": ds.image_shape, "corrupt": ds.corrupt}))
"""


def _peak(name: str, data_dir: Path | None = None) -> dict:
    """Load ``name`` in a fresh process: how much the load grew its peak memory, and more."""
    env = {**os.environ, "TLKIT_DATA_DIR": str(data_dir)} if data_dir else None
    proc = subprocess.run([sys.executable, "-c", "import json\n" + PEAK, name],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_large_photos_never_exist_at_full_size_in_memory(tmp_path):
    """Four 6000 x 4000 JPEGs (72 MB each decoded) at working size 32: the peak memory of the
    load grows by far less than one decoded photo (draft decoding, streaming)."""
    from PIL import Image

    for i, (cls, colour) in enumerate([("cat", (200, 30, 30)), ("cat", (180, 40, 40)),
                                       ("dog", (30, 200, 30)), ("dog", (40, 180, 40))]):
        (tmp_path / "photos" / cls).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (6000, 4000), colour).save(tmp_path / "photos" / cls / f"{i}.jpg",
                                                    quality=90)
    peak = _peak(str(tmp_path / "photos"))
    assert peak["shape"] == [32, 32, 3]
    assert peak["grew_mb"] < 40, f"loading grew the peak memory by {peak['grew_mb']:.0f} MB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_zip_bomb_member_is_skipped_unread(tmp_path):
    """A 200 KB 'cifar10' zip whose 'image' inflates to 200 MB: the load's peak memory
    grows by far less than the member (it is never read), and the member is listed."""
    import zipfile

    bomb = tmp_path / "data" / "cifar10-bomb.zip"
    files = image_files({"cat": 3, "dog": 3})
    write_dataset("zip", bomb.parent, files, name="cifar10-bomb")
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as zf, zf.open("cat/bomb.png", "w") as fh:
        for _ in range(200):
            fh.write(bytes(2**20))
    assert bomb.stat().st_size < 2**20
    peak = _peak("cifar10", data_dir=bomb.parent)
    assert peak["grew_mb"] < 40, f"loading grew the peak memory by {peak['grew_mb']:.0f} MB"
    assert peak["corrupt"] == ["cat/bomb.png (larger than 64 MB)"]


@pytest.mark.parametrize("kind", KINDS)
def test_too_large_files_and_images_are_skipped_and_listed(kind, tmp_path, monkeypatch):
    """Over the byte limit: not read (a tar member is skipped in the stream); over the pixel
    limit: not decoded. Both are listed with the reason; the other images load."""
    from PIL import Image

    monkeypatch.setattr(data, "MAX_IMAGE_BYTES", 4096)
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 70 * 70)
    files = image_files({"cat": 3, "dog": 3})
    files["dog/big.png"] = png_bytes(np.random.default_rng(1), 64)  # about 12 KB
    wide = io.BytesIO()
    Image.new("RGB", (5000, 1)).save(wide, format="PNG")
    files["cat/wide.png"] = wide.getvalue()  # a few bytes
    assert len(files["dog/big.png"]) > 4096 > len(files["cat/wide.png"])
    ds = load_dataset(write_dataset(kind, tmp_path, files), val_fraction=0)
    assert ds.corrupt == ["cat/wide.png (5000x1 px, more than 4,900)",
                          "dog/big.png (larger than 0.00390625 MB)"]
    assert sum(map(sum, ds.counts().values())) == 6 and "2 unreadable image(s)" in ds.describe()


def test_reads_stop_at_the_limit_whatever_the_size_claimed(monkeypatch):
    monkeypatch.setattr(data, "MAX_IMAGE_BYTES", 10)
    assert data._read_capped(lambda: io.BytesIO(b"x" * 10), 0) == b"x" * 10
    assert isinstance(data._read_capped(lambda: io.BytesIO(b"x" * 11), 0), data.TooLarge)
    assert isinstance(data._read_capped(lambda: pytest.fail("opened"), 11), data.TooLarge)


# --------------------------------------------------------------------------- small classes

@pytest.mark.parametrize("kind", KINDS)
def test_classes_too_small_to_split_are_refused(kind, tmp_path):
    src = write_dataset(kind, tmp_path, image_files({"cat": 5, "dog": 2}))
    with pytest.raises(DatasetError, match=r"class 'dog' has 2 image\(s\); splitting it into "
                       r"train, test and validation needs at least 3: add images of it"):
        load_dataset(src)
    assert load_dataset(src, val_fraction=0).counts() == {"train": [4, 1], "test": [1, 1]}
    with pytest.raises(DatasetError, match=r"class 'cat' has 2 image\(s\); .* raise "
                       r"limit_per_class \(--limit-per-class\) to at least 3"):
        load_dataset(src, limit_per_class=2)


def test_train_folder_too_small_for_a_validation_split(tmp_path):
    src = write_folder(tmp_path / "ds", image_files({"train/cat": 1, "train/dog": 3,
                                                      "test/cat": 1, "test/dog": 1}))
    with pytest.raises(DatasetError, match=r"class 'cat' has 1 image\(s\) in train; splitting "
                       "it into train and validation needs at least 2"):
        load_dataset(src)
    with pytest.raises(DatasetError, match=r"class 'disc' has 1 image\(s\) in train.* at least 2"):
        load_dataset("synthetic", limit_per_class=1)


# --------------------------------------------------------------------------- TFRecords

def test_tfrecords_with_mixed_sizes_and_a_corrupt_record(tmp_path):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    root = tmp_path / "tfrec"

    def shard(path, records):
        path.parent.mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(path)) as w:
            for img, label in records:
                feat = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[img])),
                        "class": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
                example = tf.train.Example(features=tf.train.Features(feature=feat))
                w.write(example.SerializeToString())

    train = [(png_bytes(rng, 8), i % 2) for i in range(6)] + [(png_bytes(rng, 20), 1), (b"junk", 0)]
    shard(root / "train" / "train00-8.tfrec", train)
    shard(root / "val" / "val00-2.tfrec", [(png_bytes(rng, 8), 0), (png_bytes(rng, 8), 1)])
    (root / "classes.txt").write_text("daisy\nrose\n")
    with pytest.raises(DatasetError, match="different sizes"):
        load_dataset(root)
    ds = load_dataset(root, fallback_size=8, val_fraction=0)
    assert ds.class_names == ["daisy", "rose"] and ds.image_shape == (8, 8, 3)
    assert ds.counts() == {"train": [3, 4], "test": [1, 1]} and ds.corrupt == ["train#7"]


# --------------------------------------------------------------------------- downloads that hang

@pytest.fixture
def silent_server():
    """http://127.0.0.1:PORT: accepts connections and never answers. It drops them after
    60 s, so code without a timeout fails (too slowly) instead of hanging the suite."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.1)
    stop, held = threading.Event(), []

    def serve():
        while not stop.is_set():
            try:
                held.append((srv.accept()[0], time.monotonic()))
            except TimeoutError:
                pass
            for conn, t in [h for h in held if time.monotonic() - h[1] > 60]:
                conn.close()
                held.remove((conn, t))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn, _ in held:
        conn.close()
    srv.close()


def test_hanging_data_download_times_out(silent_server, no_local_keras, monkeypatch):
    importlib.import_module("keras")  # before the clock starts: importing takes seconds

    monkeypatch.setenv("TLKIT_DOWNLOAD_TIMEOUT", "1")
    monkeypatch.setattr(data, "FLOWERS_URL", f"{silent_server}/flower_photos.tgz")
    start = time.monotonic()
    with pytest.raises(DatasetError) as e:
        load_dataset("flowers")
    assert time.monotonic() - start < 10
    msg = str(e.value)
    assert "not available offline" in msg and "--data-dir" in msg and "flower" in msg
    assert socket.getdefaulttimeout() is None  # restored for the rest of the process


def test_hanging_weights_download_times_out(silent_server, no_local_keras, monkeypatch, tmp_path, capsys):
    from keras.src.applications import mobilenet_v2

    from tlkit.models import ModelError, build_backbone

    monkeypatch.setenv("TLKIT_DOWNLOAD_TIMEOUT", "1")
    monkeypatch.setattr(mobilenet_v2, "BASE_WEIGHT_PATH", f"{silent_server}/")
    start = time.monotonic()
    with pytest.raises(ModelError, match="no local ImageNet weights.*--weights-dir"):
        build_backbone("mobilenetv2", 96, weights="imagenet", alpha=0.35, weights_dir=tmp_path)
    assert time.monotonic() - start < 20  # building the model itself takes a few seconds
    assert socket.getdefaulttimeout() is None
    assert "Downloading data from" not in capsys.readouterr().out  # no download happened: no line


@pytest.fixture
def weights_server(fake_mnv2):
    """http://127.0.0.1:PORT/ANY-NAME answers with the fake MobileNetV2 0.35 weights file."""
    import http.server

    body = fake_mnv2[1].read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    thread.join()


def test_download_lines_only_for_real_downloads(weights_server, no_local_keras, monkeypatch, tmp_path, capsys):
    """A download that happens is announced as Keras announces it; a local file is not."""
    from keras.src.applications import mobilenet_v2

    from tlkit.models import build_backbone

    monkeypatch.setattr(mobilenet_v2, "BASE_WEIGHT_PATH", f"{weights_server}/")
    _, source = build_backbone("mobilenetv2", 96, weights="imagenet", alpha=0.35, weights_dir=tmp_path)
    assert source == "imagenet:download"
    assert f"Downloading data from {weights_server}/" in capsys.readouterr().out
    local = tmp_path / "local"
    local.mkdir()
    from keras.src.backend import config  # where Keras put it: the cache it read when imported

    downloaded = next((Path(config.keras_home()) / "models").glob("mobilenet_v2_*0.35_96_no_top.h5"))
    shutil.move(downloaded, local / downloaded.name)  # out of the cache other tests search
    _, source = build_backbone("mobilenetv2", 96, weights="imagenet", alpha=0.35, weights_dir=local)
    assert source.startswith("imagenet:") and source != "imagenet:download"
    assert "Downloading" not in capsys.readouterr().out


def test_a_held_download_line_is_shown_once_progress_starts(capsys):
    from tlkit.system import announce_only_real_downloads

    with announce_only_real_downloads():
        print("Downloading data from https://example.org/w.h5")
        assert capsys.readouterr().out == ""  # held: no byte has come yet
        print("1/10 [==>...]", end="")
    assert capsys.readouterr().out == "Downloading data from https://example.org/w.h5\n1/10 [==>...]"
    with pytest.raises(OSError):
        with announce_only_real_downloads():
            print("Downloading data from https://example.org/w.h5")
            raise OSError("no network")
    assert capsys.readouterr().out == ""


def test_download_timeout_setting(monkeypatch):
    from tlkit.system import DOWNLOAD_TIMEOUT_S, download_timeout, download_timeout_s

    monkeypatch.setenv("TLKIT_DOWNLOAD_TIMEOUT", "2.5")
    assert download_timeout_s() == 2.5
    with download_timeout() as seconds:
        assert seconds == socket.getdefaulttimeout() == 2.5
    assert socket.getdefaulttimeout() is None
    for bad in ("soon", "0", "-1", "inf", "nan"):
        monkeypatch.setenv("TLKIT_DOWNLOAD_TIMEOUT", bad)
        with pytest.warns(RuntimeWarning, match="TLKIT_DOWNLOAD_TIMEOUT"):
            assert download_timeout_s() == DOWNLOAD_TIMEOUT_S
