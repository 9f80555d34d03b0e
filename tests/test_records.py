"""tlkit.records: atomic JSON, the record's fields, reading records back."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import tlkit.records as records
import tlkit.system as system
from conftest import CLI_PREFIX, ROOT
from tlkit import TlkitError
from tlkit.evaluate import unpack_correct
from tlkit.records import (RecordError, load_records, make_record, read_records, run_prefix, save_run,
                           to_frame, write_record)

REQUIRED = ("params", "dataset", "model", "weights_source", "metrics", "history", "wall_seconds",
            "images_per_second", "hardware", "backend", "versions", "seed", "git_commit")


def _record(test_accuracy=0.8, name="run", **extra):
    return make_record(kind="train", name=name, params={"epochs": 2, "lr": np.float32(0.001)},
                       dataset={"name": "synthetic", "counts": {"train": [3, 3]}},
                       model={"base": "cnn", "weights_source": "random"},
                       metrics={"test_accuracy": test_accuracy, "val_accuracy": 0.7,
                                "train_accuracy": np.float64(0.9), "train_loss": 0.3, "test_loss": 0.6},
                       history={"loss": [1.0, 0.5]}, wall_seconds=1.5, images_per_second=100.0,
                       seed=0, evaluation={"test": {"confusion_matrix": np.eye(2, dtype=int)}},
                       **extra)


def test_make_record_fields():
    rec = _record()
    for key in REQUIRED:
        assert key in rec, key
    assert rec["schema"] == records.SCHEMA and rec["kind"] == "train"
    assert rec["weights_source"] == "random"
    assert {"test_accuracy", "val_accuracy", "train_accuracy"} <= set(rec["metrics"])
    assert rec["backend"] == keras.config.backend()
    # how it ran: precision, deterministic ops or XLA (tlkit.system.execution)
    assert rec["precision"] == "float32" and {type(rec["deterministic"]), type(rec["xla"])} == {bool}
    assert rec["versions"]["keras"] and rec["versions"]["numpy"] and rec["versions"]["python"]
    assert rec["hardware"]["cores"] >= 1 and isinstance(rec["hardware"]["gpus"], list)
    assert rec["git_commit"] is None or len(rec["git_commit"]) == 40
    assert rec["evaluation"]["test"]["confusion_matrix"] == [[1, 0], [0, 1]]
    assert rec["created"].endswith("+00:00")
    json.dumps(rec, allow_nan=False)  # numpy scalars and arrays became plain JSON


def test_write_record_is_atomic(tmp_path):
    path = tmp_path / "runs" / "a_record.json"
    write_record(_record(0.5), path)
    assert [p.name for p in path.parent.iterdir()] == ["a_record.json"]
    assert json.loads(path.read_text())["metrics"]["test_accuracy"] == 0.5
    write_record(_record(0.6), path)  # replaced in place
    assert json.loads(path.read_text())["metrics"]["test_accuracy"] == 0.6
    assert [p.name for p in path.parent.iterdir()] == ["a_record.json"]


def test_record_is_as_readable_as_other_files(tmp_path):
    """Not the 0600 of a temporary file: records are shared (book, comparisons)."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    path = write_record(_record(), tmp_path / "r.json")
    assert (path.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)


