"""tlkit.estimate: each notebook's expected time, from the reference CPU bench's per-image
costs (one source: the committed bench.json) and, for GPUs, published rates."""
from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT
from tlkit import course, estimate
from tlkit.estimate import COSTS, hardware

BENCH = ROOT / "book" / "reference" / "bench" / "bench.json"
REFERENCE = ROOT / "book" / "reference" / "cpu" / "summary.json"
REF_CPU = hardware([], COSTS["bench"]["cores"])
FLOWERS = [3107, 346, 864]  # notebook 7 knows its folder's split sizes once it has read it


def settings(nb: str, profile: str) -> dict:
    return {**course.profile_settings(nb, profile), "profile": profile,
            **({"split_sizes": FLOWERS} if nb == "07" else {})}


def test_costs_are_the_committed_reference_bench():
    bench = json.loads(BENCH.read_text(encoding="utf-8"))
    assert estimate.costs_from_bench(bench) == COSTS, (
        "tlkit/estimate.py's COSTS differ from book/reference/bench/bench.json: paste the output "
        "of python -m tlkit.estimate into COSTS")
    assert COSTS["bench"]["git_commit"] == bench["git_commit"]


def ran_with(nb: str) -> dict:
    """The cpu settings notebook ``nb`` of the committed course run ran with (its records say;
    the profile's today where it kept no record or a setting is newer than the run)."""
    now = settings(nb, "cpu")
    recs = sorted((REFERENCE.parent / "records").glob(f"{nb}_*.json"))
    if not recs:
        return now
    params = json.loads(recs[0].read_text(encoding="utf-8"))["params"]
    return {**now, **{k: v for k, v in params.items() if k in now and k != "profile"}}


def cached_extraction(nb: str, images: int) -> float:
    """Expected seconds of the extractions notebook ``nb`` of the committed course run read from
    a cache filled before it (its records say which: every record of a size read it cached)."""
    hits: dict[int, list[bool]] = {}
    for path in (REFERENCE.parent / "records").glob(f"{nb}_*.json"):
        extraction = json.loads(path.read_text(encoding="utf-8"))["model"].get("extraction")
        if extraction:
            hits.setdefault(extraction["img_size"], []).append(all(extraction["from_cache"].values()))
    return sum(images * estimate.extraction_cost("mobilenetv2", 1.0, size)
               for size, cached in hits.items() if all(cached))


def test_the_cpu_estimates_agree_with_the_reference_course_run():
    """The cpu profile on the reference CPU, against the committed course run on that CPU,
    with the settings that run used, less the extractions it found cached (a first run makes
    them). Only a course run and a bench of one commit are compared, made on one machine (the
    records name a CPU only by its model name: two machines both called "AMD EPYC" were measured
    44% apart on MobileNetV2 fine-tuning, 172 against 247 s an epoch, and alike on the CNN)."""
    bench = json.loads(BENCH.read_text(encoding="utf-8"))
    summary = json.loads(REFERENCE.read_text(encoding="utf-8"))
    if summary.get("git_commit") != bench["git_commit"]:
        pytest.skip(f"the reference course run ({str(summary.get('git_commit'))[:7]}) and bench "
                    f"({bench['git_commit'][:7]}) are not from one commit: regenerate both (README)")
    ran = {course.notebook_id(r["notebook"]): r["seconds"] for r in summary["notebooks"]}
    assert summary["hardware"]["cpu"] == COSTS["bench"]["cpu"]
    train, val, test = estimate.split_sizes("cifar10", None)
    for nb in ("01", "02", "03", "05", "06"):
        expected = (estimate.expected_seconds(nb, ran_with(nb), REF_CPU)
                    - cached_extraction(nb, 2 * train + val + test))
        assert 0.75 < expected / ran[nb] < 1.25, (nb, expected, ran[nb])


def test_a_cpu_with_no_profile_says_what_it_runs_and_how_long(monkeypatch, capsys):
    """The notebook's setup on a CPU with profile unset: the cpu settings, said, then the time."""
    monkeypatch.delenv("TLKIT_PROFILE", raising=False)
    monkeypatch.setattr(course, "accelerators", lambda: [])
    monkeypatch.setattr(estimate, "accelerators", lambda: [])
    ns = {**course.GPU["01"], "profile": None, **course.RUN_SETTINGS}
    cfg = course.resolve("01", ns)
    seconds = estimate.announce("01", cfg)
    profile, chosen, expected = capsys.readouterr().out.splitlines()
    assert profile.startswith('profile: "cpu" (no GPU here') and "epochs=10" in chosen
    assert re.fullmatch(r"expected time on this CPU \(\d+ cores\): about \d+ min for a first run of the cpu "
                        r"settings \(from per-image costs measured on 2 AMD EPYC cores .*; downloads not included\)",
                        expected), expected
    assert seconds == estimate.expected_seconds("01", cfg, hardware([]))


@pytest.mark.parametrize("name, tflops", [("Tesla T4", 65), ("NVIDIA L4", 121), ("NVIDIA A100-SXM4-40GB", 312),
                                          ("NVIDIA A100 80GB PCIe", 312), ("NVIDIA H100 80GB HBM3", 989),
                                          ("NVIDIA H100 PCIe", 756), ("NVIDIA H200", 989),
                                          ("NVIDIA L40S", None), ("NVIDIA A10G", None), ("TPU v4", None)])
