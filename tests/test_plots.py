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


# --------------------------------------------------------------------------- legibility

LONG = ["CNN from scratch, 40 epochs", "frozen MobileNetV2 @ 32 px", "frozen MobileNetV2 @ 96 px",
        "frozen MobileNetV2 @ 160 px", "fine-tuned MobileNetV2, last 40 layers", "fine-tuned, 20 layers",
        "fine-tuned, 60 layers", "resnet50 head", "resnet101 head", "vgg16 head", "efficientnetb0 head",
        "efficientnetb3 head", "mobilenetv3large head", "a run name far too long to fit on one line at all"]
_rng = np.random.default_rng(1)
MANY = pd.DataFrame({"run": LONG, "params": np.logspace(5, 8, len(LONG)),
                     "train_accuracy": _rng.uniform(0.7, 1, len(LONG)),
                     "val_accuracy": _rng.uniform(0.6, 0.9, len(LONG)),
                     "test_accuracy": _rng.uniform(0.6, 0.9, len(LONG)),
                     "family": _rng.choice(["ImageNet weights (converted TF-slim checkpoint)",
                                            "trained from scratch"], len(LONG))})
CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MANY_CHARTS = {
    "compare": lambda p: plots.compare(MANY, "params", "test_accuracy", "run", hue="family", logx=True,
                                       title="Test accuracy against parameters", path=p),
    "bars": lambda p: plots.bars(MANY, "run", "test_accuracy", hue="family", path=p),
    "lines": lambda p: plots.lines(MANY.assign(size=np.tile([32, 96], len(LONG) // 2)), "size",
                                   "test_accuracy", hue="family", logx=True, path=p),
    "split_accuracies": lambda p: plots.split_accuracies(MANY, path=p),
    "confusion_matrix": lambda p: plots.confusion_matrix(
        np.eye(10, dtype=int) * 50 + 3, CIFAR, title="A long confusion matrix title that says which model "
        "and which split it shows (rows: true class)", path=p),
    "learning_curves": lambda p: plots.learning_curves(HISTORY, "curves", path=p),
}


def _renderer(fig):
    fig.draw_without_rendering()
    return fig.canvas.get_renderer()


def _texts(fig):
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("name", list(MANY_CHARTS))
def test_legible_at_book_width(name, tmp_path):
    """Scaled to the book's column, every text of a figure keeps at least 9 pt."""
    path = tmp_path / f"{name}.png"
    fig = MANY_CHARTS[name](path)
    assert_labelled(fig.axes[0])
    with Image.open(path) as im:
        width = im.size[0]
    scale = min(1.0, plots.BOOK_WIDTH_PX / width)
    assert width <= 1.15 * plots.BOOK_WIDTH_PX, f"{width} px wide: shown at {scale:.0%}"
    for t in _texts(fig):
        shown_pt = t.get_fontsize() * plots.DPI / 96 * scale  # CSS: 96 px per inch
        assert shown_pt >= 9, (t.get_text(), t.get_fontsize(), shown_pt)


@pytest.mark.parametrize("name", ["bars", "split_accuracies"])
def test_run_labels_do_not_collide(name, tmp_path):
    fig = MANY_CHARTS[name](None)
    renderer = _renderer(fig)
    ax = fig.axes[0]
    ticks = ax.get_yticklabels()
    assert len(ticks) == len(LONG)
    assert all(len(line) <= plots.LABEL_CHARS + 20 for t in ticks for line in t.get_text().split("\n"))
    boxes = [t.get_window_extent(renderer) for t in ticks]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    legend = fig.legends[0].get_window_extent(renderer)
    assert legend.y1 <= ax.get_window_extent(renderer).y0  # below the plot, over no data


def test_confusion_title_clear_of_colour_bar():
    fig = MANY_CHARTS["confusion_matrix"](None)
    renderer = _renderer(fig)
    ax, cbar = fig.axes[0], fig.axes[1]
    title = ax.title.get_window_extent(renderer)
    assert not title.overlaps(cbar.get_tightbbox(renderer))
    assert title.y0 >= ax.get_window_extent(renderer).y1  # above the heat map
    assert 0 <= title.x0 and title.x1 <= fig.bbox.x1  # inside the figure
    assert len(ax.get_title().split("\n")) >= 2  # wrapped, not run on


def test_compare_labels_do_not_overlap():
    """Labels that would overlap become numbers with a key below; few short ones stay put."""
    few = plots.compare(RUNS, "params", "test_accuracy", "run", logx=True)
    assert sorted(t.get_text() for t in few.axes[0].texts) == ["a", "b", "c"]
    fig = MANY_CHARTS["compare"](None)
    renderer = _renderer(fig)
    ax = fig.axes[0]
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    key = " ".join(t.get_text() for t in fig.axes[1].texts)
    assert all(run.split()[0] in key for run in LONG)
    assert ax.get_xscale() == "log"


def test_split_accuracies_rows_and_duplicates():
    df = pd.concat([RUNS, RUNS.iloc[[0]]])  # a run name twice: two rows, not one averaged bar
    fig = plots.split_accuracies(df)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c", "a (2)"]
    train = [c for c in ax.collections if c.get_label() == "train"]
    assert train and np.allclose(train[0].get_offsets()[:, 0], df["train_accuracy"])


def test_lines_logx():
    per_class = pd.DataFrame({"images_per_class": [10, 30, 100, 300] * 2,
                              "test_accuracy": [0.3, 0.5, 0.6, 0.7, 0.2, 0.4, 0.55, 0.65],
                              "model": ["frozen"] * 4 + ["scratch"] * 4})
    fig = plots.lines(per_class, "images_per_class", "test_accuracy", hue="model", logx=True,
                      title="Label efficiency", xlabel="images per class", ylabel="test accuracy")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "30", "100", "300"]
    assert_labelled(ax)
    plain = plots.lines(per_class, "images_per_class", "test_accuracy", None, "t", "x", "y", None)
    assert plain.axes[0].get_xscale() == "linear"  # positional arguments as before


def test_histograms_threshold(tmp_path):
    rng = np.random.default_rng(0)
    fig = plots.histograms({"test images": rng.uniform(0.5, 1, 50), "noise": rng.uniform(0, 0.6, 50)},
                           "Top-class probability (stand-in model)", "top-class probability",
                           threshold=0.5, path=tmp_path / "h.png")
    assert_png(tmp_path / "h.png")
    ax = fig.axes[0]
    assert_labelled(ax)
    assert "stand-in" in ax.get_title()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["test images", "noise", "threshold 0.5"]


def _interval_segments(ax, vertical: bool = True) -> dict[float, float]:
    """The error bars drawn on ``ax``: {centre value: half-length}."""
    from matplotlib.collections import LineCollection

    out = {}
    for c in ax.collections:
        if isinstance(c, LineCollection):
            for seg in c.get_segments():
                (x0, y0), (x1, y1) = seg
                lo, hi = (y0, y1) if vertical else (x0, x1)
                out[round((lo + hi) / 2, 6)] = (hi - lo) / 2
    return out


WITH_N = RUNS.assign(n=[100, 1000, 10000])


@pytest.mark.parametrize("chart, vertical", [
    (lambda: plots.compare(WITH_N, "params", "test_accuracy", "run", n="n"), True),
    (lambda: plots.bars(WITH_N, "run", "test_accuracy", n="n"), True),
    (lambda: plots.bars(WITH_N.assign(run=["a long run name number one", "b", "c"]), "run", "test_accuracy",
                        n="n"), False),
    (lambda: plots.lines(WITH_N, "size", "test_accuracy", hue="family", n="n"), True)])
def test_accuracy_charts_carry_each_runs_interval(chart, vertical):
    from tlkit.findings import interval

    fig = chart()
    drawn = _interval_segments(fig.axes[0], vertical)
    expected = {round(p, 6): interval(p, k) for p, k in zip(WITH_N["test_accuracy"], WITH_N["n"])}
    assert drawn.keys() == expected.keys()
    for p, half in expected.items():
        assert drawn[p] == pytest.approx(half, rel=1e-6)
    assert not _interval_segments(plots.bars(WITH_N, "run", "test_accuracy").axes[0])  # without n, none


def test_no_chart_mixes_training_set_sizes():
    mixed = RUNS.assign(train_images=[45000, 1350, 45000])
    for chart in (lambda d: plots.compare(d, "params", "test_accuracy", "run"),
                  lambda d: plots.bars(d, "run", "test_accuracy"), lambda d: plots.split_accuracies(d)):
        with pytest.raises(ValueError, match="mix runs on 1,350 and 45,000 training images"):
            chart(mixed)
        chart(mixed[mixed["train_images"] == 45000])  # one size: drawn
