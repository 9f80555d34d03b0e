"""The package's cache: the data-set cache heals and stays bounded (damaged entries are rebuilt,
a disk that cannot be written means no cache, temp files of killed runs go), keys follow
content (not mtime, not arguments that do not change the arrays), files and arrays are hashed
by content, and ``tlkit cache info/clear`` show and free it."""
from __future__ import annotations

import errno
import hashlib
import io
import os
import tarfile
import time
import warnings

import numpy as np
import pytest

import tlkit.data as data
import tlkit.system as system
from conftest import count_opens, image_files, write_folder, write_tar
from tlkit import TlkitError
from tlkit.cli import main
from tlkit.data import load_dataset
from tlkit.system import TMP_MARK, cache_usage, clear_cache, file_digest, fingerprint


def _entries(cache_dir) -> list:
    return sorted((cache_dir / "datasets").glob("*.npz"))


def _count_reads(monkeypatch) -> list:
    calls = []
    real = data.read_images
    monkeypatch.setattr(data, "read_images", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def _same(a, b) -> bool:
    return all(np.array_equal(getattr(a, f"x_{s}"), getattr(b, f"x_{s}")) and
               np.array_equal(getattr(a, f"y_{s}"), getattr(b, f"y_{s}"))
               for s in ("train", "val", "test"))


# --------------------------------------------------------------------------- healing

@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_entry_is_removed_and_rebuilt(damage, tmp_path, cache_dir, monkeypatch):
    src = write_folder(tmp_path / "ds", image_files({"cat": 5, "dog": 5}))
    first = load_dataset(src)
    (entry,) = _entries(cache_dir)
    raw = entry.read_bytes()
    entry.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": b"\x00junk" * 50,
                       "empty": b""}[damage])
    calls = _count_reads(monkeypatch)
    with pytest.warns(RuntimeWarning, match=r"removed unreadable cache entry .*\.npz.*rebuilt"):
        again = load_dataset(src)
    assert len(calls) == 1 and _same(first, again)
    assert len(_entries(cache_dir)) == 1
    with warnings.catch_warnings():  # healed: the next run reads it without a warning
        warnings.simplefilter("error")
        assert _same(load_dataset(src), first) and len(calls) == 1


