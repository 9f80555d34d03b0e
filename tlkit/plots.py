"""Plots: learning curves, confusion matrices, prediction grids, per-class and comparison
charts. Every function returns the figure and saves a PNG when given a path; in a notebook
the figure shows inline.

Figures are sized for the book's content column (about :data:`BOOK_WIDTH_PX` pixels): at
most :data:`WIDTH` inches wide at :data:`DPI`, so that text keeps about 9 pt or more when the
page scales them to the column. Long run labels are wrapped and many runs are drawn as
horizontal rows; legends sit below the axes, where they cover no data.

Accuracy charts draw each accuracy's 95% interval when told how many images it was measured
on (``n``: :func:`tlkit.findings.interval`), and a chart of runs refuses to mix runs trained on
different numbers of images (:func:`one_training_size`): their accuracies are not comparable.
"""
from __future__ import annotations

import functools
import math
import textwrap
from pathlib import Path
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib import ticker
from matplotlib.container import BarContainer

from tlkit.evaluate import per_class_accuracy
from tlkit.markup import one_line

DPI = 110  # PNG resolution (figure inches × DPI = pixels)
WIDTH = 7.0  # inches: a figure's width, about the book's column at DPI
BOOK_WIDTH_PX = 750  # the book's content column, to which wider figures are scaled down
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9.5,
         "ytick.labelsize": 9.5, "legend.fontsize": 9.5, "legend.title_fontsize": 9.5,
         "figure.titlesize": 12}
SMALL = 8.5  # annotations (bar values, cell values, image titles): still ≥ 9 pt displayed
LABEL_CHARS = 30  # run labels wrap at this many characters


def _styled(func: Callable) -> Callable:
    """Make a plotting function's figure with the course's font sizes."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        # Only STYLE's keys are set and restored: plt.rc_context restores every rcParam, and
        # restoring the backend makes Jupyter's inline backend drop later cells' figures.
        old = {k: plt.rcParams[k] for k in STYLE}
        plt.rcParams.update(STYLE)
        try:
            return func(*args, **kwargs)
        finally:
            plt.rcParams.update(old)
    return wrapper


def _figure(w: float, h: float, **kwargs):
    return plt.subplots(figsize=(min(w, WIDTH), h), layout="constrained", **kwargs)


def _finish(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return fig


def _wrap(text, width: int = LABEL_CHARS) -> str:
    return textwrap.fill(str(text), width, break_long_words=False) or str(text)


def _title_chars(inches: float, fontsize: float) -> int:
    """About how many characters of a title fit in ``inches``."""
    return max(20, int(inches * 72 / (fontsize * 0.55)))


def _set_title(ax, title: str, inches: float | None = None) -> None:
    size = plt.rcParams["axes.titlesize"]
    size = size if isinstance(size, (int, float)) else 11
    width = inches or ax.figure.get_figwidth() - 0.6
    ax.set_title(textwrap.fill(title, _title_chars(width, size)))


def _unique(labels: Sequence) -> list[str]:
    """Labels made unique (a repeated one gets `` (2)``...): each row stays its own bar."""
    seen: dict[str, int] = {}
    out = []
    for lab in map(str, labels):
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
    return out


def _is_text(values) -> bool:
    return not np.issubdtype(np.asarray(values).dtype, np.number)


def _horizontal(labels: Sequence, n_max: int = 6, chars: int = 14) -> bool:
    """Whether categories read better as rows: many of them, or long ones."""
    labels = [str(x) for x in labels]
    return len(labels) > n_max or max((len(x) for x in labels), default=0) > chars


def _legend_below(fig: plt.Figure, ax, title: str | None = None) -> None:
    """Move an axes' legend below the plot, in as many columns as fit."""
    leg = ax.get_legend()
    if leg is None:
        return
    handles, texts = leg.legend_handles, [t.get_text() for t in leg.get_texts()]
    title = leg.get_title().get_text() if title is None else title
    leg.remove()
    labels = [_wrap(t, 30) for t in texts]
    longest = max((len(t) for t in texts), default=1)
    ncol = max(1, min(len(labels), int(fig.get_figwidth() * 72 / (9.5 * 0.6 * (min(longest, 30) + 5)))))
    fig.legend(handles, labels, title=title or None, loc="outside lower center", ncol=ncol,
               frameon=False)


