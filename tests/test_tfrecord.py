"""TFRecord shards in the layout of Kaggle's 104-flowers data ("Petals to the Metal"):
``train/`` and ``val/`` shards of JPEG ``image`` bytes with an int64 ``class`` (and a string
``id``), unlabelled ``test/`` shards (``image`` and ``id`` only), names in ``classes.txt``."""
from __future__ import annotations

import io

import numpy as np
import pytest

from tlkit.data import load_dataset

# Reading TFRecords needs the TensorFlow package (tf.data), whatever the Keras backend.
tf = pytest.importorskip("tensorflow", reason="reading TFRecords needs TensorFlow")

CLASSES = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]
COLOURS = [(220, 40, 40), (40, 220, 40), (40, 40, 220)]


def jpeg(colour, rng, size=16) -> bytes:
    from PIL import Image

    img = np.clip(np.asarray(colour) + rng.integers(-8, 9, (size, size, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_shard(path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as w:
        for rec in records:
            feat = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[rec["image"]])),
                    "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[rec["id"].encode()]))}
            if "class" in rec:
                feat["class"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[rec["class"]]))
            w.write(tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString())


@pytest.fixture
def flowers_tfrec(tmp_path):
    """tfrecords-jpeg-16x16/: two train shards, one val shard, one unlabelled test shard."""
    rng = np.random.default_rng(0)
    root = tmp_path / "tfrecords-jpeg-16x16"

    def labelled(n, prefix):
        return [{"image": jpeg(COLOURS[i % 3], rng), "class": i % 3, "id": f"{prefix}{i:03d}"}
                for i in range(n)]

    write_shard(root / "train" / "00-16x16-9.tfrec", labelled(9, "a"))
    write_shard(root / "train" / "01-16x16-6.tfrec", labelled(6, "b"))
    write_shard(root / "val" / "00-16x16-6.tfrec", labelled(6, "v"))
    write_shard(root / "test" / "00-16x16-4.tfrec",
                [{"image": jpeg(COLOURS[0], rng), "id": f"t{i:03d}"} for i in range(4)])
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def test_kaggle_flowers_layout(flowers_tfrec):
    """Labels and images come back as written; the labelled val shards become the test split
    (the unlabelled Kaggle test shards cannot be scored), a val split is cut from train."""
    ds = load_dataset(flowers_tfrec, val_fraction=0.2, seed=0)
    assert ds.class_names == CLASSES and ds.num_classes == 3
    assert ds.image_shape == (16, 16, 3) and ds.x_train.dtype == np.uint8
    assert ds.counts() == {"train": [4, 4, 4], "val": [1, 1, 1], "test": [2, 2, 2]}
    assert ds.corrupt == []
    for x, y in [(ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)]:
        mean = x.reshape(len(x), -1, 3).mean(1)
        assert np.array_equal(mean.argmax(1), y)  # each image's colour is its class's
        assert np.abs(mean - np.asarray(COLOURS)[y]).max() < 12  # JPEG keeps the colours
    # read again: the same arrays, from the decoded-array cache
    again = load_dataset(flowers_tfrec, val_fraction=0.2, seed=0)
    assert np.array_equal(again.x_train, ds.x_train) and np.array_equal(again.y_test, ds.y_test)


def test_unlabelled_shards_alone_cannot_train(tmp_path):
    rng = np.random.default_rng(0)
    write_shard(tmp_path / "tfrec" / "00-16x16-2.tfrec",
                [{"image": jpeg(COLOURS[0], rng), "id": f"t{i}"} for i in range(2)])
    from tlkit.data import DatasetError

    with pytest.raises(DatasetError, match="unlabelled"):
        load_dataset(tmp_path / "tfrec")
