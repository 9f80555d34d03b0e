"""tlkit.bench: goals marked met or not met from the measured figures; one bench file, one commit."""
from __future__ import annotations

import json
import re
from pathlib import Path

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
    assert verdicts({"scratch": scratch(0.885, 880, 0.70)})[goal] is True
    assert verdicts({"scratch": scratch(0.86, 880, 0.70)})[goal] is False  # accuracy (0.88)
    assert verdicts({"scratch": scratch(0.885, 950, 0.70)})[goal] is False  # time
    assert verdicts({"scratch": scratch(0.885, 880, 0.90)})[goal] is False  # baseline
    assert verdicts({"scratch": scratch(0.99, 10, 0.5, "generated:synthetic")})[goal] is None  # not CIFAR-10


def test_frozen_finetune_and_kernel_goals():
    b = {"scratch": {**scratch(0.885, 880, 0.70), "precision": "mixed_bfloat16"},
         "frozen_mobilenetv2": {"by_size": {"32": 0.3, "160": 0.81}, "train_images": 45000,
                                "dataset": "cifar10-jpg.tar.gz"},
         "finetune": {"test_accuracy": 0.88, "wall_seconds": 1700, "dataset": "cifar10"},
         "cpu_kernels": {"cnn_train": {"onednn_off_float32": 150.0, "onednn_on_float32": 250.0,
                                       "onednn_on_bfloat16": 370.0, "precision_choice": "mixed_bfloat16"}}}
    v = verdicts(b)
    assert v[bench.GOALS["frozen"][0]] is True
    assert v[bench.GOALS["finetune"][0]] is False  # below the CNN from scratch
    assert v[bench.GOALS["kernels"][0]] is True
    b["finetune"]["test_accuracy"] = 0.895
    assert verdicts(b)[bench.GOALS["finetune"][0]] is False  # above it, but below 0.90
    b["finetune"]["test_accuracy"] = 0.905
    assert verdicts(b)[bench.GOALS["finetune"][0]] is True
    b["finetune"]["wall_seconds"] = 1900
    assert verdicts(b)[bench.GOALS["finetune"][0]] is False  # over 30 minutes
    b["scratch"]["precision"] = "float32"  # trained in the slower precision of the kernels part
    assert verdicts(b)[bench.GOALS["kernels"][0]] is False


def test_a_part_measured_under_load_is_flagged():
    b = {"scratch": scratch(0.885, 880, 0.70),
         "measured": {"scratch": {"others": 0.4}, "frozen": {"others": 0.02}},
         "frozen_mobilenetv2": {"by_size": {"128": 0.81}, "train_images": 45000, "dataset": "cifar10"}}
    rows = {g["goal"]: g for g in bench.goal_rows(b)}
    assert "40%" in rows[bench.GOALS["scratch"][0]]["flag"]
    assert "flag" not in rows[bench.GOALS["frozen"][0]]
    assert "(measured while other processes took 40%" in bench.bench_markdown(
        {**b, "goals": list(rows.values())}, Path("/nonexistent"), ".")


def test_backends_goal_and_the_estimate_on_jax():
    from tlkit import estimate

    row = {"model": "cnn", "img_size": 32, "batch": 256, "tensorflow": 600.0, "jax": 100.0, "ratio": 6.0}
    b = {"backends": {"steps": 4, "cnn_train": row}}
    goal = {g["goal"]: g for g in bench.goal_rows(b)}[bench.GOALS["backends"][0]]
    assert goal["met"] is True and "use the TensorFlow backend" in goal["measured"]
    assert estimate.costs_from_bench.__name__  # the estimate prices JAX on a CPU from the same ratio
    assert estimate.backend_advice(1.2) is None and "6.0x" in estimate.backend_advice(6.0)
    costs = {**estimate.COSTS, "jax_cpu_slowdown": 6.0}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(estimate, "COSTS", costs)
        tf, jax = estimate.hardware([], 2, "tensorflow"), estimate.hardware([], 2, "jax")
    assert jax.speedup == pytest.approx(tf.speedup / 6.0)
    assert "use the TensorFlow backend" in jax.source and "JAX" not in tf.source


