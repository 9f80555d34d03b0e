"""tlkit.label_efficiency: label-efficiency points (frozen head and from scratch) on the same
seeded per-class subsets, their schedules, records and frame."""
from __future__ import annotations

import numpy as np
import pytest

from tlkit import label_efficiency, findings
from tlkit.features import extract_features, per_class_indices
from tlkit.records import read_records, save_point
from tlkit.train import set_seed


def test_schedule_gives_small_sets_more_epochs_and_smaller_batches():
    assert label_efficiency.schedule(100, epochs=10, batch_size=256, min_images=30000) == (300, 32)
    assert label_efficiency.schedule(1000, epochs=10, batch_size=256, min_images=30000) == (30, 64)
    assert label_efficiency.schedule(5000, epochs=10, batch_size=256, min_images=30000) == (10, 256)
    assert label_efficiency.schedule(20, epochs=3, batch_size=32) == (3, 20)  # never above the set
    with pytest.raises(ValueError):
        label_efficiency.schedule(0, epochs=1, batch_size=32)


def test_usable_counts(tiny_ds):
    smallest = int(np.bincount(tiny_ds.y_train).min())
    kept, dropped = label_efficiency.usable_counts(tiny_ds.y_train, [smallest + 5, 2, smallest, 2, 4])
    assert kept == [2, 4] and dropped == [smallest, smallest + 5]


def test_points_share_subsets_and_write_records(tiny_ds, tmp_path):
    """A frozen and a scratch point at one count train on the same images; their records
    carry the count and read back into the curve frame; the 'all' point uses every image."""
    set_seed(0)
    feats = extract_features("cnn", tiny_ds, img_size=32, weights="none", flip_train=True)
    frozen = label_efficiency.frozen_point(feats, tiny_ds, 3, epochs=2, min_images=24, seed=0)
    scratch = label_efficiency.scratch_point(tiny_ds, 3, epochs=1, batch_size=32, min_images=12, seed=0)
    idx = per_class_indices(tiny_ds.y_train, 3, seed=0)
    for p in (frozen, scratch):
        assert (p.ds.y_train == tiny_ds.y_train[idx]).all() and p.train_images == len(idx)
        assert p.evaluation["train"]["n"] == len(idx)
        assert p.evaluation["test"]["n"] == len(tiny_ds.y_test)
    assert frozen.epochs == 2 and frozen.result.epochs == 2 and scratch.epochs == 1
    assert (frozen.batch_size, scratch.batch_size) == (12, 12)  # never above the subset
    assert frozen.model["frozen"] and scratch.model["base"] == "cnn"
    everything = label_efficiency.frozen_point(feats, tiny_ds, None, epochs=1, seed=0)
    assert everything.train_images == len(tiny_ds.y_train) and everything.params()["per_class"] is None
    recs = [save_point(p, tmp_path / f"{p.method}_{p.per_class}.json", name=f"{p.method} {p.per_class}",
                       params={"profile": "smoke"}, seed=0) for p in (frozen, scratch, everything)]
    assert all(r["kind"] == "ablation" for r in recs)
    back = {r["name"]: r for r in read_records(tmp_path)}
    assert back["frozen 3"]["params"]["per_class"] == 3 and back["frozen 3"]["params"]["profile"] == "smoke"
    assert label_efficiency.same_data(recs[2], tiny_ds) and not label_efficiency.same_data(recs[0], tiny_ds)
    df = label_efficiency.curve_frame({"frozen head": [recs[0], recs[2]], "from scratch": [recs[1]]})
    assert list(df.columns) == ["method", "per_class", "train_images", "test_accuracy", "test_images", "run"]
    assert set(df["test_images"]) == {len(tiny_ds.y_test)}  # what each accuracy's interval rests on
    assert df.loc[df["run"] == "frozen 3", "per_class"].item() == 3
    assert df.loc[df["run"] == "frozen None", "train_images"].item() == len(tiny_ds.y_train)
    f = findings.compare_at([3], [recs[0]], [recs[1]], "frozen", "scratch")
    assert f.text.startswith("Frozen against scratch at 1 setting of")


def _rec(kind: str, acc: float, history: dict, img_size: int = 96, **params) -> dict:
    return {"kind": kind, "params": params, "model": {"img_size": img_size}, "history": history,
            "dataset": {"counts": {"train": [500, 500]}}, "metrics": {"test_accuracy": acc}}


def test_two_protocols_names_both_numbers_of_one_head():
    """The curve's all-images frozen point and the size sweep's run at its size: two numbers,
    each with how it was trained, from their records; any other pair has no such sentence."""
    point = _rec("ablation", 0.7647, {"loss": [1.0] * 4}, method="frozen", per_class=None)
    sweep = _rec("frozen", 0.764, {"loss": [1.0] * 5, "val_loss": [0.9, 0.7, 0.6, 0.65, 0.8]})
    assert label_efficiency.two_protocols(point, sweep) == (
        "A frozen head on all 1,000 training images at 96 px, from the same cached features, has two test "
        "accuracies here: 0.765 on the label-efficiency curve, which trains 4 epochs without the validation "
        "split and keeps the last, and 0.764 in the size sweep, which keeps its epoch of lowest validation "
        "loss (3 of 5).")
    assert label_efficiency.two_protocols(point, {**sweep, "model": {"img_size": 128}}) is None
    assert label_efficiency.two_protocols({**point, "params": {"method": "frozen", "per_class": 10}}, sweep) is None
    assert label_efficiency.two_protocols(point, {**sweep, "dataset": {"counts": {"train": [5, 5]}}}) is None
    assert label_efficiency.two_protocols(sweep, sweep) is None
