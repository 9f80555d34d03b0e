"""Notebook 7's library: crop when loading, identical files, the highest losses, near-duplicates
and the 'unknown' threshold; the checks must find what a generated folder has planted."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tlkit import data, evaluate, features, findings, plots
from tlkit.cli import main
from tlkit.records import make_record, record_problems


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    return data.make_image_folder(tmp_path_factory.mktemp("own"), n_classes=3, per_class=30, seed=0)


@pytest.fixture
def ds(planted) -> data.Dataset:
    return data.load_dataset(planted["folder"], image_size=32, crop="center", seed=0)


def colour_features(ds: data.Dataset) -> features.Features:
    """Features that see what the planted folder's classes differ in: each image's mean colour
    and its 8 x 8 thumbnail (no network: these tests check the helpers, not a backbone)."""
    def feats(x: np.ndarray) -> np.ndarray:
        thumb = x.reshape(len(x), 8, 4, 8, 4, 3).mean((2, 4)).reshape(len(x), -1)
        return np.concatenate([x.mean((1, 2)) * 4, thumb], 1).astype(np.float32)

    return features.Features("colour", 32, "none", {s: feats(getattr(ds, f"x_{s}")) for s in ("train", "val", "test")})


# --------------------------------------------------------------------------- crop

def _jpeg(w: int, h: int) -> bytes:
    """A w x h photo: a white middle square as tall as the photo, black bands at the sides."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, (w - h) // 2:(w + h) // 2] = 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_crop_center_pad_and_squash():
    """A landscape photo: center keeps the white middle, pad adds black bands above and below,
    squash keeps the black sides."""
    photo = _jpeg(300, 100)
    center, native, scaled = data._decode(photo, 30, crop="center")
    assert native == (100, 300) and scaled and center.shape == (30, 30, 3)
    assert center[:, 2:-2].min() > 200  # all white: the black sides are cropped away
    pad = data._decode(photo, 30, crop="pad")[0]
    assert pad[:8].max() < 30 and pad[-8:].max() < 30 and pad[15, 15].min() > 200  # letterbox
    squash = data._decode(photo, 30, crop="squash")[0]
    assert squash[:, :7].max() < 30 and squash[:, 12:18].min() > 200  # the sides squeezed in
    own_size = data._decode(photo, crop="center")[0]  # no working size: square at its own scale
    assert own_size.shape == (100, 100, 3)
    with pytest.raises(data.DatasetError, match="crop .--crop. must be one of center, pad, squash, not 'middle'"):
        data.load_dataset("synthetic", crop="middle")