def test_cache_dir_that_cannot_be_written_means_no_cache(tmp_path, monkeypatch):
    """A cache folder that is a file (as read-only or missing mounts behave): warn, load anyway."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("TLKIT_CACHE_DIR", str(blocker))
    src = write_folder(tmp_path / "ds", image_files({"cat": 4, "dog": 4}))
    with pytest.warns(RuntimeWarning, match="running without the cache"):
        ds = load_dataset(src)
    assert ds.num_classes == 2 and sum(map(sum, ds.counts().values())) == 8


def test_full_disk_means_no_cache_and_no_partial_file(tmp_path, cache_dir, monkeypatch):
    src = write_folder(tmp_path / "ds", image_files({"cat": 4, "dog": 4}))
    real = np.savez

    def full_disk(path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"PK\x03\x04 half an entry")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.warns(RuntimeWarning, match="No space left on device.*running without the cache"):
        ds = load_dataset(src)
    assert ds.num_classes == 2
    assert not [p for p in (cache_dir / "datasets").iterdir()]  # no entry, no temp file
    monkeypatch.setattr(np, "savez", real)
    load_dataset(src)
    assert len(_entries(cache_dir)) == 1


def test_orphaned_temp_files_are_cleaned(tmp_path, cache_dir):
    folder = cache_dir / "datasets"
    folder.mkdir(parents=True)
    old = folder / f".abc.npz.123.deadbeef{TMP_MARK}.npz"
    fresh = folder / f".def.npz.456.cafef00d{TMP_MARK}.npz"
    for p in (old, fresh):
        p.write_bytes(b"\0" * 1000)
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    load_dataset(write_folder(tmp_path / "ds", image_files({"cat": 3, "dog": 3})))
    assert not old.exists()  # left by a killed run
    assert fresh.exists()  # may belong to a run writing right now


# --------------------------------------------------------------------------- keys

def test_sizes_that_change_nothing_share_one_entry(tmp_path, cache_dir, monkeypatch):
    """8-px images at fallback 8, 16, 64 and at image_size 8 are the same arrays: one entry."""
    src = write_folder(tmp_path / "ds", image_files({"cat": 4, "dog": 4}, size=8))
    calls = _count_reads(monkeypatch)
    first = load_dataset(src, fallback_size=16)
    for kw in ({"fallback_size": 64}, {"fallback_size": 8}, {"image_size": 8}, {}):
        assert _same(load_dataset(src, **kw), first), kw
    assert len(calls) == 1 and len(_entries(cache_dir)) == 1
    # sizes that do change the arrays are entries of their own
    assert load_dataset(src, fallback_size=4).image_shape == (4, 4, 3)
    assert load_dataset(src, image_size=16).image_shape == (16, 16, 3)
    assert len(calls) == 3 and len(_entries(cache_dir)) == 3
    # and an image_size-16 entry is not taken for fallback 16 (that keeps 8 px)
    assert load_dataset(src, fallback_size=16).image_shape == (8, 8, 3) and len(calls) == 3


def test_mixed_sizes_fallback_and_image_size_share_one_entry(tmp_path, cache_dir, monkeypatch):
    files = image_files({"cat": 3, "dog": 3}, size=8)
    big = image_files({"dog": 2}, size=20).values()
    files.update({f"dog/big{i}.png": v for i, v in enumerate(big)})
    src = write_folder(tmp_path / "ds", files)
    calls = _count_reads(monkeypatch)
    a = load_dataset(src, fallback_size=12)
    b = load_dataset(src, image_size=12)
    assert a.image_shape == (12, 12, 3) and _same(a, b) and len(calls) == 1


def _bmp_tar(path, pixel: int) -> None:
    """An uncompressed tar of BMPs (no checksums anywhere): one byte can change in place."""
    from PIL import Image

    with tarfile.open(path, "w") as tar:
        for cls in ("cat", "dog"):
            for i in range(3):
                buf = io.BytesIO()
                Image.fromarray(np.full((4, 4, 3), pixel if cls == "cat" else 200, np.uint8)).save(
                    buf, format="BMP")
                info = tarfile.TarInfo(f"{cls}/{i}.bmp")
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))


def test_key_follows_content_not_mtime(tmp_path, cache_dir, monkeypatch):
    path = tmp_path / "ds.tar"
    _bmp_tar(path, pixel=10)
    first = load_dataset(path, val_fraction=0)
    calls = _count_reads(monkeypatch)
    # touched (new mtime), or copied elsewhere: the same content, the same entry
    os.utime(path, (time.time() + 100, time.time() + 100))
    copy = tmp_path / "elsewhere" / "ds.tar"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    assert _same(load_dataset(path, val_fraction=0), first)
    assert _same(load_dataset(copy, val_fraction=0), first)
    assert len(calls) == 0
    # one pixel byte changed in place, size and mtime kept: a new entry with the new pixels
    st = path.stat()
    _bmp_tar(tmp_path / "other.tar", pixel=11)
    new = (tmp_path / "other.tar").read_bytes()
    assert len(new) == st.st_size
    path.write_bytes(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = load_dataset(path, val_fraction=0)
    assert len(calls) == 1
    assert changed.x_train[changed.y_train == 0].min() == 11


def test_folder_key_sees_a_replaced_file(tmp_path, monkeypatch):
    src = write_folder(tmp_path / "ds", image_files({"cat": 3, "dog": 3}))
    load_dataset(src)
    calls = _count_reads(monkeypatch)
    target = src / "cat" / "000.png"
    mtime = target.stat().st_mtime_ns
    target.write_bytes(image_files({"cat": 2}, seed=5)["cat/001.png"])
    os.utime(target, ns=(mtime, mtime + 1))
    load_dataset(src)
    assert len(calls) == 1


def test_cache_dir_follows_the_environment(cache_dir, tmp_path, monkeypatch):
    assert system.cache_dir() == cache_dir
    monkeypatch.delenv("TLKIT_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert system.cache_dir() == tmp_path / ".cache" / "tlkit"


def test_fingerprint():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a.reshape(4, 3))
    b = a.copy()
    b[0, 0] = 99
    assert fingerprint(a) != fingerprint(b)


def test_file_digest_follows_content_and_reads_an_unchanged_file_once(tmp_path, monkeypatch):
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 3000)
    reads = count_opens(monkeypatch)
    digest = file_digest(path)
    assert digest == hashlib.sha256(b"a" * 3000).hexdigest()
    assert file_digest(path) == digest and len(reads) == 1
    assert file_digest(path, "sha1") == hashlib.sha1(b"a" * 3000).hexdigest() and len(reads) == 2
    # touched, or copied elsewhere: the same content, the same digest
    os.utime(path, (time.time() + 100,) * 2)
    copy = tmp_path / "elsewhere" / "w.bin"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    assert file_digest(path) == file_digest(copy) == digest
    # other content of the same size swapped in under the same name and mtime
    st = path.stat()
    (tmp_path / "new.bin").write_bytes(b"b" * 3000)
    os.replace(tmp_path / "new.bin", path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_digest(path) == hashlib.sha256(b"b" * 3000).hexdigest()
    # without the memo every call reads the file
    n = len(reads)
    assert file_digest(path, memo=False) == file_digest(path, memo=False) and len(reads) == n + 2


# --------------------------------------------------------------------------- info and clear

def _fake_features(cache_dir, n: int = 2) -> None:
    folder = cache_dir / "features"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        np.save(folder / f"cnn-32-train-{i}.npy", np.zeros((10, 4), np.float32))
        (folder / f"cnn-32-train-{i}.json").write_text("{}")


def test_cache_usage_and_clear(tmp_path, cache_dir):
    src = write_tar(tmp_path / "ds.tar.gz", image_files({"cat": 4, "dog": 4}))
    load_dataset(src)
    load_dataset(src, image_size=16)
    _fake_features(cache_dir)
    usage = cache_usage()
    assert set(usage) == {"datasets", "features"}
    assert usage["datasets"]["entries"] == 2 and usage["features"]["entries"] == 2
    assert usage["datasets"]["bytes"] == sum(p.stat().st_size for p in _entries(cache_dir))
    assert usage["features"]["bytes"] > 4 * 10 * 4 * 2
    freed = clear_cache(["datasets"])
    assert freed["datasets"] == usage["datasets"]["bytes"] and not _entries(cache_dir)
    assert cache_usage()["features"]["entries"] == 2
    assert clear_cache() == {"datasets": 0, "features": usage["features"]["bytes"]}
    assert all(u["entries"] == 0 and u["bytes"] == 0 for u in cache_usage().values())
    with pytest.raises(TlkitError, match="unknown cache kind 'models'"):
        clear_cache(["models"])


def test_cli_cache_info_and_clear(tmp_path, cache_dir, capsys):
    load_dataset(write_folder(tmp_path / "ds", image_files({"cat": 4, "dog": 4})))
    _fake_features(cache_dir, n=3)
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(cache_dir) in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert lines["datasets"].split()[1] == "1" and lines["features"].split()[1] == "3"
    assert "tlkit cache clear" in out
    assert main(["cache", "clear", "--features"]) == 0
    assert "features" in capsys.readouterr().out
    assert cache_usage()["features"]["entries"] == 0 and len(_entries(cache_dir)) == 1
    assert main(["cache", "clear"]) == 0
    assert "freed" in capsys.readouterr().out and not _entries(cache_dir)
