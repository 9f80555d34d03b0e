"""The ``tlkit`` command line: a real training run, clean one-line errors, info, predict."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import CLI_PREFIX, MNV2_035, image_files, run_cli, write_folder
from tlkit import pipeline
from tlkit.cli import main
from tlkit.modelfile import read_meta

SUFFIXES = ("_curves.png", "_cm.png", "_pred_grid.png", "_record.json", "_model.keras")


def test_train_writes_one_run_folder(cli_run):
    """OUT/<prefix>/ holds the five files and nothing else; OUT holds only that folder."""
    out, proc = cli_run
    assert out.name == CLI_PREFIX and [p.name for p in out.parent.iterdir()] == [CLI_PREFIX]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(CLI_PREFIX + s for s in SUFFIXES)  # and no temporaries
    for s in SUFFIXES[:3]:
        with Image.open(out / (CLI_PREFIX + s)) as im:
            assert im.format == "PNG" and min(im.size) > 100
    record = json.loads((out / f"{CLI_PREFIX}_record.json").read_text())
    assert record["name"] == CLI_PREFIX and record["params"]["lr"] == 0.002
    assert (out / f"{CLI_PREFIX}_model.keras").stat().st_size > 100_000
    meta = read_meta(out / f"{CLI_PREFIX}_model.keras")
    assert meta["class_names"] == record["dataset"]["class_names"] and meta["run"] == CLI_PREFIX
    assert "test accuracy" in proc.stdout and "weights: random" in proc.stdout
    assert f"-> {out}/" in proc.stdout and "Traceback" not in proc.stderr


def test_existing_run_folder_is_refused_before_training(cli_run, capsys, monkeypatch):
    out, _ = cli_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    monkeypatch.setattr(pipeline, "fit_dataset", _must_not_run("training"))
    code = main(["train", "--dataset", "synthetic", "--base", "cnn", "--epochs", "1",
                 "--batch-size", "32", "--img-size", "32", "--out", str(out.parent)])
    lines = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0] == (f"tlkit: error: {out} already holds a run: pass --overwrite to replace it, "
                        "or change --out or the settings")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert [p.name for p in out.parent.iterdir()] == [CLI_PREFIX]


def _must_not_run(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} started although the arguments are invalid")
    return fail


BAD_ARGS = [
    (["--epochs", "0"], "--epochs must be at least 1, not 0"),
    (["--epochs", "-2"], "--epochs must be at least 1, not -2"),
    (["--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    (["--limit-per-class", "0"], "--limit-per-class must be at least 1, not 0"),
    (["--img-size", "100000"], "--img-size must be between 32 and 1024 px for cnn, not 100000"),
    (["--img-size", "8"], "--img-size must be between 32 and 1024 px for cnn, not 8"),
    (["--lr", "0"], "--lr must be a positive number, not 0.0"),
    (["--lr", "-0.1"], "--lr must be a positive number, not -0.1"),
    (["--lr", "nan"], "--lr must be a positive number, not nan"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1), not 1.0"),
    (["--label-smoothing", "-0.1"], "--label-smoothing must be in [0, 1), not -0.1"),
    (["--patience", "-1"], "--patience must be at least 0, not -1"),
    (["--seed", "-1"], "--seed must be between 0 and 4294967295, not -1"),
    (["--finetune-epochs", "2"], "--finetune-epochs applies only with --finetune"),
    (["--base", "mobilenetv2", "--finetune", "--finetune-epochs", "-1"],
     "--finetune-epochs must be at least 0, not -1"),
    (["--base", "mobilenetv2", "--alpha", "0.3"],
     "--alpha 0.3: mobilenetv2 takes alpha in 0.35, 0.5, 0.75, 1, 1.3, 1.4"),
    (["--alpha", "0.5"], "--alpha 0.5: cnn takes no --alpha"),
    (["--base", "cnn", "--weights", "imagenet"], "'cnn' is trained from scratch"),
]


@pytest.mark.parametrize("args,message", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_train_arguments_are_one_line_before_any_data(args, message, capsys, tmp_path,
                                                          monkeypatch):
    monkeypatch.setattr(pipeline, "load_dataset", _must_not_run("loading data"))
    out = tmp_path / "out"
    code = main(["train", "--dataset", "synthetic", *args, "--out", str(out)])
    lines = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("tlkit: error: ") and message in lines[0], lines[0]
    assert not out.exists()


def _out_cases(tmp_path):
    (tmp_path / "afile").write_text("x")
    cases = [(tmp_path / "afile", "afile is a file, not a folder; pass another --out"),
             (tmp_path / "afile" / "sub", "afile is a file, not a folder; pass another --out")]
    if Path("/proc/self").is_dir():  # unwritable even for root
        cases += [(Path("/proc/self"), "is not writable"),
                  (Path("/proc/tlkit-out"), "is not writable")]
    return cases


def test_unusable_out_is_one_line_before_any_data(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "load_dataset", _must_not_run("loading data"))
    for out, message in _out_cases(tmp_path):
        code = main(["train", "--dataset", "synthetic", "--epochs", "1", "--out", str(out)])
        lines = _error_lines(capsys.readouterr().err)
        assert code == 2 and len(lines) == 1, (out, lines)
        assert lines[0].startswith(f"tlkit: error: --out {out}") and message in lines[0], lines[0]


def test_two_classes_end_to_end(capsys, tmp_path):
    """Cats against dogs: the most common transfer-learning task writes every file."""
    data = write_folder(tmp_path / "pets", image_files({"cat": 14, "dog": 14}, size=32))
    code = main(["train", "--dataset", str(data), "--base", "cnn", "--epochs", "1",
                 "--img-size", "32", "--verbose", "0", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0, err
    prefix = "cnn__pets__img32__bs32__ep1__lr0.002__seed0__wrandom"
    run = tmp_path / "out" / prefix
    assert sorted(p.name for p in run.iterdir()) == sorted(prefix + s for s in SUFFIXES)
    record = json.loads((run / f"{prefix}_record.json").read_text())
    assert record["dataset"]["class_names"] == ["cat", "dog"]
    assert np.array(record["evaluation"]["test"]["confusion_matrix"]).shape == (2, 2)
    assert read_meta(run / f"{prefix}_model.keras")["class_names"] == ["cat", "dog"]


def test_one_or_two_images_a_class_are_one_line_before_training(capsys, tmp_path, monkeypatch):
    """Too few images to give each class a training, validation and test image: refused
    with the class and its count (it used to train, then fail inside Keras)."""
    monkeypatch.setattr(pipeline, "fit_dataset", _must_not_run("training"))
    for n in (1, 2):
        data = write_folder(tmp_path / f"pets{n}", image_files({"cat": n, "dog": n}, size=32))
        code = main(["train", "--dataset", str(data), "--base", "cnn", "--epochs", "1",
                     "--img-size", "32", "--verbose", "0", "--out", str(tmp_path / "out")])
        lines = _error_lines(capsys.readouterr().err)
        assert code == 2 and len(lines) == 1, lines
        assert lines[0] == (f"tlkit: error: {data}: class 'cat' has {n} image(s); splitting it "
                            "into train, test and validation needs at least 3: add images of "
                            "it or remove its folder")
        assert not (tmp_path / "out").exists()


def test_interrupt_exits_130_and_leaves_nothing(capsys, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "fit_dataset", interrupt)
    out = tmp_path / "out"
    code = main(["train", "--dataset", "synthetic", "--epochs", "1", "--limit-per-class", "4",
                 "--out", str(out)])
    assert code == 130 and capsys.readouterr().err.strip() == "tlkit: interrupted"
    assert not out.exists()  # the temporary run folder and the folder made for it are gone


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_unknown_base_is_one_line():
    proc = run_cli("train", "--dataset", "synthetic", "--base", "resnet5", "--epochs", "1")
    assert proc.returncode != 0
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tlkit: error:") and "resnet5" in lines[0]
    for name in ("resnet50", "mobilenetv2", "cnn", "efficientnetb0", "vgg16"):
        assert name in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_missing_dataset_is_one_line(capsys, tmp_path):
    code = main(["train", "--dataset", "/no/such/place", "--base", "cnn", "--epochs", "1",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    lines = _error_lines(err)
    assert len(lines) == 1 and "/no/such/place" in lines[0] and "image folder" in lines[0]
    assert not (tmp_path / "out").exists()


def test_finetune_needs_pretrained(capsys, tmp_path):
    code = main(["train", "--base", "cnn", "--finetune", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--finetune" in err and len(_error_lines(err)) == 1


def test_bad_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--epochs", "many"])
    assert e.value.code == 2 and "invalid int value" in capsys.readouterr().err


def test_info_lists_weight_files(capsys, tmp_path, no_local_keras):
    wdir = tmp_path / "w"
    wdir.mkdir()
    for name in (MNV2_035, "mobilenet_2_5_224_tf_no_top.h5", "notes.txt"):
        (wdir / name).write_bytes(b"\0" * 2048)
    assert main(["info", "--weights-dir", str(wdir)]) == 0
    out = capsys.readouterr().out
    assert f"backend   {keras.config.backend()}" in out
    assert f"mobilenetv2 alpha 0.35: {(wdir / MNV2_035).resolve()}" in out
    assert f"mobilenet alpha 0.25: {(wdir / 'mobilenet_2_5_224_tf_no_top.h5').resolve()}" in out
    assert "notes.txt" not in out and "none found" not in out
    assert main(["info", "--weights-dir", str(tmp_path / "empty")]) == 0
    assert "none found: offline, pretrained models need --weights-dir or --weights none" in \
        capsys.readouterr().out


def test_info_lists_local_data(capsys, tmp_path, no_local_keras):
    (tmp_path / "cifar10-jpg.tar.gz").write_bytes(b"")
    assert main(["info", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"cifar10    {tmp_path / 'cifar10-jpg.tar.gz'}" in out
    assert "synthetic  built in" in out and "flowers    not found locally" in out


def test_predict_prints_labels(cli_run, capsys, tmp_path):
    out, _ = cli_run
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate((32, 50)):  # any size: predict resizes
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    model = str(out / f"{CLI_PREFIX}_model.keras")
    record = json.loads((out / f"{CLI_PREFIX}_record.json").read_text())
    names = set(record["dataset"]["class_names"])

    assert main(["predict", model, *paths, "--threshold", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, paths):
        p, label, conf = line.split("\t")
        assert p == path and label in names and 0.0 < float(conf) <= 1.0

    assert main(["predict", model, *paths, "--threshold", "1"]) == 0
    labels = [line.split("\t")[1] for line in capsys.readouterr().out.strip().splitlines()]
    assert labels == ["unknown", "unknown"]

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert main(["predict", model, str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cannot read image" in err and "bad.png" in err and len(_error_lines(err)) == 1

    assert main(["predict", str(tmp_path / "missing_model.keras"), paths[0]]) == 2
    assert "no model file" in capsys.readouterr().err


def test_the_parser_loads_no_backend():
    """tlkit quiets TensorFlow's start-up lines when a command starts: building the parser
    must not load TensorFlow first (TensorFlow 2.21 prints them on import)."""
    code = ("import sys; from tlkit.cli import parser; parser(); "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
