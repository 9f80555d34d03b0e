"""tlkit.pipeline: checks before the first epoch, one run folder published whole, the record
kept when the model cannot be saved, ``overwrite``."""
from __future__ import annotations

import errno
import re
import signal
import subprocess
import sys
import time
from collections import namedtuple

import keras
import pytest

import tlkit.finetune
from tlkit import pipeline
from tlkit.models import get_spec
from tlkit.pipeline import RunError, train_run
from tlkit.records import read_records
from tlkit.system import TMP_MARK

SMALL = dict(epochs=1, img_size=32, limit_per_class=6, verbose=0, log=lambda *a: None)
PREFIX = "cnn__synthetic__img32__bs32__ep1__lr0.002__seed0__wrandom__lim6"
FIGURES = ("_curves.png", "_cm.png", "_pred_grid.png")


def _temporaries(folder):
    return [p for p in folder.rglob("*") if TMP_MARK in p.name or ".tmp" in p.name]


def test_library_refuses_bad_settings_before_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    for kw, message in [(dict(dropout=1.0), "dropout must be in [0, 1)"),
                        (dict(class_weight="equal"), "class_weight must be 'balanced' or None"),
                        (dict(weight_decay=-1e-4), "weight_decay must be a non-negative number"),
                        (dict(unfreeze_last=-1), "unfreeze_last must be at least 0")]:
        with pytest.raises(RunError, match=re.escape(message)):
            train_run("synthetic", "cnn", out=tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_weights_and_dataset_names_are_filesystem_safe():
    assert pipeline._weights_tag("random") == "random"
    assert pipeline._weights_tag("imagenet:download") == "imagenet"
    assert pipeline._weights_tag("imagenet:/w/mobilenet_v2.h5") == "imagenet"
    assert pipeline._weights_tag("file:/x/my weights (v2).weights.h5") == "file-my-weights-v2"
    assert pipeline._slug("cats & dogs/2024") == "cats-dogs-2024"
    assert len(pipeline._slug("x" * 200)) == 32


@pytest.mark.parametrize("finetune", [False, True])
def test_full_disk_is_refused_before_training(tmp_path, monkeypatch, finetune):
    """The model's size is known once it is built: with ``finetune``, after phase 1 (the head
    on cached features), before phase 2 trains the backbone."""
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(pipeline.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 2**20, 2**20))
    monkeypatch.setattr(pipeline, "fit_dataset", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr(tlkit.finetune, "fit_dataset", lambda *a, **k: pytest.fail("phase 2 started"))
    out = tmp_path / "out"
    n_params = None

    def log(line):
        nonlocal n_params
        n_params = n_params or ("parameters" in line)

    model = dict(base="mobilenetv2", weights="none", alpha=0.35, finetune=True) if finetune else \
        dict(base="cnn")
    with pytest.raises(RunError, match=r"has 1 MB free; this run's files need about \d+ MB"):
        train_run("synthetic", **model, out=out, **{**SMALL, "log": log})
    assert n_params  # the model was built: the estimate uses its size
    assert not out.exists()  # no run folder, no temporary folder, no empty OUT


def test_finetune_is_the_course_recipe(tmp_path):
    """``finetune``: the head on cached features, then the backbone's last layers with it
    (tlkit.finetune.fine_tune); the record holds both phases and the recipe's wall time."""
    record = train_run("synthetic", "mobilenetv2", weights="none", alpha=0.35, finetune=True,
                       unfreeze_last=10, out=tmp_path, **SMALL)
    assert record["history"]["phase"] == ["head", "finetune"]
    assert record["name"] == "mobilenetv2__synthetic__img32__bs32__ep1__lr0.002__seed0__wrandom__a0.35__lim6__ft1"
    model = record["model"]
    assert model["trainable_params"] > model["params"] - model["backbone_params"]  # the top learnt too
    seconds = record["history"]["seconds"]
    assert record["wall_seconds"] >= seconds[-1] > seconds[0] > 0
    assert sorted(p.name for p in (tmp_path / record["name"]).iterdir()) == sorted(
        f"{record['name']}{s}" for s in (*FIGURES, "_record.json", "_model.keras"))


def test_overwrite_and_failed_model_save(tmp_path, monkeypatch):
    """An existing run folder is refused; with ``overwrite`` it is replaced whole (no stale
    file survives). A full disk at the model: the record and figures are published, the
    partial model file is gone, and the error says so in one line."""
    out = tmp_path / "out"
    run = out / PREFIX
    run.mkdir(parents=True)
    (run / f"{PREFIX}_model.keras").write_bytes(b"an older model")
    (run / "notes.txt").write_text("from an older run")
    with pytest.raises(RunError, match="already holds a run: pass --overwrite"):
        train_run("synthetic", "cnn", out=out, **SMALL)
    assert (run / "notes.txt").is_file()

    def full_disk(self, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"PK\x03\x04 half a model")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", full_disk)
    with pytest.raises(RunError) as e:
        train_run("synthetic", "cnn", out=out, overwrite=True, **SMALL)
    msg = str(e.value)
    assert "\n" not in msg and "could not write the model (No space left on device)" in msg
    assert f"are in {run}, missing: model" in msg
    assert sorted(p.name for p in out.iterdir()) == [PREFIX]
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [f"{PREFIX}_record.json"] + [PREFIX + s for s in FIGURES])  # the older model is gone too
    assert _temporaries(out) == []
    (record,) = read_records(run)
    assert record["name"] == PREFIX and 0 <= record["metrics"]["test_accuracy"] <= 1


