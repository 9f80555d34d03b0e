"""tlkit.evaluate: metrics on hand-made probabilities, gaps, 'unknown', evaluate()."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn import metrics as skm

from tlkit.data import Dataset
from tlkit.evaluate import (diagnose, evaluate, gaps, images_id, pack_correct, per_class_accuracy,
                            predict_labels, score, summarize, top_k_accuracy, unpack_correct)

NAMES = ["cat", "dog", "fox"]
Y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
P = np.array([
    [0.7, 0.2, 0.1],   # cat -> cat
    [0.5, 0.4, 0.1],   # cat -> cat
    [0.2, 0.5, 0.3],   # cat -> dog (cat ranks 3rd)
    [0.1, 0.8, 0.1],   # dog -> dog
    [0.6, 0.3, 0.1],   # dog -> cat (dog 2nd)
    [0.1, 0.1, 0.8],   # fox -> fox
    [0.3, 0.3, 0.4],   # fox -> fox
    [0.45, 0.1, 0.45],  # fox -> cat (tie broken by argmax: first), fox 2nd
])


def test_score_by_hand():
    s = score(Y, P, NAMES)
    pred = P.argmax(1)
    assert pred.tolist() == [0, 0, 1, 1, 0, 2, 2, 0]
    assert s["n"] == 8
    assert s["accuracy"] == pytest.approx(5 / 8)
    assert s["loss"] == pytest.approx(-np.mean(np.log(P[np.arange(8), Y])))
    assert s["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [1, 0, 2]]
    # k is capped at classes - 1: top-2 here; sample 3 ranks its true class 3rd
    assert "top2_accuracy" in s and "top5_accuracy" not in s
    assert s["top2_accuracy"] == pytest.approx(7 / 8)
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(Y, pred, average=avg, zero_division=0)
        assert s[f"precision_{avg}"] == pytest.approx(p)
        assert s[f"recall_{avg}"] == pytest.approx(r)
        assert s[f"f1_{avg}"] == pytest.approx(f)
    # macro recall by hand: (2/3 + 1/2 + 2/3) / 3
    assert s["recall_macro"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    # macro precision by hand: cat 2/4, dog 1/2, fox 2/2
    assert s["precision_macro"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert s["per_class"]["fox"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1-score": 0.8, "support": 3})


def test_score_with_absent_class_and_topk():
    names = [f"c{i}" for i in range(6)]
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(6), size=20)
    y = rng.integers(0, 5, 20)  # class 5 never occurs
    s = score(y, proba, names, k=3)
    assert s["top3_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, proba, k=3, labels=range(6)))
    ranks = (proba > proba[np.arange(20), y][:, None]).sum(1)
    assert s["top3_accuracy"] == pytest.approx((ranks < 3).mean())
    assert s["per_class"]["c5"]["support"] == 0
    assert np.asarray(s["confusion_matrix"]).shape == (6, 6)


def test_gaps_signs():
    train = {"accuracy": 0.95, "loss": 0.2}
    val = {"accuracy": 0.80, "loss": 0.6}
    test = {"accuracy": 0.75, "loss": 0.7}
    g = gaps(train, val, test)
    assert g["gap_train_test_accuracy"] == pytest.approx(0.20)
    assert g["gap_train_val_accuracy"] == pytest.approx(0.15)
    assert g["gap_test_train_loss"] == pytest.approx(0.5)
    assert g["gap_val_train_loss"] == pytest.approx(0.4)
    assert all(v > 0 for v in g.values())  # overfitting: all positive
    under = gaps({"accuracy": 0.6, "loss": 1.0}, None, {"accuracy": 0.65, "loss": 0.9})
    assert set(under) == {"gap_train_test_accuracy", "gap_test_train_loss"}
    assert under["gap_train_test_accuracy"] < 0 and under["gap_test_train_loss"] < 0


def test_predict_labels_unknown():
    proba = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.1, 0.6, 0.3]])
    assert predict_labels(proba, NAMES) == ["cat", "cat", "dog"]
    assert predict_labels(proba, NAMES, threshold=0.5) == ["cat", "unknown", "dog"]
    assert predict_labels(proba, NAMES, threshold=0.6) == ["cat", "unknown", "dog"]  # >= keeps
    assert predict_labels(proba, NAMES, threshold=1.0) == ["unknown"] * 3
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            predict_labels(proba, NAMES, threshold=bad)


def test_per_class_accuracy():
    acc = per_class_accuracy([[3, 1, 0], [0, 0, 0], [1, 1, 2]])
    assert acc.tolist() == pytest.approx([0.75, 0.0, 0.5])


def test_diagnose():
    assert diagnose(0.40, 0.38, 4)[0] == "underfitting"  # chance 0.25, halfway 0.625
    assert diagnose(0.99, 0.80, 4)[0] == "overfitting"
    assert diagnose(0.90, 0.88, 4)[0] == "good fit"
    assert "augmentation" in diagnose(0.99, 0.80, 4)[1]


def test_evaluate_on_every_split():
    """evaluate() with a fixed 'model': a softmax layer over given logits."""
    rng = np.random.default_rng(0)
    k = 3

    def split(n):
        y = rng.integers(0, k, n)
        x = rng.normal(size=(n, k)).astype("float32")
        x[np.arange(n), y] += 2.0  # mostly right
        return x, y

    (xtr, ytr), (xv, yv), (xte, yte) = split(40), split(10), split(12)
    ds = Dataset("toy", "test", NAMES, xtr, ytr, xte, yte, xv, yv)
    inputs = keras.Input((k,))
    model = keras.Model(inputs, keras.layers.Softmax()(inputs))
    res = evaluate(model, ds, max_train=25, seed=1)
    assert set(res) == {"train", "val", "test", "summary"}
    assert res["train"]["n"] == 25 and res["val"]["n"] == 10 and res["test"]["n"] == 12
    expected = score(yte, np.exp(xte) / np.exp(xte).sum(1, keepdims=True), NAMES)
    assert res["test"]["accuracy"] == pytest.approx(expected["accuracy"])
    assert res["test"]["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    summ = res["summary"]
    for key in ("test_accuracy", "val_accuracy", "train_accuracy", "test_loss", "train_loss",
                "val_loss", "test_f1_macro", "test_top2_accuracy", "gap_train_val_accuracy"):
        assert key in summ, key
    assert summ == summarize({s: res[s] for s in ("train", "val", "test")})
    # cached features stand in for images through `inputs`
    res2 = evaluate(model, ds, inputs={"test": xte * 0 + np.eye(k, dtype="float32")[yte] * 10})
    assert res2["test"]["accuracy"] == 1.0
    # every split keeps which images were right, and which images: the test images are the
    # same whether the model read them or features of them, so the two scorings pair up
    for split in ("train", "val", "test"):
        right = unpack_correct(res[split]["correct"], res[split]["n"])
        assert right.mean() == pytest.approx(res[split]["accuracy"])
    assert res["test"]["images"] == res2["test"]["images"] == images_id(xte, yte)
    assert unpack_correct(res2["test"]["correct"], 12).all()
    assert res["val"]["images"] != res["test"]["images"]
    assert res["train"]["images"] == evaluate(model, ds, max_train=25, seed=1)["train"]["images"]
    assert res["train"]["images"] != evaluate(model, ds, max_train=25, seed=2)["train"]["images"]


def test_per_image_results_are_compact_and_checked():
    right = np.random.default_rng(0).random(10000) < 0.7
    bits = pack_correct(right)
    assert len(bits) == 1668  # 1,250 bytes in base64
    assert (unpack_correct(bits, 10000) == right).all()
    assert (unpack_correct(pack_correct(right[:13]), 13) == right[:13]).all()
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_correct(bits, 20000)
    s = score(Y, P, NAMES, images="abc")
    assert unpack_correct(s["correct"], 8).tolist() == [True, True, False, True, False, True, True, False]
    assert s["images"] == "abc" and score(Y, P, NAMES)["images"] is None


def test_images_id_follows_images_labels_and_order():
    x = np.random.default_rng(0).integers(0, 255, (6, 4, 4, 3), dtype=np.uint8)
    y = np.arange(6) % 3
    assert images_id(x, y) == images_id(x.copy(), y.copy())
    assert images_id(x[::-1], y[::-1]) != images_id(x, y)
    assert images_id(x, (y + 1) % 3) != images_id(x, y)
    x2 = x.copy()
    x2[0, 0, 0, 0] ^= 1
    assert images_id(x2, y) != images_id(x, y)


# --------------------------------------------------------------------------- two classes

def test_score_two_classes():
    """Cats vs dogs: scikit-learn reads two-class labels as binary; score must not care."""
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p1 = np.array([0.1, 0.3, 0.8, 0.9, 0.6, 0.4, 0.7])  # probability of class 1
    proba = np.stack([1 - p1, p1], 1)
    s = score(y, proba, ["cat", "dog"])
    assert s["accuracy"] == pytest.approx(5 / 7)
    assert "top1_accuracy" in s and s["top1_accuracy"] == pytest.approx(s["accuracy"])
    assert s["confusion_matrix"] == [[2, 1], [1, 3]]
    assert s["per_class"]["dog"]["recall"] == pytest.approx(3 / 4)
    assert s["loss"] == pytest.approx(-np.mean(np.log(proba[np.arange(7), y])))
    only_one = score(np.zeros(3, int), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), ["a", "b"])
    assert only_one["top1_accuracy"] == pytest.approx(2 / 3)  # a split with one class present


def test_top_k_accuracy_matches_scikit_learn():
    rng = np.random.default_rng(3)
    for k_classes, k in ((3, 2), (6, 3), (10, 5)):
        proba = rng.dirichlet(np.ones(k_classes), 50)
        y = rng.integers(0, k_classes, 50)
        assert top_k_accuracy(y, proba, k) == pytest.approx(
            skm.top_k_accuracy_score(y, proba, k=k, labels=range(k_classes)))


@pytest.fixture(scope="module")
def two_class_ds():
    from tlkit.data import load_dataset

    return load_dataset("synthetic", synthetic_classes=2, synthetic_per_class=16,
                        synthetic_size=32, seed=0)


def test_two_classes_train_evaluate_probe_and_plots(two_class_ds, tmp_path):
    """Two classes end to end: build, fit, evaluate, probe and every per-class plot."""
    from tlkit import plots
    from tlkit.features import probe
    from tlkit.models import build_classifier
    from tlkit.train import fit_dataset

    ds = two_class_ds
    assert ds.num_classes == 2
    clf = build_classifier("cnn", 2, input_shape=ds.image_shape, img_size=32, weights="none")
    result = fit_dataset(clf, ds, epochs=1, batch_size=16, verbose=0)
    assert len(result.history["loss"]) == 1 and np.isfinite(result.history["loss"][0])
    res = evaluate(clf.model, ds)
    assert set(res) == {"train", "val", "test", "summary"}
    assert np.asarray(res["test"]["confusion_matrix"]).shape == (2, 2)
    assert res["summary"]["test_top1_accuracy"] == pytest.approx(res["test"]["accuracy"])
    assert 0 <= res["summary"]["test_accuracy"] <= 1
    run = probe("cnn", ds, img_size=32, weights="none", epochs=2, batch_size=16)
    assert run.head.output_shape[-1] == 2
    assert set(run.evaluation["test"]["per_class"]) == {"disc", "square"}
    proba = np.asarray(clf.model.predict(ds.x_test, verbose=0))
    test = res["test"]
    figures = {
        "cm.png": plots.confusion_matrix(test["confusion_matrix"], ds.class_names,
                                         path=tmp_path / "cm.png"),
        "grid.png": plots.prediction_grid(ds.x_test, ds.y_test, proba, ds.class_names, n=4,
                                          path=tmp_path / "grid.png"),
        "bars.png": plots.per_class_bars(test["per_class"], path=tmp_path / "bars.png"),
        "acc.png": plots.class_accuracy(test["confusion_matrix"], ds.class_names,
                                        path=tmp_path / "acc.png"),
        "samples.png": plots.samples(ds.x_train, ds.y_train, ds.class_names, n=4,
                                     path=tmp_path / "samples.png"),
    }
    for name, fig in figures.items():
        assert (tmp_path / name).stat().st_size > 1000, name
        assert fig.axes
    titles = [ax.get_title() for ax in figures["grid.png"].axes if ax.get_title()]
    assert len(titles) == 4
    assert all(t.split("\n")[0].split(": ")[1] in ds.class_names for t in titles)


# --------------------------------------------------------------------------- train accuracy of a head

def test_head_train_accuracy_is_on_the_images_it_trained_on(monkeypatch):
    """A head trained on a share of the training split (notebook 5's data-size ablation) is
    scored on exactly that share: the rows fit_head trained on are the rows evaluate_head scores."""
    from tlkit import evaluate as evaluate_module
    from tlkit import features

    rng = np.random.default_rng(0)
    n = 60
    y_train = np.repeat(np.arange(3), n // 3)
    # column 0 of a feature row is the row's index in the training split: it says which image it is
    x_train = np.column_stack([np.arange(n), rng.normal(size=(n, 3))]).astype("float32")
    x_val, y_val = rng.normal(size=(9, 4)).astype("float32"), np.arange(9) % 3
    x_test, y_test = rng.normal(size=(12, 4)).astype("float32"), np.arange(12) % 3
    ds = Dataset("toy", "test", NAMES, x_train, y_train, x_test, y_test, x_val, y_val)
    feats = features.Features("toy", 8, "random", {"train": x_train, "val": x_val, "test": x_test})

    trained_on, scored = [], []
    real_fit, real_predict = features.fit, evaluate_module.predict_proba

    def spy_fit(head, x, y, **kwargs):
        trained_on.append(x[:, 0].astype(int))
        return real_fit(head, x, y, **kwargs)

    def spy_predict(model, x, batch_size=256):
        scored.append(np.asarray(x))
        return real_predict(model, x, batch_size)

    monkeypatch.setattr(features, "fit", spy_fit)
    monkeypatch.setattr(evaluate_module, "predict_proba", spy_predict)
    head, _ = features.fit_head(feats, ds, epochs=1, train_fraction=0.3, seed=3, use_flips=False)
    ev = features.evaluate_head(head, feats, ds, train_fraction=0.3, seed=3)
    rows = scored[0][:, 0].astype(int)  # evaluate() scores train, then val, then test
    assert len(trained_on[0]) == 18 and ev["train"]["n"] == 18
    assert sorted(rows) == sorted(trained_on[0])
    assert set(rows) != set(features.train_indices(y_train, 0.3, seed=4))  # a share, not any 18 rows
    expected = score(y_train[rows], real_predict(head, x_train[rows]), NAMES)
    assert ev["train"]["accuracy"] == pytest.approx(expected["accuracy"])
    assert ev["val"]["n"] == 9 and ev["test"]["n"] == 12  # held-out splits are scored whole
    full = features.evaluate_head(head, feats, ds, seed=3)
    assert full["train"]["n"] == n  # the default: the whole training split