def test_gpus_by_their_driver_names(name, tflops):
    hw = hardware([name])
    if tflops is None:
        assert hw.speedup is None and estimate.expected_seconds("01", settings("01", "gpu"), hw) is None
    else:
        assert hw.speedup == pytest.approx(tflops * 1e12 * estimate.GPU_UTILISATION / COSTS["cpu_flops"])
        assert "an estimate, not measured" in hw.source and f"{tflops:g} TFLOPS" in hw.source


@pytest.mark.parametrize("nb", sorted(course.DEPENDS))
def test_faster_hardware_is_expected_sooner(nb):
    s = settings(nb, "gpu")
    times = [estimate.expected_seconds(nb, s, hw) for hw in
             (REF_CPU, hardware([], 8), hardware(["Tesla T4"]), hardware(["NVIDIA H100 80GB HBM3"]))]
    assert times == sorted(times, reverse=True) and times[-1] >= estimate.overhead_seconds(nb)
    assert estimate.expected_seconds(nb, settings(nb, "cpu"), REF_CPU) < times[0]


def test_a_folder_is_estimated_once_it_is_read(capsys):
    """Notebook 7 on a folder: no estimate before its size is known, then one from the split
    sizes it found, with its fixed cost as the bench measured it (the largest measured for a
    notebook newer than the bench)."""
    s = {**course.profile_settings("07", "cpu"), "profile": "cpu"}
    assert estimate.announce("07", s, REF_CPU) is None
    assert estimate.overhead_seconds("07") == COSTS["overhead_s"].get("07", max(COSTS["overhead_s"].values()))
    assert estimate.overhead_seconds("99") == max(COSTS["overhead_s"].values())
    seconds = estimate.announce("07", {**s, "split_sizes": FLOWERS}, REF_CPU)
    fine = estimate.finetune_work(tuple(FLOWERS), s)
    assert seconds > estimate.overhead_seconds("07") + fine.seconds
    assert estimate.announce_work("fine-tuning", fine, REF_CPU) == pytest.approx(fine.seconds)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("no estimate (the reference bench measured nothing for 'flowers')")
    assert lines[1].startswith("expected time on this CPU (2 cores): about") and "cpu settings" in lines[1]
    assert lines[2].startswith("expected time of fine-tuning on this CPU (2 cores): about")


def test_a_gpu_step_costs_at_least_the_floor():
    w = estimate.WORK["05"](settings("05", "gpu"))
    h100 = hardware(["NVIDIA H100 80GB HBM3"])
    assert w.steps * h100.step_s > w.seconds / h100.speedup  # many small head steps
    assert estimate.expected_seconds("05", settings("05", "gpu"), h100) == pytest.approx(
        COSTS["overhead_s"]["05"] + w.steps * estimate.GPU_STEP_S)


def test_extraction_costs():
    mnv2 = COSTS["extract_s"]["mobilenetv2"]
    assert estimate.extraction_cost("mobilenetv2", 1.0, 160) == mnv2["160"]
    assert estimate.extraction_cost("mobilenetv2", None, 224) == pytest.approx(mnv2["160"] * (224 / 160) ** 2)
    assert estimate.extraction_cost("mobilenetv2", 1.0, 100) == pytest.approx(mnv2["96"] * (100 / 96) ** 2)
    assert estimate.extraction_cost("mobilenet", 0.25, 128) == COSTS["extract_s"]["mobilenetv2 alpha 0.35"]["128"]
    assert estimate.extraction_cost("resnet50", None, 256) == pytest.approx(COSTS["infer_s"]["resnet50"][1] * 4)
    with pytest.raises(estimate.Unmeasured):
        estimate.extraction_cost("densenet121", None, 224)


def test_no_estimate_says_why(capsys):
    assert estimate.announce("01", settings("01", "smoke"), REF_CPU) is None  # synthetic data
    assert estimate.announce("04", {**settings("04", "gpu"), "models_to_compare": ["vgg16", "mobilenet"]},
                             REF_CPU) is None
    assert estimate.announce("01", settings("01", "gpu"), hardware(["NVIDIA A10G"])) is None
    unmeasured = "expected time on this CPU (2 cores): no estimate (the reference bench measured nothing for {!r})"
    assert capsys.readouterr().out.splitlines() == [
        unmeasured.format("synthetic"), unmeasured.format("mobilenet"),
        "expected time on NVIDIA A10G: no estimate (no published rate for it in tlkit.estimate.GPU_TFLOPS)"]


def test_split_sizes_and_durations():
    assert estimate.split_sizes("cifar10", None) == (45_000, 5_000, 10_000)
    assert estimate.split_sizes("cifar10", 150) == (1_350, 150, 1_500)
    assert estimate.split_sizes("cifar100", 1000) == (45_000, 5_000, 10_000)
    assert [estimate.duration(s) for s in (10, 600, 5399, 9000)] == [
        "about 1 min", "about 10 min", "about 90 min", "about 2.5 h"]


@pytest.mark.parametrize("name", course.NOTEBOOKS)
def test_each_notebook_announces_its_time_after_resolving(name):
    nb = course.notebook_id(name)
    cells = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
    lines = next("".join(c["source"]) for c in cells if f'course.resolve("{nb}", globals())' in "".join(c["source"]))
    lines = lines.splitlines()
    i = lines.index(f'cfg = course.resolve("{nb}", globals())')
    assert lines[i + 1].startswith(f'estimate.announce("{nb}", cfg)')