def test_extraction_cost_grows_with_images_times_pixels():
    lines = bench.extraction_cost_lines({"1.0": {"extraction_seconds": {"64": 100.0, "128": 400.0},
                                                 "extracted_images": 60000}})
    assert lines[0].count("µs per megapixel") == 2
    per = [float(v.replace(",", "")) for v in re.findall(r"\(([\d,]+) µs per megapixel", lines[0])]
    assert per[0] == pytest.approx(per[1])  # 4x the pixels, 4x the seconds: flat


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


# --------------------------------------------------------------------------- the gpu suite

H100, A100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"
GPU_GOALS = ["gpu_course", "gpu_scratch", "frozen", "gpu_finetune", "resnet50"]


def gpu_bench(**changes) -> dict:
    """A gpu-suite bench file measured on one H100, every goal met; ``changes`` update a part
    (None: the part was not run)."""
    b = {"suite": "gpu", "dry_run": False, "hardware": {"gpus": [H100]},
         "gpu_course": {"profile": "gpu", "total": 1100.0, "status": "ok", "gpus": [H100]},
         "scratch": scratch(0.94, 600, 0.80, "cifar10"),
         "frozen_mobilenetv2": {"by_size": {"224": 0.90}, "train_images": 45000, "dataset": "cifar10"},
         "finetune": {"test_accuracy": 0.96, "wall_seconds": 300, "dataset": "cifar10"},
         "resnet50": {"img_size": 224, "precision": "mixed_bfloat16", "on_gpu": True, "device": H100,
                      "by_batch": {"128": 1500.0}, "batch": 128, "images_per_second": 1500.0,
                      "seconds": 20.0, "warmup_steps": 10}}
    for key, change in changes.items():
        b[key] = None if change is None else {**b[key], **change}
    return b


def judged(b: dict) -> dict:
    """Goal key → met, or why it is not judged."""
    names = {bench.GOALS[k][0]: k for k in bench.GOALS}
    return {names[g["goal"]]: g["met"] if g["met"] is not None else g["why"] for g in bench.goal_rows(b)}


def test_gpu_goals_are_judged_where_measured_as_stated():
    """On one H100 every gpu goal is judged; the course time only there, ResNet-50 on any GPU."""
    assert judged(gpu_bench()) == dict.fromkeys(GPU_GOALS, True)
    hardware = "not measured on this hardware (the goal is for one H100)"
    for changes, key, verdict in [
            (dict(gpu_course={"total": 1300.0}), "gpu_course", False),
            (dict(gpu_course={"status": "failed: ['03']"}), "gpu_course", False),
            (dict(gpu_course={"gpus": [H100, H100]}), "gpu_course", hardware),
            (dict(gpu_course={"gpus": [A100]}), "gpu_course", hardware),
            (dict(scratch={"test_accuracy": 0.92}), "gpu_scratch", False),
            (dict(scratch={"dataset": "generated:synthetic"}), "gpu_scratch", bench.NOT_CIFAR10),
            (dict(frozen_mobilenetv2={"by_size": {"224": 0.79}}), "frozen", False),
            (dict(finetune={"test_accuracy": 0.94}), "gpu_finetune", False),
            (dict(resnet50={"images_per_second": 1200.0}), "resnet50", False),
            (dict(resnet50={"device": A100}), "resnet50", True),  # the published figure's GPU
            (dict(resnet50={"on_gpu": False, "device": "CPU: AMD EPYC"}), "resnet50",
             "not measured on this hardware (a GPU goal)"),
            (dict(resnet50={"batch": None, "images_per_second": None, "by_batch": {"256": None}}), "resnet50",
             False),  # no batch fitted
            (dict(finetune=None), "gpu_finetune", bench.NOT_RUN)]:
        v = judged(gpu_bench(**changes))
        assert list(v) == GPU_GOALS and v[key] == verdict, (changes, v)
        assert all(v[k] is True for k in GPU_GOALS if k != key), changes
    assert judged({**gpu_bench(), "dry_run": True}) == dict.fromkeys(GPU_GOALS, bench.DRY)


