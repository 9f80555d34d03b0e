"""One call from data to record: load, build, train, evaluate, plot, save (``tlkit train``)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt

from tlkit.data import load_dataset
from tlkit.evaluate import evaluate, predict_proba
from tlkit.models import ModelError, build_classifier, get_spec, param_report
from tlkit.records import make_record, run_prefix, write_record
from tlkit.train import configure_precision, device_scope, fit_dataset, set_seed, two_phase
from tlkit import plots


def save_model(model, path: str | Path) -> Path:
    """Save a Keras model atomically (a temporary ``.keras`` file, then a rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return path


def _train(clf, ds, finetune: bool, epochs: int, finetune_epochs: int | None, lr: float | None,
           unfreeze_last: int, kw: dict):
    lr = lr or (5e-3 if clf.transfer else 2e-3)  # a frozen backbone's head learns fast
    if finetune:
        return two_phase(clf, ds, head_epochs=epochs, finetune_epochs=finetune_epochs or epochs,
                         lr=lr, unfreeze_last=unfreeze_last, **kw)
    return fit_dataset(clf, ds, epochs=epochs, lr=lr, **kw)


def train_run(dataset: str, base: str, *, epochs: int = 10, batch_size: int = 32,
              img_size: int | None = None, finetune: bool = False, finetune_epochs: int | None = None,
              unfreeze_last: int = 30, weights: str | None = None, alpha: float | None = None,
              data_dir: str | None = None, weights_dir: str | None = None,
              limit_per_class: int | None = None, seed: int = 0, out: str | Path = "runs",
              lr: float | None = None, augment: bool = True, dropout: float = 0.2,
              label_smoothing: float = 0.0, weight_decay: float = 1e-4,
              class_weight: str | None = None, early_stopping: int | None = 5,
              tensorboard: bool = False, verbose: int | str = "auto", log=print) -> dict:
    """Train one model end to end and write ``<prefix>_{curves,cm,pred_grid}.png``,
    ``<prefix>_record.json`` and ``<prefix>_model.keras`` into ``out``. Returns the record."""
    params = {k: v for k, v in locals().items() if k not in ("log", "out")}
    spec = get_spec(base)
    if finetune and not spec.pretrained:
        raise ModelError(f"'{base}' trains from scratch; --finetune applies to pretrained backbones")
    size = img_size or spec.default_size
    set_seed(seed)
    precision = configure_precision()
    ds = load_dataset(dataset, data_dir=data_dir, limit_per_class=limit_per_class, seed=seed,
                      fallback_size=size)
    log(ds.describe())
    with device_scope():
        clf = build_classifier(base, ds.num_classes, input_shape=ds.image_shape, img_size=size,
                               weights=weights, alpha=alpha, weights_dir=weights_dir,
                               augment=augment, dropout=dropout)
    log(f"weights: {clf.weights_source}\n{param_report(clf.model)}")
    kw = dict(batch_size=batch_size, label_smoothing=label_smoothing, weight_decay=weight_decay,
              class_weight=class_weight, early_stopping=early_stopping, verbose=verbose)
    prefix = run_prefix(base, ds.name, size, batch_size, epochs, finetune)
    out = Path(out)
    if tensorboard:
        kw["tensorboard"] = out / f"{prefix}_logs"
    with device_scope():
        result = _train(clf, ds, finetune, epochs, finetune_epochs, lr, unfreeze_last, kw)
    evaluation = evaluate(clf.model, ds, seed=seed)
    proba = predict_proba(clf.model, ds.x_test)
    title = f"{base} on {ds.name} at {size} px ({clf.weights_source.split(':')[0]} weights)"
    out.mkdir(parents=True, exist_ok=True)
    figs = [plots.learning_curves(result.history, f"Learning curves: {title}", out / f"{prefix}_curves.png"),
            plots.confusion_matrix(evaluation["test"]["confusion_matrix"], ds.class_names,
                                   f"Test confusion matrix: {title}", path=out / f"{prefix}_cm.png"),
            plots.prediction_grid(ds.x_test, ds.y_test, proba, ds.class_names,
                                  title=f"Test predictions: {base}", seed=seed,
                                  path=out / f"{prefix}_pred_grid.png")]
    for f in figs:
        plt.close(f)
    save_model(clf.model, out / f"{prefix}_model.keras")
    params.update(img_size=size, precision=precision)
    record = make_record(kind="train", name=prefix, params=params, dataset=ds.info(),
                         model=clf.info(), metrics=evaluation["summary"], history=result.history,
                         wall_seconds=round(result.wall_seconds, 2),
                         images_per_second=round(result.images_per_second, 1), seed=seed,
                         evaluation={k: v for k, v in evaluation.items() if k != "summary"})
    write_record(record, out / f"{prefix}_record.json")
    m = record["metrics"]
    log(f"test accuracy {m['test_accuracy']:.3f} | val {m.get('val_accuracy', float('nan')):.3f} | "
        f"train {m['train_accuracy']:.3f} | {result.wall_seconds:.0f} s training -> {out}/{prefix}_*")
    return record