def test_crop_is_part_of_the_cache_key(planted, monkeypatch):
    """A second load with the same crop comes from the cache; another crop decodes again."""
    calls = []
    real = data._decode
    monkeypatch.setattr(data, "_decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = data.load_dataset(planted["folder"], image_size=24, crop="center")
    n = len(calls)
    again = data.load_dataset(planted["folder"], image_size=24, crop="center")
    assert len(calls) == n and np.array_equal(first.x_test, again.x_test)
    assert again.files["test"].tolist() == first.files["test"].tolist()  # names and hashes cached too
    padded = data.load_dataset(planted["folder"], image_size=24, crop="pad")
    assert len(calls) == 2 * n and not np.array_equal(first.x_train, padded.x_train)
    assert padded.info()["crop"] == "pad"


def test_memory_follows_the_working_size(tmp_path):
    """Photos of mixed sizes, every one decoded once straight to the working size."""
    for i, (w, h) in enumerate([(640, 480), (480, 640), (500, 500)] * 2):
        (tmp_path / f"c{i % 2}").mkdir(exist_ok=True)
        Image.new("RGB", (w, h), (i * 40, 90, 200)).save(tmp_path / f"c{i % 2}" / f"{i}.jpg")
    ds = data.load_dataset(tmp_path, image_size=16, crop="center", val_fraction=0.0, test_fraction=0.34)
    assert ds.x_train.shape[1:] == (16, 16, 3) and ds.x_train.nbytes + ds.x_test.nbytes == 6 * 16 * 16 * 3


# --------------------------------------------------------------------------- what the loader reports

def test_identical_files_are_found_across_classes(planted, ds):
    groups = ds.duplicates()
    found = {frozenset(f["file"] for f in g) for g in groups}
    assert {frozenset(pair) for pair in planted["duplicates"]} <= found
    for g in groups:
        assert len({f["label"] for f in g}) == 2  # planted across classes
        for f in g:  # each entry points at its image
            assert ds.about(f["split"], f["index"]) == f
    summary = data.duplicate_summary(groups)
    assert summary["across_classes"] == len(planted["duplicates"]) == summary["groups"]
    assert ds.corrupt == planted["unreadable"] and ds.crop == "center"
    text = ds.describe()
    assert "1 unreadable image(s) skipped: disc/IMG_broken.jpg" in text
    assert f"identical files: {len(groups)} group(s) of {2 * len(groups)} files, {len(groups)} across classes" in text


def test_identical_files_across_splits_are_reported(tmp_path):
    """The same bytes in train/ and test/: a leak the report names."""
    photo = _jpeg(40, 40)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            (tmp_path / split / cls / "own.jpg").write_bytes(_jpeg(60, 40 + (cls == "b")))
    (tmp_path / "train" / "a" / "same.jpg").write_bytes(photo)
    (tmp_path / "test" / "a" / "same.jpg").write_bytes(photo)
    ds = data.load_dataset(tmp_path, image_size=8, val_fraction=0.0)
    assert data.duplicate_summary(ds.duplicates())["across_splits"] >= 1
    leak = next(g for g in ds.duplicates() if {f["file"] for f in g} == {"train/a/same.jpg", "test/a/same.jpg"})
    assert sorted(f["split"] for f in leak) == ["test", "train"]


def test_no_files_no_duplicate_report():
    ds = data.load_dataset("synthetic", synthetic_per_class=20)
    assert ds.duplicates() == [] and "identical files" not in ds.describe()
    assert ds.about("test", 0)["file"] == "test #0"


def test_sample_images_of_a_folder_without_classes(planted):
    other = data.sample_images(planted["other"], 10, 20, seed=1)
    assert other.shape == (10, 20, 20, 3) and other.dtype == np.uint8
    assert len(data.sample_images(planted["other"], 1000, 20)) == len(list(planted["other"].iterdir()))
    builtin = data.sample_images("synthetic", 5, 40)  # a built-in set, resized from its own 32 px
    assert builtin.shape == (5, 40, 40, 3)
    with pytest.raises(data.DatasetError, match="no images at .*nowhere"):
        data.sample_images(planted["folder"] / "nowhere", 5, 20)


# --------------------------------------------------------------------------- the model finds the planted mistakes

def test_top_losses_find_the_planted_mislabels(planted, ds):
    """Heads that never saw a training image (out of fold) rank the planted mislabelled photos
    among the highest losses (with the copies filed under two classes, which are mislabelled
    in one of them)."""
    feats = colour_features(ds)
    oof = features.out_of_fold_proba(feats, ds, folds=3, epochs=15, lr=2e-2, early_stopping=None)
    assert oof.shape == (len(ds.y_train), 3) and np.allclose(oof.sum(1), 1, atol=1e-4)
    head, _ = features.fit_head(feats, ds, epochs=15, lr=2e-2, early_stopping=None)
    proba = {"train": oof, **{s: evaluate.predict_proba(head, feats.splits[s]) for s in ("val", "test")}}
    mislabelled = set(planted["mislabelled"])
    planted_count = len(mislabelled) + len(planted["duplicates"])
    worst = evaluate.top_losses_in(ds, proba, k=2 * planted_count)
    assert mislabelled <= {r["file"] for r in worst}, [(r["file"], r["loss"]) for r in worst]
    assert [r["loss"] for r in worst] == sorted((r["loss"] for r in worst), reverse=True)
    assert all(r["predicted"] != r["label"] for r in worst[:planted_count])
    fig = plots.top_losses(ds, worst, title="planted")
    assert len(fig.axes) >= len(worst) and "given:" in fig.axes[0].get_title()


def test_near_duplicates_find_the_planted_copies(planted, ds):
    """Re-encoded, smaller copies are near-duplicates on thumbnails; pairs split across the
    splits are leaks, and every planted pair is found wherever its two photos landed."""
    feats = colour_features(ds)
    files = {s: ds.files[s].tolist() for s in ("train", "val", "test")}
    everything = np.concatenate([feats.splits[s] for s in files])
    names = sum(files.values(), [])
    pairs = features.near_duplicates(everything, threshold=0.98, center=everything.mean(0))
    found = {frozenset((names[i], names[j])) for i, j, _ in pairs}
    assert {frozenset(p) for p in planted["near_duplicates"]} <= found
    assert len(pairs) < 3 * (len(planted["near_duplicates"]) + len(planted["duplicates"]))  # few false alarms
    leaks = features.leaks(feats, ds, 0.98)
    assert {frozenset((p["a"]["file"], p["b"]["file"])) for p in leaks} <= found
    assert sum(features.count_leaks(leaks).values()) == len(leaks)
    fig = plots.near_duplicates(ds, leaks, "planted near-duplicates")
    assert fig.get_suptitle().startswith("planted")


def test_near_duplicates_by_hand_and_in_chunks():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.01]], np.float32)
    b = np.array([[0.0, 2.0], [3.0, 0.0]], np.float32)
    assert [(i, j) for i, j, _ in features.near_duplicates(a, b, 0.99)] == [(0, 1), (1, 0), (2, 1)]
    assert [(i, j) for i, j, _ in features.near_duplicates(a, threshold=0.99, chunk=1)] == [(0, 2)]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    whole = features.near_duplicates(x, threshold=0.6)
    chunked = features.near_duplicates(x, threshold=0.6, chunk=7)
    assert [p[:2] for p in whole] == [p[:2] for p in chunked] and len(whole) > 0
    assert np.allclose([p[2] for p in whole], [p[2] for p in chunked])
    assert all(i < j for i, j, _ in whole)