def test_gpu_suite_on_a_faked_h100(tmp_path, monkeypatch):
    """With a GPU the gpu suite runs in full: the gpu course's times from its summary, the
    ResNet-50 probe at the suite's settings (its best batch; one that did not fit said so),
    each goal judged; a smoke summary, a CPU-only part or a dry file to continue are refused."""
    import tlkit.system as system

    monkeypatch.setattr(records, "git_commit", lambda: "a" * 40)
    monkeypatch.setattr(bench, "_dirty", lambda: False)
    monkeypatch.setattr(bench, "accelerators", lambda: ["/physical_device:GPU:0"])
    monkeypatch.setattr(system, "accelerators", lambda: [H100])
    probed = []

    def throughput(name, size, batches, *, seconds, warmup_steps):
        probed.append((name, size, batches, seconds, warmup_steps))
        return {"64": 1300.0, "128": 1500.0, "256": None}

    monkeypatch.setattr(bench, "train_throughput", throughput)
    summary = tmp_path / "summary.json"
    course = {"profile": "gpu", "seconds": 1100.0, "failed": [], "hardware": {"gpus": [H100]},
              "notebooks": [{"notebook": "01_cnn_from_scratch", "seconds": 300.0}]}
    summary.write_text(json.dumps(course))
    quiet = dict(log=lambda *a, **k: None)
    result = bench.run_bench("gpu", out=tmp_path / "b", course_summary=summary, only=["course", "resnet50"],
                             **quiet)
    r = bench.SUITES["gpu"]["resnet50"]
    assert probed == [("resnet50", 224, r["batches"], r["seconds"], r["warmup_steps"])]
    assert not result["dry_run"] and result["resnet50"]["batch"] == 128 and result["resnet50"]["device"] == H100
    assert result["gpu_course"]["01_cnn_from_scratch"] == 300.0
    saved = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert judged(saved) == {"gpu_course": True, "gpu_scratch": bench.NOT_RUN, "frozen": bench.NOT_RUN,
                             "gpu_finetune": bench.NOT_RUN, "resnet50": True}
    md = (tmp_path / "b" / "bench.md").read_text()
    assert "| 256 | out of memory |" in md and "| 01_cnn_from_scratch | 300.0 |" in md and "Dry run" not in md
    summary.write_text(json.dumps({**course, "profile": "smoke"}))
    with pytest.raises(TlkitError, match="is a smoke course run; this bench times the gpu course"):
        bench.run_bench("gpu", out=tmp_path / "c", course_summary=summary, only=["course"], **quiet)
    with pytest.raises(TlkitError, match="the gpu suite has no kernels part"):
        bench.run_bench("gpu", out=tmp_path / "c", only=["kernels"], **quiet)
    with pytest.raises(TlkitError, match="--dry-run is for the gpu suite"):
        bench.run_bench("smoke", out=tmp_path / "c", dry_run=True, **quiet)
    with pytest.raises(TlkitError, match="holds a full run of the gpu suite and this one is dry"):
        bench.run_bench("gpu", out=tmp_path / "b", only=["resnet50"], dry_run=True, **quiet)


def test_gpu_dry_run_on_a_cpu_judges_no_goal(tmp_path, monkeypatch):
    """Without a GPU the gpu suite runs dry: the same parts at the smoke sizes (here the course
    part on a smoke run's summary and the real ResNet-50 probe; `make test` runs every part)
    and a goals table with every goal 'not measured (dry run)'."""
    monkeypatch.setattr(bench, "accelerators", lambda: [])
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"profile": "smoke", "seconds": 200.0, "failed": [], "hardware": {"gpus": []},
                                   "notebooks": [{"notebook": "01_cnn_from_scratch", "seconds": 30.0}]}))
    result = bench.run_bench("gpu", out=tmp_path, course_summary=summary, only=["course", "resnet50"],
                             log=lambda *a, **k: None)
    assert result["dry_run"] and result["resnet50"]["img_size"] == bench.DRY_RUN["resnet50"]["img_size"]
    assert result["resnet50"]["images_per_second"] > 0 and not result["resnet50"]["on_gpu"]
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert judged(saved) == dict.fromkeys(GPU_GOALS, bench.DRY)
    md = (tmp_path / "bench.md").read_text()
    assert "**Dry run:**" in md and md.count("| not measured (dry run) |") == len(GPU_GOALS)


