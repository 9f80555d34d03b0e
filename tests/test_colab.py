"""tlkit.colab and the notebooks' Colab set-up: a GPU runtime asked for in the metadata, and
the optional Drive cell that keeps out_dir, the data and the caches between sessions."""
from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

from conftest import ROOT
from tlkit import colab, course
from tlkit.data import cache_dir
from tlkit.models import weights_dirs

DRIVE_CELL = ("use_drive = False", "from tlkit import colab", "colab.keep_on_drive(use_drive)")


def _notebook(name: str) -> dict:
    return json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", course.NOTEBOOKS)
def test_every_notebook_asks_colab_for_a_gpu(name):
    """What Colab writes when a notebook is saved with a T4 runtime: its badge opens one."""
    meta = _notebook(name)["metadata"]
    assert meta["accelerator"] == "GPU" and meta["colab"]["gpuType"] == "T4"


@pytest.mark.parametrize("name", course.NOTEBOOKS)
def test_the_drive_cell_follows_the_install_cell(name):
    cells = _notebook(name)["cells"]
    assert 'if "google.colab" in sys.modules:' in "".join(cells[1]["source"])
    drive = cells[2]
    assert drive["id"] == f"{course.notebook_id(name)}-drive" and drive["outputs"] == []
    assert [line for line in "".join(drive["source"]).splitlines() if line and not line.startswith("#")] == \
        [DRIVE_CELL[0], DRIVE_CELL[1], DRIVE_CELL[2] + "  # outside Colab it does nothing"]


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A working folder and the three variables persist sets, restored after the test."""
    for name in ("TLKIT_CACHE_DIR", "TLKIT_DATA_DIR", "KERAS_HOME"):
        monkeypatch.setenv(name, str(tmp_path / "before" / name))
    (tmp_path / "start").mkdir()
    monkeypatch.chdir(tmp_path / "start")
    return tmp_path


def test_persist_puts_out_dir_data_and_caches_under_one_folder(env, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "keras", raising=False)  # as in a fresh kernel
    root = env / "drive" / "tlkit"
    paths = colab.persist(root)
    assert paths == {"root": root, "TLKIT_CACHE_DIR": root / "cache", "TLKIT_DATA_DIR": root / "data",
                     "KERAS_HOME": root / "keras"}
    assert all(p.is_dir() for p in paths.values()) and Path.cwd() == root
    assert cache_dir() == root / "cache" and os.environ["TLKIT_DATA_DIR"] == str(root / "data")
    assert root / "keras" / "models" in weights_dirs()  # downloaded ImageNet weights are found there
    records_dir, _ = course.output_dirs("runs/interactive")  # a notebook's default out_dir
    assert records_dir.resolve() == root / "runs" / "interactive" / "records"
    assert capsys.readouterr().out == ""


def test_persist_after_keras_says_its_downloads_stay(env, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "keras", types.ModuleType("keras"))
    colab.persist(env / "drive")
    out = capsys.readouterr().out
    assert out.startswith("note: Keras was loaded before this cell") and "restart the runtime" in out


def test_keep_on_drive_does_nothing_outside_colab(env, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    before = {k: os.environ[k] for k in ("TLKIT_CACHE_DIR", "TLKIT_DATA_DIR", "KERAS_HOME")}
    assert colab.keep_on_drive(True, env / "drive") is None and colab.keep_on_drive(False) is None
    assert Path.cwd() == env / "start" and not (env / "drive").exists()
    assert {k: os.environ[k] for k in before} == before and capsys.readouterr().out == ""


def test_keep_on_drive_in_colab(env, monkeypatch, capsys):
    mounted = []
    fake = types.ModuleType("google.colab")
    fake.drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google.colab", fake)
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    assert colab.keep_on_drive(False, env / "drive") is None and mounted == []
    off = capsys.readouterr().out
    assert off.count("\n") == 1 and off.startswith("Drive is off:") and "out_dir" in off and "use_drive = True" in off
    paths = colab.keep_on_drive(True, env / "drive")
    assert mounted == [colab.MOUNT] and paths["root"] == env / "drive" and Path.cwd() == env / "drive"
    assert capsys.readouterr().out == f"Drive is on: out_dir, the data and the caches are kept under {env / 'drive'}\n"