def intervals(df, y: str, n: str | None) -> np.ndarray | None:
    """The 95% interval half-width of each row's accuracy ``df[y]``, measured on ``df[n]``
    images (:func:`tlkit.findings.interval`); None without ``n``."""
    if n is None:
        return None
    from tlkit.findings import interval

    return np.array([interval(float(p), int(k)) if p == p and k == k else np.nan for p, k in zip(df[y], df[n])])


def one_training_size(df, column: str = "train_images") -> None:
    """Refuse a chart of runs trained on different numbers of images (``df[column]``):
    their accuracies are not comparable, so each size gets its own chart."""
    if column in df:
        sizes = sorted({int(v) for v in df[column].dropna()})
        if len(sizes) > 1:
            raise ValueError(f"one chart would mix runs on {' and '.join(f'{s:,}' for s in sizes)} training "
                             "images, whose accuracies are not comparable: draw one chart per size")


def _value_format(values) -> str:
    top = float(np.nanmax(np.abs(np.asarray(values, dtype=float)))) if len(values) else 0.0
    return "%.0f" if top >= 100 else "%.1f" if top >= 10 else "%.2f"


@_styled
def learning_curves(history: dict, title: str = "Learning curves", path: str | Path | None = None
                    ) -> plt.Figure:
    """Loss and accuracy per epoch, train against validation; phases shaded."""
    fig, axes = _figure(WIDTH, 3.3, ncols=2)
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        if metric in history:
            ax.plot(epochs, history[metric], "o-", label="train")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "s--", label="validation")
        phases = history.get("phase", [])
        for i in range(1, len(phases)):
            if phases[i] != phases[i - 1]:
                ax.axvline(i + 0.5, color="grey", lw=1, ls=":")
                ax.text(i + 0.6, ax.get_ylim()[1], phases[i], va="top", fontsize=SMALL, color="grey")
        ax.set(xlabel="epoch", ylabel=metric, title=metric.capitalize())
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.legend()
    fig.suptitle(textwrap.fill(title, _title_chars(WIDTH, 12)))
    return _finish(fig, path)


@_styled
def confusion_matrix(confusion: Sequence[Sequence[int]], class_names: Sequence[str],
                     title: str = "Confusion matrix (rows: true class)", normalize: bool = True,
                     path: str | Path | None = None) -> plt.Figure:
    """A heat map of the confusion matrix, row-normalised by default.

    The title sits above the heat map and is wrapped to its width; the colour bar is
    shorter than the heat map, so the two never meet.
    """
    cm = np.asarray(confusion, dtype=float)
    if normalize:
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(class_names)
    side = min(5.0, max(3.0, 0.5 * n))  # the heat map's side, inches
    longest = max((len(str(c)) for c in class_names), default=1)
    fig, ax = _figure(side + 1.6 + 0.07 * longest, side + 1.4 + 0.05 * longest)
    annot = side / n >= 0.4
    sns.heatmap(cm, annot=annot, fmt=".2f" if normalize else ".0f", cmap="Blues", ax=ax,
                xticklabels=class_names, yticklabels=class_names, cbar=True, square=True,
                annot_kws={"fontsize": SMALL},
                cbar_kws={"label": "fraction of true class" if normalize else "images",
                          "shrink": 0.75, "pad": 0.04})
    ax.set(xlabel="predicted class", ylabel="true class")
    if longest > 4 or n > 8:
        ax.tick_params(axis="x", labelrotation=45)
        for t in ax.get_xticklabels():
            t.set_ha("right")
            t.set_rotation_mode("anchor")
    ax.tick_params(axis="y", labelrotation=0)
    _set_title(ax, title, side)
    return _finish(fig, path)