def test_train_throughput_reports_a_batch_that_does_not_fit(monkeypatch):
    """A batch the device has no memory for is None; any other error is raised."""
    from types import SimpleNamespace

    class Model:
        error: Exception = RuntimeError("RESOURCE_EXHAUSTED: OOM when allocating tensor")

        def train_on_batch(self, x, y):
            if x.shape[0] > 4:
                raise self.error

    monkeypatch.setattr(bench, "_trainable", lambda name, size, n: SimpleNamespace(model=Model()))
    out = bench.train_throughput("resnet50", 8, [2, 8], seconds=0.05, warmup_steps=1)
    assert list(out) == ["2", "8"] and out["2"] > 0 and out["8"] is None
    Model.error = ValueError("a bad shape")
    with pytest.raises(ValueError, match="a bad shape"):
        bench.train_throughput("resnet50", 8, [8], seconds=0.05, warmup_steps=1)


def test_backend_probe_runs_each_backend_in_its_own_process(monkeypatch):
    import subprocess
    seen = []

    def run(cmd, env, **kwargs):
        seen.append((env["KERAS_BACKEND"], env.get("XLA_FLAGS", "")))
        if bench.XLA_ONEDNN in env.get("XLA_FLAGS", ""):  # a JAX without the experimental flag
            return subprocess.CompletedProcess(cmd, 1, "", "Unknown flags in XLA_FLAGS")
        return subprocess.CompletedProcess(cmd, 0, "300.0\n" if env["KERAS_BACKEND"] == "tensorflow" else "100.0\n", "")

    monkeypatch.setattr(bench.subprocess, "run", run)
    out = bench.backend_probe(["cnn_train"], steps=1)
    assert [b for b, _ in seen] == ["tensorflow", "jax", "jax"] and bench.XLA_ONEDNN in seen[2][1]
    assert out["cnn_train"]["ratio"] == 3.0 and out["cnn_train"]["jax_onednn"] is None
    monkeypatch.setattr(bench.subprocess, "run", lambda cmd, env, **k: subprocess.CompletedProcess(cmd, 1, "", "boom"))
    with pytest.raises(TlkitError, match="cnn_train workload failed on tensorflow: boom"):
        bench.backend_probe(["cnn_train"], steps=1)


def test_frozen_goal_is_judged_on_the_head_chosen_on_validation():
    """The frozen part's four heads: the goal takes the test accuracy of the one chosen on
    validation, not the best test figure; the Performance page lists all four."""
    heads = {"last layer, adamw": dict(val_accuracy=0.76, test_accuracy=0.76, head_seconds=40),
             "last layer, linear": dict(val_accuracy=0.77, test_accuracy=0.81, head_seconds=90),
             "taps + last layer, linear": dict(val_accuracy=0.81, test_accuracy=0.79, head_seconds=120)}
    frozen = {"by_size": {"128": 0.76}, "train_images": 45000, "dataset": "cifar10", "heads": heads,
              "heads_img_size": 128, "taps": ["block_13_expand_relu"],
              "chosen": "taps + last layer, linear", "test_accuracy": 0.79}
    goal = bench.GOALS["frozen"][0]
    assert verdicts({"suite": "cpu", "frozen_mobilenetv2": frozen})[goal] is False
    assert verdicts({"suite": "cpu", "frozen_mobilenetv2": {**frozen, "test_accuracy": 0.80}})[goal] is True
    row = next(g for g in bench.goal_rows({"suite": "cpu", "frozen_mobilenetv2": frozen}) if g["goal"] == goal)
    assert "0.790 (taps + last layer, linear head at 128 px, chosen on validation" in row["measured"]


def test_frozen_part_chooses_size_and_head_on_validation():
    result: dict = {}
    bench._frozen(result, bench.SUITES["smoke"], None, None, lambda *a, **k: None)
    f = result["frozen_mobilenetv2"]
    assert set(f["heads"]) == {"last layer, adamw", "last layer, linear", "taps + last layer, adamw",
                               "taps + last layer, linear"}
    assert f["heads_img_size"] == int(max(f["val_by_size"], key=f["val_by_size"].get))
    assert f["heads"]["last layer, adamw"]["test_accuracy"] == f["by_size"][str(f["heads_img_size"])]
    assert f["chosen"] == max(f["heads"], key=lambda k: f["heads"][k]["val_accuracy"])
