"""Plots: learning curves, confusion matrices, prediction grids, per-class and comparison
charts. Every function returns the figure and saves a PNG when given a path; in a notebook
the figure shows inline."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from tlkit.evaluate import per_class_accuracy


def _finish(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def learning_curves(history: dict, title: str = "Learning curves", path: str | Path | None = None
                    ) -> plt.Figure:
    """Loss and accuracy per epoch, train against validation; phases shaded."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
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
                ax.text(i + 0.6, ax.get_ylim()[1], phases[i], va="top", fontsize=8, color="grey")
        ax.set(xlabel="epoch", ylabel=metric, title=metric.capitalize())
        ax.legend()
    fig.suptitle(title)
    return _finish(fig, path)


def confusion_matrix(confusion: Sequence[Sequence[int]], class_names: Sequence[str],
                     title: str = "Confusion matrix (rows: true class)", normalize: bool = True,
                     path: str | Path | None = None) -> plt.Figure:
    """A heat map of the confusion matrix, row-normalised by default."""
    cm = np.asarray(confusion, dtype=float)
    if normalize:
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    sns.heatmap(cm, annot=n <= 12, fmt=".2f" if normalize else ".0f", cmap="Blues", ax=ax,
                xticklabels=class_names, yticklabels=class_names, cbar=True, square=True,
                cbar_kws={"label": "fraction of true class" if normalize else "images"})
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    return _finish(fig, path)


def _grid(images: np.ndarray, n: int, seed: int, cell: tuple[float, float]):
    """A figure of up to ``n`` random images, one per axis; returns (fig, [(ax, index)])."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(images), min(n, len(images)), replace=False)
    cols = int(np.ceil(np.sqrt(len(idx))))
    rows = int(np.ceil(len(idx) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cell[0] * cols, cell[1] * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx):
        ax.imshow(images[i])
    return fig, list(zip(axes.flat, idx))


def samples(images: np.ndarray, labels: Sequence[int], class_names: Sequence[str], n: int = 16,
            title: str = "Sample images", seed: int = 0, path: str | Path | None = None) -> plt.Figure:
    """A grid of random images with their class names."""
    fig, cells = _grid(images, n, seed, (1.7, 1.9))
    for ax, i in cells:
        ax.set_title(class_names[int(labels[i])], fontsize=8)
    fig.suptitle(title)
    return _finish(fig, path)


def prediction_grid(images: np.ndarray, y_true: Sequence[int], proba: np.ndarray,
                    class_names: Sequence[str], n: int = 16, title: str = "Predictions",
                    seed: int = 0, path: str | Path | None = None) -> plt.Figure:
    """A grid of images with true and predicted classes; mistakes in red."""
    fig, cells = _grid(images, n, seed, (1.9, 2.1))
    for ax, i in cells:
        pred = int(np.argmax(proba[i]))
        ok = pred == int(y_true[i])
        ax.set_title(f"true: {class_names[int(y_true[i])]}\npred: {class_names[pred]} "
                     f"({proba[i][pred]:.0%})", fontsize=8, color="black" if ok else "red")
    fig.suptitle(f"{title} (red: mistakes)")
    return _finish(fig, path)


def per_class_bars(per_class: dict, title: str = "Per-class precision, recall and F1",
                   path: str | Path | None = None) -> plt.Figure:
    """Grouped bars of precision, recall and F1 for every class."""
    names = list(per_class)
    metrics = ("precision", "recall", "f1-score")
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names)), 3.6))
    for j, m in enumerate(metrics):
        ax.bar(x + (j - 1) * 0.27, [per_class[c][m] for c in names], 0.27, label=m)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set(ylim=(0, 1.05), ylabel="score", xlabel="class", title=title)
    ax.legend(ncol=3, loc="lower right")
    return _finish(fig, path)


def class_accuracy(confusion: Sequence[Sequence[int]], class_names: Sequence[str],
                   title: str = "Accuracy per class", path: str | Path | None = None) -> plt.Figure:
    """Horizontal bars of per-class accuracy (recall), sorted."""
    acc = per_class_accuracy(confusion)
    order = np.argsort(acc)
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(class_names) + 1))
    ax.barh([class_names[i] for i in order], acc[order], color="tab:blue")
    ax.set(xlim=(0, 1), xlabel="accuracy (recall)", ylabel="class", title=title)
    return _finish(fig, path)


def compare(df, x: str, y: str, label: str, hue: str | None = None, title: str = "",
            xlabel: str | None = None, ylabel: str | None = None, logx: bool = False,
            path: str | Path | None = None) -> plt.Figure:
    """A labelled scatter plot of one column against another (e.g. accuracy vs parameters)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    sns.scatterplot(data=df, x=x, y=y, hue=hue, style=hue, s=80, ax=ax)
    for _, row in df.iterrows():
        ax.annotate(str(row[label]), (row[x], row[y]), fontsize=8, xytext=(4, 3),
                    textcoords="offset points")
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y, title=title or f"{y} against {x}")
    return _finish(fig, path)


def bars(df, x: str, y: str, hue: str | None = None, title: str = "", xlabel: str | None = None,
         ylabel: str | None = None, path: str | Path | None = None) -> plt.Figure:
    """Labelled bars of one column per row (e.g. accuracy per model or per input size)."""
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(df)), 3.8))
    sns.barplot(data=df, x=x, y=y, hue=hue, ax=ax)
    for c in ax.containers:
        ax.bar_label(c, fmt="%.2f", fontsize=7)
    ax.tick_params(axis="x", rotation=30)
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y, title=title or f"{y} by {x}")
    return _finish(fig, path)


def lines(df, x: str, y: str, hue: str | None = None, title: str = "", xlabel: str | None = None,
          ylabel: str | None = None, path: str | Path | None = None) -> plt.Figure:
    """Lines of one column against another, one per ``hue`` (e.g. accuracy vs input size)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    sns.lineplot(data=df, x=x, y=y, hue=hue, style=hue, markers=True, dashes=False, ax=ax)
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y, title=title or f"{y} against {x}")
    return _finish(fig, path)


def split_accuracies(df, label: str = "run", title: str = "Train, validation and test accuracy per run",
                     path: str | Path | None = None) -> plt.Figure:
    """Grouped bars of train/validation/test accuracy per run: the gaps at a glance.

    ``df`` has a ``label`` column and ``train_accuracy``, ``val_accuracy``, ``test_accuracy``.
    """
    cols = [c for c in ("train_accuracy", "val_accuracy", "test_accuracy") if c in df]
    long = df.melt(id_vars=[label], value_vars=cols, var_name="split", value_name="accuracy")
    long["split"] = long["split"].str.replace("_accuracy", "").str.replace("val", "validation")
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(df)), 4))
    sns.barplot(data=long, x=label, y="accuracy", hue="split", ax=ax)
    ax.tick_params(axis="x", rotation=40)
    for t in ax.get_xticklabels():
        t.set_ha("right")
    ax.set(ylim=(0, 1.05), xlabel=label, ylabel="accuracy", title=title)
    return _finish(fig, path)


def myst_figure(fig: plt.Figure, path: Path, src: str, alt: str, caption: str) -> str:
    """Save ``fig`` as ``path``, close it, and return a MyST figure block (with alt text)
    that shows it from ``src`` (the path as the page sees it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f":::{{figure}} {src}\n:alt: {alt}\n\n{caption}\n:::\n"