# --------------------------------------------------------------------------- the 'unknown' threshold

def test_choose_threshold_by_hand():
    # top probabilities 0.9 (right), 0.8 (right), 0.7 (wrong), 0.6 (right), 0.5 (wrong)
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.5, 0.5]])
    y = np.array([0, 1, 1, 1, 1])
    curve = evaluate.threshold_curve(proba, y)
    assert curve["threshold"].tolist() == [0.9, 0.8, 0.7, 0.6, 0.5]
    assert np.allclose(curve["precision"], [1, 1, 2 / 3, 3 / 4, 3 / 5]) and np.allclose(curve["coverage"], [.2, .4, .6, .8, 1])
    t = evaluate.choose_threshold(proba, y, precision=0.75)
    assert (t.threshold, t.precision, t.coverage, t.reached) == (0.6, 0.75, 0.8, True)
    assert evaluate.choose_threshold(proba, y, precision=1.0).threshold == 0.8  # lowest with no mistake
    assert evaluate.at_threshold(proba, 0.6, y) == {"coverage": 0.8, "unknown": pytest.approx(0.2), "n": 5,
                                                    "precision": 0.75}
    assert evaluate.at_threshold(proba, 0.95) == {"coverage": 0.0, "unknown": 1.0, "n": 5}
    with pytest.raises(ValueError, match="precision must be in"):
        evaluate.choose_threshold(proba, y, precision=0)


def test_threshold_unreachable_and_ties():
    proba = np.array([[0.6, 0.4], [0.6, 0.4], [0.55, 0.45]])
    t = evaluate.choose_threshold(proba, np.array([1, 0, 1]), precision=0.9)
    assert not t.reached and t.threshold == 0.6 and t.precision == 0.5  # a tie counts as one step
    text = str(findings.unknown(t.info()))
    assert text.startswith("No threshold reaches 90% precision on the 3 validation images: the best, 50.0%, is at 0.60")