def _axes_grid(n: int, cell: tuple[float, float], cols: int | None = None):
    """A figure of ``n`` image cells (``cell``: inches each, scaled down to fit the width),
    axes off; returns (fig, axes of the cells in order)."""
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = max(1, int(np.ceil(n / cols)))
    scale = min(1.0, WIDTH / (cell[0] * cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cell[0] * cols * scale, cell[1] * rows * scale),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def _grid(images: np.ndarray, n: int, seed: int, cell: tuple[float, float]):
    """A figure of up to ``n`` random images, one per axis; returns (fig, [(ax, index)])."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(images), min(n, len(images)), replace=False)
    fig, axes = _axes_grid(len(idx), cell)
    for ax, i in zip(axes, idx):
        ax.imshow(images[i])
    return fig, list(zip(axes, idx))


@_styled
def samples(images: np.ndarray, labels: Sequence[int], class_names: Sequence[str], n: int = 16,
            title: str = "Sample images", seed: int = 0, path: str | Path | None = None) -> plt.Figure:
    """A grid of random images with their class names."""
    fig, cells = _grid(images, n, seed, (1.7, 1.9))
    for ax, i in cells:
        ax.set_title(class_names[int(labels[i])], fontsize=SMALL)
    fig.suptitle(title)
    return _finish(fig, path)


@_styled
def prediction_grid(images: np.ndarray, y_true: Sequence[int], proba: np.ndarray,
                    class_names: Sequence[str], n: int = 16, title: str = "Predictions",
                    seed: int = 0, path: str | Path | None = None) -> plt.Figure:
    """A grid of images with true and predicted classes; mistakes in red."""
    fig, cells = _grid(images, n, seed, (1.75, 2.0))
    for ax, i in cells:
        pred = int(np.argmax(proba[i]))
        ok = pred == int(y_true[i])
        ax.set_title(f"true: {class_names[int(y_true[i])]}\npred: {class_names[pred]} "
                     f"({proba[i][pred]:.0%})", fontsize=SMALL, color="black" if ok else "red")
    fig.suptitle(f"{title} (red: mistakes)")
    return _finish(fig, path)


def _image(ds, ref: dict) -> np.ndarray:
    """The image a :meth:`tlkit.data.Dataset.about` dict names."""
    return getattr(ds, f"x_{ref['split']}")[ref["index"]]


def _short(file: str, chars: int = 22) -> str:
    """A file's name, shortened in the middle to ``chars``."""
    name = Path(file).name
    return name if len(name) <= chars else f"{name[:chars // 2 - 1]}…{name[-(chars // 2):]}"


@_styled
def top_losses(ds, rows: Sequence[dict], title: str = "The images with the highest loss",
               path: str | Path | None = None) -> plt.Figure:
    """The images of :func:`tlkit.evaluate.top_losses_in`, in order, each with its given
    label, the model's guess and its probability, its loss and file name: where mislabelled
    photos show up."""
    fig, axes = _axes_grid(len(rows), (1.75, 2.3))
    for ax, r in zip(axes, rows):
        ax.imshow(_image(ds, r))
        ax.set_title(f"given: {r['label']}\nmodel: {r['predicted']} ({r['probability']:.0%})\n"
                     f"loss {r['loss']:.1f} · {r['split']}\n{_short(r['file'])}", fontsize=SMALL,
                     color="red" if r["predicted"] != r["label"] else "black")
    fig.suptitle(textwrap.fill(f"{title} (red: the model disagrees with the label)", _title_chars(WIDTH, 12)))
    return _finish(fig, path)


@_styled
def near_duplicates(ds, pairs: Sequence[dict], title: str, n: int = 8,
                    path: str | Path | None = None) -> plt.Figure:
    """The first ``n`` pairs of :func:`tlkit.features.leaks`, side by side, two pairs a row,
    each under its splits, files and similarity."""
    pairs = list(pairs)[:n]
    rows = max(1, math.ceil(len(pairs) / 2))
    fig = plt.figure(figsize=(WIDTH, 2.1 * rows + 0.4), layout="constrained")
    for sub, p in zip(fig.subfigures(rows, 2, squeeze=False).flat, pairs):
        for ax, ref in zip(sub.subplots(1, 2), (p["a"], p["b"])):
            ax.imshow(_image(ds, ref))
            ax.axis("off")
            ax.set_title(f"{ref['split']}: {ref['label']}\n{_short(ref['file'], 18)}", fontsize=SMALL)
        sub.suptitle(f"similarity {p['similarity']:.3f}", fontsize=SMALL)
    if not pairs:
        fig.text(0.5, 0.5, "no pair above the threshold", ha="center", va="center")
    fig.suptitle(textwrap.fill(title, _title_chars(WIDTH, 12)))
    return _finish(fig, path)


@_styled
def threshold_curve(curve: dict, chosen: float, target: float,
                    title: str = "Precision and coverage against the 'unknown' threshold",
                    path: str | Path | None = None) -> plt.Figure:
    """Precision (accuracy on the images answered) and coverage (share answered) at every
    threshold of :func:`tlkit.evaluate.threshold_curve`; the precision asked for and the
    threshold chosen for it marked."""
    fig, ax = _figure(6.5, 3.8)
    ax.plot(curve["threshold"], curve["precision"], "-", label="precision (answered images)")
    ax.plot(curve["threshold"], curve["coverage"], "--", label="coverage (share answered)")
    ax.axhline(target, color="grey", lw=1, ls=":", label=f"precision asked for, {target:g}")
    ax.axvline(chosen, color="black", lw=1.2, ls="-.", label=f"threshold chosen, {chosen:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="threshold (top-class probability)", ylabel="share of images")
    _set_title(ax, title)
    ax.legend()
    _legend_below(fig, ax, title="")
    return _finish(fig, path)


@_styled
def per_class_bars(per_class: dict, title: str = "Per-class precision, recall and F1",
                   path: str | Path | None = None) -> plt.Figure:
    """Grouped bars of precision, recall and F1 for every class (rows when there are many)."""
    names = list(per_class)
    metrics = ("precision", "recall", "f1-score")
    pos = np.arange(len(names))
    rows = len(names) > 12
    fig, ax = _figure(WIDTH, 0.45 * len(names) + 1.5 if rows else 3.8)
    for j, m in enumerate(metrics):
        values = [per_class[c][m] for c in names]
        if rows:
            ax.barh(pos + (j - 1) * 0.27, values, 0.27, label=m)
        else:
            ax.bar(pos + (j - 1) * 0.27, values, 0.27, label=m)
    if rows:
        ax.set_yticks(pos, names)
        ax.invert_yaxis()
        ax.set(xlim=(0, 1.05), xlabel="score", ylabel="class")
    else:
        ax.set_xticks(pos, names, rotation=30, ha="right", rotation_mode="anchor")
        ax.set(ylim=(0, 1.05), ylabel="score", xlabel="class")
    ax.legend()
    _set_title(ax, title)
    _legend_below(fig, ax, title="")
    return _finish(fig, path)


@_styled
def class_accuracy(confusion: Sequence[Sequence[int]], class_names: Sequence[str],
                   title: str = "Accuracy per class", path: str | Path | None = None) -> plt.Figure:
    """Horizontal bars of per-class accuracy (recall), sorted."""
    acc = per_class_accuracy(confusion)
    order = np.argsort(acc)
    fig, ax = _figure(6, 0.35 * len(class_names) + 1.2)
    ax.barh([str(class_names[i]) for i in order], acc[order], color="tab:blue")
    ax.set(xlim=(0, 1), xlabel="accuracy (recall)", ylabel="class")
    _set_title(ax, title)
    return _finish(fig, path)


def _labels_collide(fig: plt.Figure, ax, texts: list) -> bool:
    """Whether point labels overlap each other or leave the axes."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    inside = ax.get_window_extent(renderer)
    for i, b in enumerate(boxes):
        if b.x1 > inside.x1 or b.y1 > inside.y1 or b.x0 < inside.x0 or b.y0 < inside.y0:
            return True
        if any(b.overlaps(c) for c in boxes[i + 1:]):
            return True
    return False


@_styled
def compare(df, x: str, y: str, label: str, hue: str | None = None, title: str = "",
            xlabel: str | None = None, ylabel: str | None = None, logx: bool = False,
            n: str | None = None, path: str | Path | None = None) -> plt.Figure:
    """A labelled scatter plot of one column against another (e.g. accuracy vs parameters).

    Points carry their labels where these fit; where they would overlap, the points carry
    numbers and a key below the plot names them. ``n``: the column of how many images each
    accuracy ``y`` was measured on; each point then carries its 95% interval.
    """
    one_training_size(df)
    df = df.reset_index(drop=True)
    labels = _unique(df[label])
    fig, (ax, key) = plt.subplots(2, 1, figsize=(WIDTH, 5.0), layout="constrained",
                                  height_ratios=[4.0, 0.05])
    key.axis("off")
    err = intervals(df, y, n)
    if err is not None:
        ax.errorbar(df[x], df[y], yerr=err, fmt="none", ecolor="0.45", elinewidth=1.2, capsize=4, zorder=1)
    sns.scatterplot(data=df, x=x, y=y, hue=hue, style=hue, s=70, ax=ax, zorder=2)
    if logx:
        ax.set_xscale("log")
    ax.margins(x=0.08, y=0.1)
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y)
    _set_title(ax, title or f"{y} against {x}")
    if hue is not None:
        _legend_below(fig, ax)
    texts = [ax.annotate(lab, (px, py), fontsize=SMALL, xytext=(5, 3), textcoords="offset points")
             for lab, px, py in zip(labels, df[x], df[y])]
    if _labels_collide(fig, ax, texts):
        for t in texts:
            t.remove()
        for i, (px, py) in enumerate(zip(df[x], df[y]), 1):
            ax.annotate(str(i), (px, py), fontsize=9, fontweight="bold", xytext=(5, 3),
                        textcoords="offset points")
        cols = 2
        rows = math.ceil(len(labels) / cols)
        fig.set_figheight(fig.get_figheight() + 0.22 * rows)
        ax.get_gridspec().set_height_ratios([4.0, 0.22 * rows])
        for i, lab in enumerate(labels):
            key.text((i // rows) / cols, 1 - (i % rows + 0.5) / rows, f"{i + 1}  {_wrap(lab, 40)}",
                     fontsize=9.5, va="center", transform=key.transAxes)
    return _finish(fig, path)


@_styled
def bars(df, x: str, y: str, hue: str | None = None, title: str = "", xlabel: str | None = None,
         ylabel: str | None = None, n: str | None = None, path: str | Path | None = None) -> plt.Figure:
    """Labelled bars of one column per row (e.g. accuracy per model or per input size).

    Many categories, or long ones, are drawn as horizontal rows with wrapped labels. ``n``:
    the column of how many images each accuracy ``y`` was measured on; each bar then carries
    its 95% interval, and its value is written inside it.
    """
    one_training_size(df)
    data = df.copy()
    text = _is_text(data[x])
    if text:
        data[x] = [_wrap(v) for v in data[x]]
    rows = text and _horizontal(df[x])
    n_cats = data[x].nunique()
    n_hue = int(data.groupby(x, sort=False)[hue].nunique().max()) if hue else 1  # bars per category
    if rows:
        lines_per = max(str(v).count("\n") + 1 for v in data[x])
        fig, ax = _figure(WIDTH, 1.3 + n_cats * max(0.28 * n_hue, 0.22 * lines_per) + 0.3 * (hue is not None))
        sns.barplot(data=data, x=y, y=x, hue=hue, orient="h", errorbar=None, ax=ax)
        ax.set(xlabel=ylabel or y, ylabel=xlabel or x)
        ax.margins(x=0.12)
    else:
        fig, ax = _figure(max(5.0, 0.6 * n_cats * n_hue + 1.5), 3.8)
        sns.barplot(data=data, x=x, y=y, hue=hue, errorbar=None, ax=ax)
        ax.set(xlabel=xlabel or x, ylabel=ylabel or y)
        ax.margins(y=0.1)
    fmt = _value_format(data[y])
    err = intervals(data, y, n)
    for c in ax.containers:
        if err is None:
            ax.bar_label(c, fmt=fmt, fontsize=SMALL, padding=2)
        else:
            ax.bar_label(c, fmt=fmt, fontsize=SMALL, label_type="center", color="white", fontweight="bold")
    if err is not None:
        _bar_intervals(ax, data, x, y, err, rows)
    _set_title(ax, title or f"{y} by {x}")
    _legend_below(fig, ax)
    return _finish(fig, path)


def _bar_intervals(ax, data, x: str, y: str, err: np.ndarray, rows: bool) -> None:
    """Draw each bar's interval: a bar is matched to its row by category and value."""
    ticks = ax.get_yticklabels() if rows else ax.get_xticklabels()
    by_tick = {round(pos): t.get_text() for pos, t in zip(ax.get_yticks() if rows else ax.get_xticks(), ticks)}
    cats, values = [str(v) for v in data[x]], np.asarray(data[y], dtype=float)
    for c in [c for c in ax.containers if isinstance(c, BarContainer)]:  # not the error bars drawn here
        for patch in c:
            pos = patch.get_y() + patch.get_height() / 2 if rows else patch.get_x() + patch.get_width() / 2
            value = patch.get_width() if rows else patch.get_height()
            cat = by_tick.get(round(pos))
            match = [i for i, k in enumerate(cats) if k == cat and np.isfinite(values[i])]
            if not match or not np.isfinite(value):
                continue
            i = min(match, key=lambda j: abs(values[j] - value))
            kw = dict(fmt="none", ecolor="0.2", elinewidth=1.2, capsize=4, zorder=3)
            if rows:
                ax.errorbar(value, pos, xerr=err[i], **kw)
            else:
                ax.errorbar(pos, value, yerr=err[i], **kw)


@_styled
def lines(df, x: str, y: str, hue: str | None = None, title: str = "", xlabel: str | None = None,
          ylabel: str | None = None, path: str | Path | None = None, logx: bool = False,
          n: str | None = None) -> plt.Figure:
    """Lines of one column against another, one per ``hue`` (e.g. accuracy vs input size).

    ``logx`` puts x on a log scale (e.g. images per class), ticked at the data's x values
    when there are few of them. ``n``: the column of how many images each accuracy ``y`` was
    measured on; each point then carries its 95% interval, in its line's colour.
    """
    fig, ax = _figure(6.5, 3.8)
    sns.lineplot(data=df, x=x, y=y, hue=hue, style=hue, markers=True, dashes=False, ax=ax)
    err = intervals(df, y, n)
    if err is not None:
        levels = list(dict.fromkeys(df[hue])) if hue is not None else [None]
        for level, colour in zip(levels, sns.color_palette(n_colors=len(levels))):
            at = np.ones(len(df), bool) if level is None else np.asarray(df[hue] == level)
            ax.errorbar(np.asarray(df[x])[at], np.asarray(df[y])[at], yerr=err[at], fmt="none", ecolor=colour,
                        elinewidth=1.2, capsize=3, alpha=0.8)
    if logx:
        ax.set_xscale("log")
        values = np.unique(np.asarray(df[x], dtype=float))
        if 0 < len(values) <= 10:
            ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y)
    _set_title(ax, title or f"{y} against {x}")
    if hue is not None:
        _legend_below(fig, ax)
    return _finish(fig, path)


@_styled
def histograms(groups: dict, title: str, xlabel: str, threshold: float | None = None,
               bins: int = 20, value_range: tuple[float, float] | None = (0.0, 1.0),
               path: str | Path | None = None) -> plt.Figure:
    """Overlaid density histograms of several groups of values (e.g. top-class probability
    on test images and on noise), with an optional threshold marked."""
    fig, ax = _figure(6.5, 3.8)
    names = list(groups)
    ax.hist([np.asarray(groups[k], dtype=float) for k in names], bins=bins, range=value_range,
            density=True, label=names)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel=xlabel, ylabel="density")
    _set_title(ax, title)
    ax.legend()
    _legend_below(fig, ax, title="")
    return _finish(fig, path)


