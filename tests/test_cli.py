"""The ``tlkit`` command line: a real training run, clean one-line errors, info, predict."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import CLI_PREFIX, MNV2_035, run_cli
from tlkit.cli import main

SUFFIXES = ("_curves.png", "_cm.png", "_pred_grid.png", "_record.json", "_model.keras")


def test_train_writes_five_files(cli_run):
    out, proc = cli_run
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(CLI_PREFIX + s for s in SUFFIXES)  # and no temporaries
    for s in SUFFIXES[:3]:
        with Image.open(out / (CLI_PREFIX + s)) as im:
            assert im.format == "PNG" and min(im.size) > 100
    assert json.loads((out / f"{CLI_PREFIX}_record.json").read_text())["name"] == CLI_PREFIX
    assert (out / f"{CLI_PREFIX}_model.keras").stat().st_size > 100_000
    assert "test accuracy" in proc.stdout and "weights: random" in proc.stdout
    assert "Traceback" not in proc.stderr


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
    assert "backend   tensorflow" in out
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