def test_image_size_bound_follows_the_model():
    spec = get_spec("mobilenetv2")
    with pytest.raises(RunError, match=f"between {spec.min_size} and 1024 px for mobilenetv2"):
        pipeline.check_args(spec, epochs=1, batch_size=8, img_size=2048, finetune=False,
                            finetune_epochs=None, unfreeze_last=30, alpha=None,
                            limit_per_class=None, seed=0, lr=None, dropout=0.2,
                            label_smoothing=0.0, weight_decay=1e-4, class_weight=None,
                            early_stopping=5)


def test_temporary_folders_of_dead_runs_are_removed(tmp_path, monkeypatch):
    """A run killed outright (kill -9, a power cut) leaves its temporary folder; the next
    run in the same --out removes it, and keeps those of live runs and of other machines."""
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with monkeypatch.context() as m:
        m.setattr(pipeline.os, "getpid", lambda: gone.pid)
        dead = pipeline._temp_path(out, PREFIX)
    live = pipeline._temp_path(out, PREFIX)
    elsewhere = out / dead.name.replace(f".{pipeline._host()}.", ".another-host.")
    for p in (dead, live, elsewhere):
        (p / "logs").mkdir(parents=True)
    monkeypatch.setattr(pipeline, "load_dataset", lambda *a, **k: pytest.fail("stop here"))
    lines = []
    with pytest.raises(pytest.fail.Exception):
        train_run("synthetic", "cnn", out=out, **{**SMALL, "log": lines.append})
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, elsewhere.name])
    assert lines == [f"removed 1 temporary folder(s) of runs that died: {dead.name}"]


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    """SIGTERM while training: the temporary run folder is removed, one line, exit 143."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "tlkit.cli", "train", "--epochs", "1000",
                             "--patience", "0", "--img-size", "32", "--verbose", "0",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 240
        while not _temporaries(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _temporaries(out), "the run never made its temporary folder"
        time.sleep(1)  # training
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "tlkit: terminated (SIGTERM)" and "Traceback" not in err
    assert list(out.iterdir()) == []


def test_sigterm_mangled_by_c_code_is_still_terminated():
    """The SIGTERM handler's exception raised inside C code can come out as another one
    (TensorFlow's graph tracing made it a SystemError): the block still ends as Terminated,
    and an exception with no SIGTERM behind it passes unchanged."""
    import os

    from tlkit.system import Terminated, sigterm_as_interrupt

    with pytest.raises(Terminated, match="SIGTERM"):
        with sigterm_as_interrupt():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except Terminated as e:
                raise SystemError("bad argument to internal function") from e
    with pytest.raises(SystemError):
        with sigterm_as_interrupt():
            raise SystemError("not a signal")