SPLITS = {"train_accuracy": ("train", "o", "tab:blue"), "val_accuracy": ("validation", "s", "tab:orange"),
          "test_accuracy": ("test", "D", "tab:green")}


@_styled
def split_accuracies(df, label: str = "run", title: str = "Train, validation and test accuracy per run",
                     path: str | Path | None = None) -> plt.Figure:
    """Train, validation and test accuracy of every run, one row per run: the gaps at a glance.

    ``df`` has a ``label`` column and ``train_accuracy``, ``val_accuracy``, ``test_accuracy``
    (those present are drawn), all of runs on one training-set size. Each row joins a run's
    accuracies with a line, whose length is the run's largest gap.
    """
    one_training_size(df)
    cols = [c for c in SPLITS if c in df]
    labels = [_wrap(v) for v in _unique(df[label])]
    n = len(labels)
    lines_total = sum(lab.count("\n") + 1 for lab in labels)
    fig, ax = _figure(WIDTH, 1.6 + 0.2 * lines_total + 0.12 * n)
    pos = np.arange(n)
    values = df[cols].to_numpy(dtype=float)
    ax.hlines(pos, np.nanmin(values, 1), np.nanmax(values, 1), color="0.7", lw=2.5, zorder=1)
    for j, c in enumerate(cols):
        name, marker, colour = SPLITS[c]
        ax.scatter(values[:, j], pos, marker=marker, s=45, color=colour, label=name, zorder=2,
                   edgecolor="white", linewidth=0.6)
    ax.set_yticks(pos, labels)
    ax.set_ylim(n - 0.5, -0.5)  # the first run on top
    low = np.nanmin(values) if values.size and np.isfinite(values).any() else 0.0
    ax.set_xlim(max(0.0, math.floor((low - 0.02) * 10) / 10), 1.01)
    ax.grid(axis="x", color="0.9")
    ax.set_axisbelow(True)
    ax.set(xlabel="accuracy", ylabel=label)
    ax.legend()
    _set_title(ax, title)
    _legend_below(fig, ax, title="split")
    return _finish(fig, path)


def myst_figure(fig: plt.Figure, path: Path, src: str, alt: str, caption: str) -> str:
    """Save ``fig`` as ``path``, close it, and return a MyST figure block (with alt text, plain)
    that shows it from ``src`` (the path as the page sees it). ``caption`` is Markdown: record
    text in it is escaped by the caller (:func:`tlkit.markup.md_text`); both stay on one line,
    inside the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return f":::{{figure}} {src}\n:alt: {one_line(alt)}\n\n{one_line(caption)}\n:::\n"
