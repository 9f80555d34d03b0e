"""tlkit.bench: goals marked met or not met from the measured figures; one bench file, one commit."""
from __future__ import annotations

import json

import pytest

import tlkit.bench as bench
import tlkit.records as records
from tlkit import TlkitError


def scratch(acc: float, wall: float, baseline: float, dataset: str = "/data/cifar10-jpg.tar.gz") -> dict:
    return {"test_accuracy": acc, "wall_seconds": wall, "epochs": 10, "train_images": 45000,
            "baseline_test_accuracy": baseline, "baseline_wall_seconds": 300, "dataset": dataset}


def verdicts(b: dict) -> dict:
    return {g["goal"]: g["met"] for g in bench.goal_rows(b)}


def test_scratch_goal_needs_accuracy_time_and_the_baseline():
    goal = bench.GOALS["scratch"][0]
    assert verdicts({"scratch": scratch(0.86, 880, 0.70)})[goal] is True
    assert verdicts({"scratch": scratch(0.84, 880, 0.70)})[goal] is False  # accuracy
    assert verdicts({"scratch": scratch(0.86, 950, 0.70)})[goal] is False  # time
    assert verdicts({"scratch": scratch(0.86, 880, 0.90)})[goal] is False  # baseline
    assert verdicts({"scratch": scratch(0.99, 10, 0.5, "generated:synthetic")})[goal] is None  # not CIFAR-10


def test_frozen_finetune_and_kernel_goals():
    b = {"scratch": scratch(0.86, 880, 0.70),
         "frozen_mobilenetv2": {"by_size": {"32": 0.3, "160": 0.81}, "train_images": 45000,
                                "dataset": "cifar10-jpg.tar.gz"},
         "finetune": {"test_accuracy": 0.85, "wall_seconds": 2000},
         "cpu_kernels": {"cnn_train": {"onednn_off_float32": 150.0, "onednn_on_float32": 250.0,
                                       "onednn_on_bfloat16": 370.0, "precision_choice": "mixed_bfloat16"}}}
    v = verdicts(b)
    assert v[bench.GOALS["frozen"][0]] is True
    assert v[bench.GOALS["finetune"][0]] is False  # below the CNN from scratch
    assert v[bench.GOALS["kernels"][0]] is True
    b["finetune"]["test_accuracy"] = 0.87
    assert verdicts(b)[bench.GOALS["finetune"][0]] is True
    b["finetune"]["wall_seconds"] = 3000
    assert verdicts(b)[bench.GOALS["finetune"][0]] is False  # over 45 minutes


def test_only_refuses_a_bench_file_of_another_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "git_commit", lambda: "a" * 40)
    monkeypatch.setattr(bench, "_dirty", lambda: False)
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"seconds": 12.0, "failed": [], "notebooks": [
        {"notebook": "01_cnn_from_scratch", "seconds": 12.0}]}))
    out = tmp_path / "bench"
    out.mkdir()
    (out / "bench.json").write_text(json.dumps({"suite": "smoke", "git_commit": "b" * 40, "dirty": False,
                                                "scratch": scratch(0.5, 10, 0.4)}))
    with pytest.raises(TlkitError, match="measured at commit bbbbbbbbbb.*run every part"):
        bench.run_bench("smoke", out=out, course_summary=summary, only=["course"], log=lambda *a, **k: None)
    # the same commit: the part is re-run, the others are kept, each part says when it ran
    (out / "bench.json").write_text(json.dumps({"suite": "smoke", "git_commit": "a" * 40, "dirty": False,
                                                "scratch": scratch(0.5, 10, 0.4)}))
    result = bench.run_bench("smoke", out=out, course_summary=summary, only=["course"],
                             log=lambda *a, **k: None)
    assert result["smoke_course_seconds"]["total"] == 12.0 and result["scratch"]["test_accuracy"] == 0.5
    assert set(result["measured"]) == {"course"} and "load_before" in result["measured"]["course"]
    saved = json.loads((out / "bench.json").read_text())
    assert [g["met"] for g in saved["goals"] if g["goal"].startswith("smoke course")] == [True]
    assert (out / "bench.md").is_file()


def test_curve_pairs_seconds_with_validation_accuracy():
    assert bench.curve({"seconds": [10.04, 20.0], "val_accuracy": [0.51234, 0.6], "loss": [1, 2]}) == [
        {"epoch": 1, "seconds": 10.0, "val_accuracy": 0.5123}, {"epoch": 2, "seconds": 20.0, "val_accuracy": 0.6}]


def test_older_bench_files_without_a_dataset_field_are_judged_by_suite():
    frozen = {"by_size": {"32": 0.245, "160": 0.729}, "train_images": 9000}
    goal = bench.GOALS["frozen"][0]
    assert verdicts({"suite": "cpu", "frozen_mobilenetv2": frozen})[goal] is False
    assert verdicts({"suite": "smoke", "frozen_mobilenetv2": frozen})[goal] is None


def test_finetune_part_runs_the_course_recipe():
    """The finetune part runs tlkit.finetune.fine_tune with notebook 3's smoke settings and
    reports the recipe's time in its three parts."""
    result: dict = {}
    bench._finetune(result, bench.SUITES["smoke"], None, None, lambda *a, **k: None)
    ft = result["finetune"]
    s = ft["settings"]
    assert s == bench._settings("03", bench.SUITES["smoke"]) and ft["weights_source"] == "random"
    assert [p["epoch"] for p in ft["curve"]] == list(range(1, s["finetune_epochs"] + 1))
    parts = ft["extract_seconds"] + ft["head_seconds"] + ft["finetune_seconds"]
    assert min(ft["extract_seconds"], ft["head_seconds"], ft["finetune_seconds"]) > 0
    assert ft["wall_seconds"] == pytest.approx(parts, abs=0.2)
    assert 0 <= ft["head_test_accuracy"] <= 1 and 0 <= ft["test_accuracy"] <= 1 and ft["tta"]