def test_failed_write_keeps_old_record(tmp_path, monkeypatch):
    path = tmp_path / "a_record.json"
    write_record(_record(0.5), path)
    before = path.read_bytes()

    def broken_fsync(fd):  # the bytes are written, then the disk gives up
        raise OSError("disk full")

    monkeypatch.setattr(system.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_record(_record(0.9), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a_record.json"]  # no temporary left


def test_load_records_dataframe(tmp_path):
    write_record(_record(0.5, name="r1"), tmp_path / "r1_record.json")
    write_record(_record(0.75, name="r2"), tmp_path / "deeper" / "r2_record.json")
    df = load_records(tmp_path)
    assert isinstance(df, pd.DataFrame) and len(df) == 2
    assert sorted(df["metrics.test_accuracy"]) == [0.5, 0.75]
    assert "params.epochs" in df and "model.base" in df and "path" in df
    assert "history" not in df and not any(c.startswith("evaluation") for c in df)
    (tmp_path / "empty").mkdir()
    assert load_records(tmp_path / "empty").empty
    assert len(read_records([tmp_path, tmp_path / "deeper"])) == 2  # r2 once, not twice


def test_jupyter_checkpoints_and_temp_files_are_not_records(tmp_path):
    write_record(_record(0.5, name="r1"), tmp_path / "r1.json")
    ckpt = tmp_path / ".ipynb_checkpoints"
    ckpt.mkdir()
    (ckpt / "r1-checkpoint.json").write_text((tmp_path / "r1.json").read_text())
    (tmp_path / f".r1.json.1.ab{system.TMP_MARK}").write_text("{half a rec")
    (tmp_path / "r1_model_labels.json").write_text('{"class_names": ["a", "b"]}')  # tlkit export's
    assert [r["name"] for r in read_records(tmp_path)] == ["r1"]
    assert len(load_records(tmp_path)) == 1
    (tmp_path / "notes.json").write_text('{"class_names": ["a", "b"]}')
    with pytest.raises(RecordError, match="notes.json .*not a valid tlkit run record"):
        read_records(tmp_path)


def test_missing_records_folder_is_an_error(tmp_path):
    with pytest.raises(RecordError, match="records folder .*nowhere does not exist"):
        load_records(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RecordError, match="is not a folder"):
        read_records(tmp_path / "file")


def test_unreadable_files_are_named(tmp_path):
    write_record(_record(), tmp_path / "ok.json")
    (tmp_path / "latin1.json").write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(RecordError, match="latin1.json is not UTF-8"):
        load_records(tmp_path)
    (tmp_path / "latin1.json").unlink()
    (tmp_path / "x.json").mkdir()
    with pytest.raises(RecordError, match="x.json is a folder"):
        load_records(tmp_path)


@pytest.mark.parametrize("content, problem", [
    ({"not": "a record"}, "schema None"),
    ([1, 2], "JSON object, not list"),
    ("schema2", "schema 2 is not"),
    ("kind", "kind 'frozn' is not one of"),
    ("metrics", "metrics has no 'test_accuracy'"),
    ("type", "'wall_seconds' is str, not int or float"),
    ("true-number", "'wall_seconds' is bool, not int or float"),
    ("flag", "'deterministic' is str, not bool"),
    ("study", r"params\['train_images'\] is str, not int \(a curve ablation declares method, per_class"),
])
def test_files_that_are_not_valid_records_are_named(tmp_path, content, problem):
    """A records folder holds records only: anything else is loud, never a missing row."""
    write_record(_record(), tmp_path / "good.json")
    rec = _record()
    if content == "schema2":
        rec["schema"] = 2
    elif content == "kind":
        rec["kind"] = "frozn"
    elif content == "metrics":
        del rec["metrics"]["test_accuracy"]
    elif content == "type":
        rec["wall_seconds"] = "12 s"
    elif content == "true-number":
        rec["wall_seconds"] = True
    elif content == "flag":
        rec["deterministic"] = "yes"
    elif content == "study":  # an ablation point of the label-efficiency curve
        rec.update(kind="ablation", params={"method": "frozen", "per_class": 3, "train_images": "6"})
    else:
        rec = content
    (tmp_path / "bad.json").write_text(json.dumps(rec))
    with pytest.raises(RecordError, match=f"bad.json .*{problem}"):
        read_records(tmp_path)
    assert issubclass(RecordError, TlkitError)


def test_invalid_record_is_not_written(tmp_path):
    rec = _record()
    rec["kind"] = "fine-tune"
    with pytest.raises(RecordError, match="refusing to write .*a.json.*kind 'fine-tune' is not one of"):
        write_record(rec, tmp_path / "a.json")
    rec = _record()
    rec["metrics"]["test_accuracy"] = "high"
    with pytest.raises(RecordError, match=r"metrics\['test_accuracy'\] is str, not a number"):
        write_record(rec, tmp_path / "a.json")
    assert list(tmp_path.iterdir()) == []


def test_save_run_checks_the_kind(tmp_path):
    class Data:  # what save_run reads of a tlkit.data.Dataset
        def info(self):
            return {"name": "synthetic", "class_names": ["a", "b"]}

    ev = {"summary": {"train_accuracy": 1.0, "train_loss": 0.1, "test_accuracy": 0.5, "test_loss": 0.7},
          "test": {"n": 2}}
    kw = dict(name="01 x", params={}, dataset=Data(), model={"base": "cnn"}, evaluation=ev)
    with pytest.raises(RecordError, match="kind 'scrach'"):
        save_run(tmp_path / "01_x.json", kind="scrach", **kw)
    assert not (tmp_path / "01_x.json").exists()
    rec = save_run(tmp_path / "01_x.json", kind="scratch", **kw)
    assert read_records(tmp_path)[0]["metrics"] == rec["metrics"]


def test_to_frame_refuses_unknown_kinds():
    recs = [_record(0.5, name="a"), {**_record(0.6, name="b"), "kind": "frozen"}]
    assert list(to_frame(recs, kinds=["frozen"])["run"]) == ["b"]
    with pytest.raises(RecordError, match="unknown record kind.*'froze'"):
        to_frame(recs, kinds=["froze"])


def test_nan_metrics_round_trip(tmp_path):
    write_record(_record(float("nan")), tmp_path / "n.json")
    assert math.isnan(read_records(tmp_path)[0]["metrics"]["test_accuracy"])


def test_bad_json_is_named(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(RecordError, match="broken.json is not valid JSON"):
        read_records(tmp_path)


def test_weights_origin_is_read_from_the_file(tmp_path, monkeypatch):
    path = tmp_path / "w.h5"
    path.write_bytes(b"converted weights")
    assert records.weights_origin(f"imagenet:{path}") == "Keras file"
    monkeypatch.setitem(records.CONVERTED_WEIGHTS, hashlib.sha256(b"converted weights").hexdigest(),
                        "converted TF-slim checkpoint")
    assert records.weights_origin(f"imagenet:{path}") == "converted TF-slim checkpoint"
    assert records.weights_origin("imagenet:download") == "Keras download"
    assert records.weights_origin(f"file:{path}") is None
    assert records.weights_origin(f"imagenet:{tmp_path / 'missing.h5'}") is None


def test_run_prefix_and_label():
    assert run_prefix("cnn", "synthetic", 32, 32, 1, lr=0.002, seed=0, weights="random") == CLI_PREFIX
    assert run_prefix("mobilenetv2", "flowers", 224, 16, 5, lr=5e-5, seed=3, weights="imagenet",
                      alpha=0.35, limit_per_class=100, finetune_epochs=2) == \
        "mobilenetv2__flowers__img224__bs16__ep5__lr5e-05__seed3__wimagenet__a0.35__lim100__ft2"
    rec = _record()
    assert records.label(rec).endswith(f", {rec['backend']}") and rec["created"][:10] in records.label(rec)


def test_cli_record(cli_run):
    """The record the CLI wrote: every field, real metrics, matching history."""
    out, _ = cli_run
    rec = json.loads((out / f"{CLI_PREFIX}_record.json").read_text())
    for key in REQUIRED:
        assert key in rec, key
    assert rec["name"] == CLI_PREFIX and rec["kind"] == "train"
    assert rec["params"]["epochs"] == 1 and rec["params"]["img_size"] == 32
    assert rec["params"]["base"] == "cnn" and rec["params"]["batch_size"] == 32
    assert rec["model"]["base"] == "cnn" and rec["weights_source"] == "random"
    assert rec["dataset"]["name"] == "synthetic" and len(rec["dataset"]["class_names"]) == 4
    m = rec["metrics"]
    for key in ("test_accuracy", "val_accuracy", "train_accuracy"):
        assert 0.0 <= m[key] <= 1.0
    assert len(rec["history"]["loss"]) == 1 and rec["wall_seconds"] > 0
    assert rec["images_per_second"] > 0 and rec["seed"] == 0
    cm = np.array(rec["evaluation"]["test"]["confusion_matrix"])
    assert cm.sum() == rec["evaluation"]["test"]["n"] == sum(rec["dataset"]["counts"]["test"])
    assert m["test_accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    # which test images were right, one bit each, and which images: a paired comparison reads them
    test = rec["evaluation"]["test"]
    assert len(test["correct"]) == 4 * -(-test["n"] // 24)  # base64 of n/8 bytes
    assert unpack_correct(test["correct"], test["n"]).mean() == pytest.approx(m["test_accuracy"])
    assert isinstance(test["images"], str) and test["images"] != rec["evaluation"]["val"]["images"]
    df = load_records(out)
    assert df.loc[0, "metrics.test_accuracy"] == m["test_accuracy"]


def test_split_images_counts_what_each_accuracy_was_measured_on():
    rec = {"evaluation": {"test": {"n": 1500}}, "dataset": {"counts": {"test": [5000, 5000], "val": [40, 60]}}}
    assert records.split_images(rec) == 1500  # the evaluation's count first
    assert records.split_images(rec, "val") == 100  # else the split's size
    assert records.split_images({"dataset": {}}, "val") is None
    assert records.to_frame([{**rec, "name": "x", "metrics": {}}])["test_images"].tolist() == [1500]


# --------------------------------------------------------------------------- what a row is, in words

@pytest.fixture(scope="module")
def model_infos() -> dict[str, dict]:
    """The model part of records as tlkit writes them: real classifiers' ``info()`` (the CNN
    from scratch; a MobileNetV2 frozen, then with its top unfrozen) and a frozen-feature run's
    ``model_info()`` (a head on cached features declares ``frozen``)."""
    from tlkit.models import build_classifier, unfreeze

    cnn = build_classifier("cnn", 4, input_shape=(32, 32, 3)).info()
    mnv2 = build_classifier("mobilenetv2", 4, input_shape=(32, 32, 3), img_size=32, weights="none",
                            alpha=0.35, freeze=True)
    frozen = mnv2.info()
    unfreeze(mnv2, last_n=10)
    return {"cnn": cnn, "frozen": frozen, "top": mnv2.info(),
            "probe": {"base": "mobilenetv2", "img_size": 32, "frozen": True, "weights_source": "random",
                      "head_params": 2570, "backbone_params": frozen["backbone_params"], "alpha": 0.35}}


IMAGENET = "ImageNet weights (Keras download)"
# (kind, params, model (a key of model_infos), pretrained, the label): every kind, as written by
# tlkit train (train), notebooks 1-5 (scratch, frozen, finetune, comparison, ablation) and 7 (own)
TRAINED = [
    ("scratch", {}, "cnn", False, records.SCRATCH),
    ("train", {"finetune": False}, "cnn", False, records.SCRATCH),
    ("train", {"finetune": False}, "frozen", True, f"{IMAGENET}, frozen"),
    ("train", {"finetune": True}, "top", True, f"{IMAGENET}, fine-tuned"),
    ("train", {"finetune": True}, "top", False, records.RANDOM_FINETUNED),
    ("frozen", {}, "probe", True, f"{IMAGENET}, frozen"),
    ("frozen", {}, "probe", False, records.RANDOM_HEAD),
    ("finetune", {}, "probe", True, f"{IMAGENET}, frozen"),  # notebook 3's phase 1: head only
    ("finetune", {}, "top", True, f"{IMAGENET}, fine-tuned"),
    ("comparison", {}, "probe", True, f"{IMAGENET}, frozen"),
    ("comparison", {}, "probe", False, records.RANDOM_HEAD),
    # notebook 2's curve points and notebook 5's augmentation runs: the CNN from scratch, whole
    ("ablation", {"method": "scratch", "per_class": 10, "train_images": 40}, "cnn", False, records.SCRATCH),
    ("ablation", {"knob": "augmentation"}, "cnn", False, records.SCRATCH),
    ("ablation", {"method": "frozen", "per_class": None, "train_images": 48}, "probe", True, f"{IMAGENET}, frozen"),
    ("ablation", {"knob": "dropout"}, "probe", False, records.RANDOM_HEAD),
    ("own", {"stage": "frozen"}, "probe", True, f"{IMAGENET}, frozen"),
    ("own", {"stage": "finetune"}, "top", True, f"{IMAGENET}, fine-tuned"),
    ("own", {"stage": "finetune"}, "top", False, records.RANDOM_FINETUNED),
]


def test_every_kind_is_labelled_by_what_was_trained():
    assert {kind for kind, *_ in TRAINED} == set(records.KINDS)


@pytest.mark.parametrize("kind, params, model, pretrained, label", TRAINED)
def test_trained_label(model_infos, kind, params, model, pretrained, label):
    """A row's label says what learnt: a network from scratch is never 'head only', a head on a
    random backbone never transfer or from scratch."""
    source = "imagenet:download" if pretrained else "random"
    rec = make_record(kind=kind, name="run", params=params, dataset={"name": "synthetic"},
                      model={**model_infos[model], "weights_source": source},
                      metrics={"test_accuracy": 0.5, "train_accuracy": 0.6, "train_loss": 1.0, "test_loss": 1.1})
    assert records.record_problems(rec) == []
    assert records.trained_label(rec) == label
    assert to_frame([rec])["weights"].tolist() == [label]


def test_trained_label_of_records_without_the_backbones_count(model_infos):
    """Records written before ``backbone_trainable_params`` (the committed reference run): the
    trainable count beyond the head, else the kind, says what learnt."""
    old = {k: v for k, v in model_infos["cnn"].items() if k != "backbone_trainable_params"}
    curve = {"kind": "ablation", "params": {"method": "scratch", "per_class": 10}, "weights_source": "random"}
    assert records.trained_label({**curve, "model": old}) == records.SCRATCH
    assert records.trained_label({**curve, "model": {"base": "cnn"}}) == records.SCRATCH
    top = {k: v for k, v in model_infos["top"].items() if k != "backbone_trainable_params"}
    assert records.trained_label({"kind": "own", "params": {"stage": "finetune"}, "model": top,
                                  "weights_source": "random"}) == records.RANDOM_FINETUNED
    assert records.trained_label({"kind": "comparison", "params": {}, "model": {"base": "resnet50"},
                                  "weights_source": "random"}) == records.RANDOM_HEAD
    # a knob ablation that says nothing of its backbone: only where its weights came from
    assert records.trained_label({"kind": "ablation", "params": {"knob": "x"}, "model": {},
                                  "weights_source": "random"}) == "random weights"


def test_the_reference_runs_rows_say_what_was_trained():
    """The committed reference run: its from-scratch ablations (notebook 2's curve, notebook 5's
    augmentation) are the CNN trained whole, never 'random weights, head only'."""
    folder = ROOT / "book" / "reference" / "cpu" / "records"
    by_file = {Path(r["path"]).stem: records.trained_label(r) for r in read_records(folder)}
    assert len(by_file) > 20 and "random weights, head only" not in by_file.values()
    for stem, label in by_file.items():
        if stem.startswith(("01_", "02_curve_scratch", "05_scratch")):
            assert label == records.SCRATCH, stem
        elif stem.startswith(("03_finetune", "07_finetune")):
            assert label.startswith("ImageNet weights") and label.endswith(", fine-tuned"), stem
        else:
            assert label.startswith("ImageNet weights") and label.endswith(", frozen"), stem


def test_recorder_keeps_a_record_in_one_call(tmp_path):
    """Recorder.save: the notebook's settings and data set given once, the run's own parts, a
    classifier's info or a probe's fields; the seed from the settings."""
    class Data:
        def __init__(self, name):
            self.name = name

        def info(self):
            return {"name": self.name, "class_names": ["a", "b"]}

    class Clf:
        def info(self):
            return {"base": "cnn", "img_size": 32}

    class Probe:
        def record_fields(self):
            return {"model": {"base": "mobilenetv2", "frozen": True}, "evaluation": ev,
                    "wall_seconds": 3.0, "images_per_second": 50.0}

    ev = {"summary": {"train_accuracy": 1.0, "train_loss": 0.1, "test_accuracy": 0.5, "test_loss": 0.7}}
    rec = records.Recorder(tmp_path, {"seed": 3, "lr": 0.1}, Data("synthetic"))
    one = rec.save("01_x", "01 x", kind="scratch", model=Clf(), evaluation=ev, params={"lr": 0.2})
    two = rec.save("02_y", "02 y", kind="frozen", run=Probe(), dataset=Data("other"))
    assert [r["name"] for r in read_records(tmp_path)] == ["01 x", "02 y"]
    assert one["params"] == {"seed": 3, "lr": 0.2} and one["seed"] == 3 and one["model"]["img_size"] == 32
    assert two["dataset"]["name"] == "other" and two["wall_seconds"] == 3.0 and two["model"]["frozen"]
    with pytest.raises(RecordError, match="03_z: give run=, or model= and evaluation="):
        rec.save("03_z", "03 z", kind="scratch", model=Clf())
    with pytest.raises(RecordError, match="no data set"):
        records.Recorder(tmp_path, {}).save("03_z", "03 z", kind="scratch", model=Clf(), evaluation=ev)
