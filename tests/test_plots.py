"""tlkit.plots: every function writes a PNG with a title and labelled axes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tlkit import plots

NAMES = ["cat", "dog", "fox"]
CM = [[5, 1, 0], [2, 3, 1], [0, 0, 6]]
HISTORY = {"loss": [1.2, 0.9, 0.7, 0.6], "val_loss": [1.3, 1.0, 0.9, 0.95],
           "accuracy": [0.4, 0.6, 0.7, 0.8], "val_accuracy": [0.35, 0.55, 0.6, 0.6],
           "phase": ["head", "head", "finetune", "finetune"]}
RUNS = pd.DataFrame({"run": ["a", "b", "c"], "params": [1e5, 2e6, 2.5e7],
                     "train_accuracy": [0.9, 0.95, 0.99], "val_accuracy": [0.8, 0.85, 0.9],
                     "test_accuracy": [0.79, 0.86, 0.88], "size": [32, 64, 96],
                     "family": ["x", "x", "y"]})


def assert_png(path):
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert im.size[0] > 100 and im.size[1] > 100


def assert_labelled(ax):
    assert ax.get_title().strip(), "no title"
    assert ax.get_xlabel().strip(), "no x label"
    assert ax.get_ylabel().strip(), "no y label"


def _images(n=6):
    return np.random.default_rng(0).integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)


CHARTS = {
    "learning_curves": lambda p: plots.learning_curves(HISTORY, "curves", path=p),
    "confusion_matrix": lambda p: plots.confusion_matrix(CM, NAMES, path=p),
    "confusion_counts": lambda p: plots.confusion_matrix(CM, NAMES, normalize=False, path=p),
    "per_class_bars": lambda p: plots.per_class_bars(
        {c: {"precision": 0.5, "recall": 0.6, "f1-score": 0.55} for c in NAMES}, path=p),
    "class_accuracy": lambda p: plots.class_accuracy(CM, NAMES, path=p),
    "compare": lambda p: plots.compare(RUNS, "params", "test_accuracy", "run", hue="family",
                                       logx=True, path=p),
    "bars": lambda p: plots.bars(RUNS, "run", "test_accuracy", path=p),
    "lines": lambda p: plots.lines(RUNS, "size", "test_accuracy", hue="family", path=p),
    "split_accuracies": lambda p: plots.split_accuracies(RUNS, path=p),
}


@pytest.mark.parametrize("name", list(CHARTS))
def test_chart_png_title_labels(name, tmp_path):
    path = tmp_path / "sub" / f"{name}.png"
    fig = CHARTS[name](path)
    assert_png(path)
    assert_labelled(fig.axes[0])


def test_learning_curves_content(tmp_path):
    fig = plots.learning_curves(HISTORY, "My run", path=tmp_path / "c.png")
    loss_ax, acc_ax = fig.axes[:2]
    assert fig._suptitle.get_text() == "My run"
    assert_labelled(acc_ax)
    assert loss_ax.get_ylabel() == "loss" and acc_ax.get_ylabel() == "accuracy"
    assert [l.get_label() for l in loss_ax.get_lines() if not l.get_label().startswith("_")] == \
        ["train", "validation"]
    assert list(loss_ax.get_lines()[0].get_ydata()) == HISTORY["loss"]
    assert "finetune" in [t.get_text() for t in loss_ax.texts]  # the phase change is marked


def test_confusion_matrix_normalised():
    fig = plots.confusion_matrix(CM, NAMES)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "0.83" in texts and "1.00" in texts  # 5/6 and 6/6 row-normalised
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == NAMES


@pytest.mark.parametrize("grid", ["samples", "prediction_grid"])
def test_image_grids(grid, tmp_path):
    images = _images()
    y = np.array([0, 1, 2, 0, 1, 2])
    path = tmp_path / f"{grid}.png"
    if grid == "samples":
        fig = plots.samples(images, y, NAMES, n=4, title="Some images", path=path)
        assert fig._suptitle.get_text() == "Some images"
    else:
        proba = np.eye(3)[[0, 1, 2, 1, 1, 0]] * 0.8 + 0.2 / 3
        fig = plots.prediction_grid(images, y, proba, NAMES, title="Preds", path=path)
        assert fig._suptitle.get_text() == "Preds (red: mistakes)"
        titled = [ax for ax in fig.axes if ax.get_title()]
        wrong = [ax for ax in titled if ax.title.get_color() == "red"]
        assert len(titled) == 6 and len(wrong) == 2
        assert all("true:" in ax.get_title() and "pred:" in ax.get_title() for ax in titled)
    assert_png(path)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert titled and all(any(n in ax.get_title() for n in NAMES) for ax in titled)


def test_no_path_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fig = plots.class_accuracy(CM, NAMES)
    assert fig.axes and not list(tmp_path.iterdir())