def test_threshold_on_the_planted_folder(planted, ds):
    """Chosen on validation, it keeps its precision there; the untinted shapes of none of the
    classes get a sentence of their own."""
    feats = colour_features(ds)
    head, _ = features.fit_head(feats, ds, epochs=40, lr=1e-2, early_stopping=None)
    chosen = evaluate.choose_threshold(evaluate.predict_proba(head, feats.splits["val"]), ds.y_val, 0.9)
    assert chosen.reached and chosen.precision >= 0.9 and 0 < chosen.coverage <= 1
    test = evaluate.at_threshold(evaluate.predict_proba(head, feats.splits["test"]), chosen.threshold, ds.y_test)
    other = evaluate.at_threshold(np.full((12, 3), 1 / 3), chosen.threshold)
    text = str(findings.unknown(chosen.info(), test, other))
    assert text.startswith(f"A threshold of {chosen.threshold:.2f} keeps") and f"of {ds.y_val.size:,} validation" not in text
    assert "it turns 100.0% of 12 images of none of the classes into 'unknown'" in text
    fig = plots.threshold_curve(chosen.curve, chosen.threshold, 0.9)
    assert "threshold" in fig.axes[0].get_xlabel()


def test_top_losses_by_hand():
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.99, 0.01], [0.5, 0.5]])
    y = np.array([0, 0, 1, 1])
    assert evaluate.top_losses(proba, y, 2).tolist() == [2, 1]
    assert np.allclose(evaluate.image_losses(proba, y), -np.log([0.9, 0.3, 0.01, 0.5]))
    with pytest.raises(ValueError, match="k must be at least 1"):
        evaluate.top_losses(proba, y, 0)


# --------------------------------------------------------------------------- records, findings, CLI

def test_own_records_declare_their_stage_and_findings_read_them():
    base = dict(kind="own", name="07 frozen head on photos", dataset={"name": "photos"},
                model={"base": "mobilenetv2"}, metrics={k: 0.5 for k in ("train_accuracy", "train_loss",
                                                                           "test_accuracy", "test_loss")})
    assert "no params['stage'] field (a own record declares it)" in record_problems(make_record(params={}, **base))
    checks = {"duplicates": {"groups": 2, "files": 4, "across_classes": 1, "across_splits": 1}, "unreadable": 3,
              "near_duplicates": {"threshold": 0.9, "pairs": {"train-val": 0, "train-test": 2, "val-test": 1}}}
    rec = make_record(params={"stage": "frozen"}, extra={"data_checks": checks}, **base)
    assert record_problems(rec) == []
    assert str(findings.data_checks(rec["data_checks"])) == (
        "Identical files: 2 group(s) (1 across classes, 1 across splits); unreadable files: 3. Near-duplicates "
        "(cosine similarity of frozen features at least 0.9): 0 pair(s) between train and val, 2 pair(s) between "
        "train and test, 1 pair(s) between val and test.")
    assert record_problems({**rec, "unknown": [0.5]}) == ["'unknown' is list, not dict"]


def test_cli_train_crop(planted, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--dataset", str(planted["folder"]), "--base", "cnn", "--epochs", "1",
                 "--img-size", "32", "--crop", "pad", "--verbose", "0", "--out", str(out)]) == 0
    run = next(out.iterdir())
    assert run.name.endswith("__croppad")
    record = json.loads(next(run.glob("*_record.json")).read_text())
    assert record["params"]["crop"] == "pad" and record["dataset"]["crop"] == "pad"
    from tlkit.modelfile import read_meta
    from tlkit.predict import Predictor

    model = next(run.glob("*_model.keras"))
    assert read_meta(model)["crop"] == "pad"
    photo = tmp_path / "wide.jpg"
    photo.write_bytes(_jpeg(120, 40))
    predictor = Predictor.load(model)
    assert predictor.read(photo)[:6].max() < 30  # letterboxed as in training: black bands on top
    with pytest.raises(SystemExit):
        main(["train", "--crop", "middle"])
    assert "invalid choice: 'middle'" in capsys.readouterr().err
