"""One call from data to record: load, build, train, evaluate, plot, save (``tlkit train``).

Everything that can be checked is checked before the first epoch: the arguments, the
output folder (created and probe-written), the data, the run folder's name and the free
disk space (with ``finetune``, before phase 2: the model is built around the head trained in
phase 1). A run's files are built in a temporary folder beside their destination and
renamed into place as one folder, so a reader never sees a mixed set. SIGTERM cleans up like
Ctrl-C, and a run removes the temporary folders that runs killed outright left behind.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import shutil
import socket
from pathlib import Path

import matplotlib.pyplot as plt

from tlkit import TlkitError, __version__
from tlkit.data import load_dataset
from tlkit.evaluate import evaluate, predict_proba
from tlkit.finetune import fine_tune
from tlkit.modelfile import save_model
from tlkit.models import ModelError, ModelSpec, build_classifier, get_spec, param_report, resolve_weights
from tlkit.records import make_record, run_prefix, write_record
from tlkit.system import TMP_MARK, process_alive, sigterm_as_interrupt
from tlkit.train import configure_precision, fit_dataset, set_seed
from tlkit import plots

MAX_IMG_SIZE = 1024
FILES_BYTES = 8 * 2**20  # record and three figures, generously


class RunError(TlkitError):
    """A ``tlkit train`` run cannot start, or its files cannot be written."""


def _at_least(name: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise RunError(f"{name} must be at least {low}, not {value}")


def check_args(spec: ModelSpec, *, epochs: int, batch_size: int, img_size: int | None, finetune: bool,
               finetune_epochs: int | None, unfreeze_last: int, alpha: float | None,
               limit_per_class: int | None, seed: int, lr: float | None, dropout: float,
               label_smoothing: float, weight_decay: float, class_weight: str | None,
               early_stopping: int | None) -> None:
    """Refuse arguments that cannot make a sensible run, with one line naming the fix
    (``img_size`` and ``alpha`` None: the model's own, always fine)."""
    _at_least("--epochs", epochs, 1)
    _at_least("--batch-size", batch_size, 1)
    _at_least("--limit-per-class", limit_per_class, 1)
    _at_least("--finetune-epochs", finetune_epochs, 0)
    _at_least("--patience", early_stopping, 0)
    _at_least("unfreeze_last", unfreeze_last, 0)
    if img_size is not None and not spec.min_size <= img_size <= MAX_IMG_SIZE:
        raise RunError(f"--img-size must be between {spec.min_size} and {MAX_IMG_SIZE} px for "
                       f"{spec.name}, not {img_size}")
    if finetune and not spec.pretrained:
        raise ModelError(f"'{spec.name}' trains from scratch; --finetune applies to pretrained backbones")
    if finetune_epochs is not None and not finetune:
        raise RunError("--finetune-epochs applies only with --finetune")
    if alpha is not None and alpha not in spec.alphas:
        raise RunError(f"--alpha {alpha:g}: {spec.name} takes "
                       + (f"alpha in {', '.join(f'{a:g}' for a in spec.alphas)}" if spec.alphas
                          else "no --alpha"))
    if not 0 <= seed < 2**32:
        raise RunError(f"--seed must be between 0 and {2**32 - 1}, not {seed}")
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise RunError(f"--lr must be a positive number, not {lr}")
    if not 0 <= label_smoothing < 1:
        raise RunError(f"--label-smoothing must be in [0, 1), not {label_smoothing}")
    if not 0 <= dropout < 1:
        raise RunError(f"dropout must be in [0, 1), not {dropout}")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise RunError(f"weight_decay must be a non-negative number, not {weight_decay}")
    if class_weight not in (None, "balanced"):
        raise RunError(f"class_weight must be 'balanced' or None, not {class_weight!r}")


def _slug(text: str, limit: int = 32) -> str:
    """``text`` as a short, filesystem-safe name part."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-.")[:limit] or "x"


def _weights_tag(source: str) -> str:
    if source == "random":
        return "random"
    if source.startswith("imagenet:"):
        return "imagenet"
    return "file-" + _slug(Path(source.split(":", 1)[1]).name.split(".")[0], 20)


def _host() -> str:
    return _slug(socket.gethostname().split(".")[0], 24)


def _temp_path(folder: Path, stem: str) -> Path:
    """A temporary name in ``folder`` that tells the machine and process writing it."""
    return folder / f".{stem}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}{TMP_MARK}"


def _remove_dead_temps(out: Path, log) -> None:
    """Remove what runs on this machine whose process is gone (killed, or the machine
    restarted) left in ``out`` under a :func:`_temp_path` name."""
    dead, host = [], _host()
    for p in out.iterdir():
        parts = p.name[1:-len(TMP_MARK)].rsplit(".", 3) if p.name.endswith(TMP_MARK) else []
        if len(parts) == 4 and parts[1] == host and parts[2].isdigit() and not process_alive(
                int(parts[2])):
            dead.append(p)
    for p in dead:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if dead:
        log(f"removed {len(dead)} temporary folder(s) of runs that died: "
            + ", ".join(p.name for p in dead))


def _prepare_out(out: Path) -> list[Path]:
    """Create ``out`` and probe-write it; returns the folders created (to remove on failure)."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    first = next(p for p in (out, *out.parents) if p.exists())
    if not first.is_dir():
        raise RunError(f"--out {out}: {first} is a file, not a folder; pass another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = _temp_path(out, "probe")
        probe.write_bytes(b"tlkit")
        probe.unlink()
    except OSError as e:
        _remove_empty(created)
        raise RunError(f"--out {out} is not writable ({e.strerror or e}); pass another --out") from e
    return created


def _remove_empty(folders: list[Path]) -> None:
    for p in folders:  # deepest first
        with contextlib.suppress(OSError):
            p.rmdir()


def _check_space(out: Path, n_params: int) -> None:
    """Refuse to train when the model (weights and optimizer state) and figures won't fit."""
    need = 12 * n_params + FILES_BYTES
    free = shutil.disk_usage(out).free
    if free < need:
        raise RunError(f"--out {out} has {free / 2**20:.0f} MB free; this run's files need about "
                       f"{need / 2**20:.0f} MB: free some space or pass another --out")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Rename the finished run folder ``tmp`` onto ``dest``: readers see the old set, then
    (an instant without one, with ``overwrite``) the new set, never a mix."""
    for p in tmp.rglob("*"):
        if p.is_file():
            _fsync(p)
    _fsync(tmp)
    old = None
    if dest.exists() or dest.is_symlink():
        if not overwrite:  # another run with the same settings finished first: keep both
            kept = dest.with_name(f"{dest.name}.{secrets.token_hex(3)}")
            os.rename(tmp, kept)
            raise RunError(f"{dest} appeared while this run trained; this run's files are in {kept}")
        old = _temp_path(dest.parent, f"{dest.name}.old")
        os.rename(dest, old)
    os.rename(tmp, dest)
    _fsync(dest.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


@sigterm_as_interrupt()
def train_run(dataset: str, base: str, *, epochs: int = 10, batch_size: int = 32,
              img_size: int | None = None, finetune: bool = False, finetune_epochs: int | None = None,
              unfreeze_last: int = 30, weights: str | None = None, alpha: float | None = None,
              data_dir: str | None = None, weights_dir: str | None = None,
              limit_per_class: int | None = None, crop: str = "squash", seed: int = 0,
              out: str | Path = "runs",
              lr: float | None = None, augment: bool = True, dropout: float = 0.2,
              label_smoothing: float = 0.0, weight_decay: float = 1e-4,
              class_weight: str | None = None, early_stopping: int | None = 5,
              tensorboard: bool = False, overwrite: bool = False, verbose: int | str = "auto",
              log=print) -> dict:
    """Train one model end to end and write the folder ``out/<prefix>/`` holding
    ``<prefix>_record.json``, ``<prefix>_model.keras`` and ``<prefix>_{curves,cm,pred_grid}.png``
    (see :func:`tlkit.records.run_prefix`). ``crop`` makes non-square images square
    (:data:`tlkit.data.CROPS`); the model file carries it, so predictions crop alike. An
    existing run folder is refused unless
    ``overwrite``. ``early_stopping`` 0 or None: off. SIGTERM stops it like Ctrl-C
    (:class:`tlkit.system.Terminated`, a KeyboardInterrupt), removing its temporary folder.
    Returns the record."""
    params = {k: v for k, v in locals().items() if k not in ("log", "out", "overwrite")}
    spec = get_spec(base)
    check_args(spec, epochs=epochs, batch_size=batch_size, img_size=img_size, finetune=finetune,
               finetune_epochs=finetune_epochs, unfreeze_last=unfreeze_last, alpha=alpha,
               limit_per_class=limit_per_class, seed=seed, lr=lr, dropout=dropout,
               label_smoothing=label_smoothing, weight_decay=weight_decay,
               class_weight=class_weight, early_stopping=early_stopping)
    cfg = spec.config(alpha, img_size)
    alpha, size = cfg.alpha, cfg.img_size
    _, source = resolve_weights(base, weights, alpha, size, weights_dir)
    lr = lr or (5e-3 if source != "random" else 2e-3)  # a frozen backbone's head learns fast
    out = Path(out)
    created = _prepare_out(out)
    _remove_dead_temps(out, log)
    tmp = None
    try:
        set_seed(seed)
        precision = configure_precision()
        ds = load_dataset(dataset, data_dir=data_dir, limit_per_class=limit_per_class, seed=seed,
                          fallback_size=size, crop=crop)
        ft_epochs = epochs if finetune_epochs is None else finetune_epochs
        prefix = run_prefix(spec.name, _slug(ds.name), size, batch_size, epochs, lr=lr, seed=seed,
                            weights=_weights_tag(source), alpha=alpha,
                            limit_per_class=limit_per_class,
                            finetune_epochs=ft_epochs if finetune else None, crop=crop)
        dest = out / prefix
        if (dest.exists() or dest.is_symlink()) and not overwrite:
            raise RunError(f"{dest} already holds a run: pass --overwrite to replace it, "
                           "or change --out or the settings")
        log(ds.describe())
        tmp = _temp_path(out, prefix)
        tmp.mkdir()
        kw = dict(batch_size=batch_size, label_smoothing=label_smoothing, weight_decay=weight_decay,
                  class_weight=class_weight, early_stopping=early_stopping or None, verbose=verbose)
        board = {"tensorboard": tmp / "logs"} if tensorboard else {}

        def ready(clf) -> None:  # the model is built: report it, check its files fit on disk
            log(f"weights: {clf.weights_source}\n{param_report(clf.model)}")
            _check_space(out, clf.model.count_params())

        if finetune:  # the course's recipe: a head on cached features, then the top at lr / 10
            run = fine_tune(base, ds, img_size=size, weights=weights, alpha=alpha,
                            weights_dir=weights_dir, head_epochs=epochs,
                            epochs=ft_epochs,
                            unfreeze_last=unfreeze_last, lr=lr, augment=augment, seed=seed,
                            head_kwargs=dict(kw, dropout=dropout), before_finetune=ready,
                            **kw, **board)
            clf, result, wall = run.clf, run.both, run.wall_seconds
        else:
            # built in the device scope (data parallel on several devices) by build_classifier
            clf = build_classifier(base, ds.num_classes, input_shape=ds.image_shape, img_size=size,
                                   weights=weights, alpha=alpha, weights_dir=weights_dir,
                                   augment=augment, dropout=dropout)
            ready(clf)
            result = fit_dataset(clf, ds, epochs=epochs, lr=lr, **kw, **board)
            wall = result.wall_seconds
        evaluation = evaluate(clf.model, ds, seed=seed)
        params.update(img_size=size, lr=lr, alpha=alpha, precision=precision)
        record = make_record(kind="train", name=prefix, params=params, dataset=ds.info(),
                             model=clf.info(), metrics=evaluation["summary"], history=result.history,
                             wall_seconds=round(wall, 2),
                             images_per_second=round(result.images_per_second, 1), seed=seed,
                             evaluation={k: v for k, v in evaluation.items() if k != "summary"},
                             extra={"devices": result.devices})
        m = record["metrics"]
        log(f"test accuracy {m['test_accuracy']:.3f} | val {m.get('val_accuracy', float('nan')):.3f} | "
            f"train {m['train_accuracy']:.3f} | {wall:.0f} s training")
        _write_files(tmp, dest, overwrite, prefix, record, clf, ds, result.history, evaluation, seed)
    except BaseException:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise
    log(f"-> {dest}/")
    return record


def _write_files(tmp: Path, dest: Path, overwrite: bool, prefix: str, record: dict, clf, ds,
                 history: dict, evaluation: dict, seed: int) -> None:
    """Write the record first, then the figures, then the model into ``tmp`` and publish it
    as ``dest``. When a write fails, the files written so far are published and the error
    names what is missing."""
    title = f"{clf.base} on {ds.name} at {clf.img_size} px ({clf.weights_source.split(':')[0]} weights)"
    steps = [
        ("record", f"{prefix}_record.json", lambda p: write_record(record, p)),
        ("learning curves", f"{prefix}_curves.png",
         lambda p: plots.learning_curves(history, f"Learning curves: {title}", p)),
        ("confusion matrix", f"{prefix}_cm.png",
         lambda p: plots.confusion_matrix(evaluation["test"]["confusion_matrix"], ds.class_names,
                                          f"Test confusion matrix: {title}", path=p)),
        ("prediction grid", f"{prefix}_pred_grid.png",
         lambda p: plots.prediction_grid(ds.x_test, ds.y_test, predict_proba(clf.model, ds.x_test),
                                         ds.class_names, title=f"Test predictions: {clf.base}",
                                         seed=seed, path=p)),
        ("model", f"{prefix}_model.keras",
         lambda p: save_model(clf.model, p, ds.class_names, run=prefix, base=clf.base,
                              dataset=ds.name, img_size=clf.img_size, crop=ds.crop,
                              weights_source=clf.weights_source, tlkit_version=__version__)),
    ]
    for i, (what, name, write) in enumerate(steps):
        path = tmp / name
        try:
            made = write(path)
        except OSError as e:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a figure cut short (the record and model clean up after themselves)
            reason = e.strerror or str(e)
            if i == 0:
                raise RunError(f"could not write the record in {dest.parent} ({reason}); "
                               "nothing was saved: free some space and rerun") from e
            _publish(tmp, dest, overwrite)
            missing = ", ".join(w for w, _, _ in steps[i:])
            raise RunError(f"could not write the {what} ({reason}); the record and files written "
                           f"before it are in {dest}, missing: {missing}") from e
        if isinstance(made, plt.Figure):
            plt.close(made)
    _publish(tmp, dest, overwrite)
