"""tlkit.findings: computed sentences say the right direction, and nothing inside the noise."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from tlkit import findings
from tlkit.evaluate import pack_correct


def rec(acc: float, n: int = 10000, wall: float = 100.0) -> dict:
    return {"metrics": {"test_accuracy": acc}, "evaluation": {"test": {"n": n}}, "wall_seconds": wall}


def test_compare_direction_and_points():
    f = findings.compare(rec(0.85), rec(0.80), "fine-tuning", "from scratch")
    assert f.direction == "greater" and "beats" in f.text and "5.0 points" in f.text
    g = findings.compare(rec(0.80), rec(0.85), "A", "B")
    assert g.direction == "less" and "falls behind" in g.text


def test_compare_inside_noise_is_no_clear_difference():
    f = findings.compare(rec(0.805, n=500), rec(0.80, n=500), "A", "B")
    assert f.direction == "none" and "no clear difference" in f.text
    # the same difference on many more images is clear
    assert findings.compare(rec(0.83, n=100000), rec(0.80, n=100000), "A", "B").direction == "greater"


def test_interval_shrinks_with_n():
    assert findings.interval(0.8, 10000) < findings.interval(0.8, 100)
    assert abs(findings.interval(0.5, 10000) - 0.0098) < 1e-3


def vrec(val: float, test: float, n_val: int = 1000, n: int = 10000) -> dict:
    return {"metrics": {"val_accuracy": val, "test_accuracy": test},
            "evaluation": {"val": {"n": n_val}, "test": {"n": n}}}


def test_best_chooses_on_validation_and_reports_test_once():
    # c has the highest test accuracy, but b the highest validation accuracy: b is chosen
    f = findings.best([vrec(0.60, 0.61), vrec(0.90, 0.80), vrec(0.70, 0.95)], ["a", "b", "c"])
    assert f.text.startswith("Chosen on validation accuracy: b, ahead of c by 20.0 points (validation accuracy "
                             "90.0% against 70.0%;")
    assert f.text.endswith("Its test accuracy: 80.0% (±0.8 points on 10,000 images).")
    assert f.direction == "greater" and f.numbers["chosen"] == 1 and f.numbers["reported"] == 0.80
    assert f.text.count("test accuracy") == 1  # no other run's test accuracy, nor the runner-up's
    tie = findings.best([vrec(0.80, 0.70, 200), vrec(0.81, 0.60, 200)], ["phase 1: head", "phase 2: all"])
    assert tie.text.startswith("Chosen on validation accuracy: phase 2: all, but not clearly ahead of "
                               "phase 1: head (validation accuracy 81.0% against 80.0%; the difference of 1.0 points "
                               "is inside the")
    assert tie.direction == "none" and tie.numbers["chosen"] == 1
    one = findings.best([vrec(0.5, 0.4)], ["only"])
    assert one.text == ("Chosen on validation accuracy: only (validation accuracy 50.0%). Its test accuracy: "
                        "40.0% (±1.0 points on 10,000 images).")


def test_best_without_validation_says_the_choice_is_on_test():
    f = findings.best([rec(0.6), vrec(0.9, 0.7)], ["a", "b"])
    assert f.text.startswith("Chosen on test accuracy (a has no validation accuracy, so the choice is made on "
                             "test accuracy, and that accuracy is optimistic: it picked the winner): b")
    with pytest.raises(ValueError):
        findings.best([rec(0.6)], ["a", "b"])


def test_trend_grows_shrinks_and_flat():
    up = findings.trend([0.1, 0.3, 1.0], [0.05, 0.06, 0.12], [10000] * 3, "training-set fraction")
    assert up.direction == "grows" and "grows" in up.text
    down = findings.trend([0.0, 0.5], [0.2, 0.05], [10000, 10000], "dropout")
    assert down.direction == "shrinks"
    flat = findings.trend([0.0, 0.5], [0.05, 0.051], [1000, 1000], "dropout")
    assert flat.direction == "none" and "No clear trend" in flat.text
    bumpy = findings.trend([1, 2, 3], [0.0, 0.3, 0.1], [10000] * 3, "x")
    assert "not step by step" in bumpy.text


def timed(seconds: list[float], phase: list[str] | None = None, extract: float | None = None) -> dict:
    """A record's training times: each epoch's end, counted from the start; its extraction."""
    return {"history": {"seconds": seconds, **({"phase": phase} if phase else {})},
            "model": {"extraction": {"extract_seconds": extract}} if extract else {}}


def test_epoch_cost_compares_epochs_with_extraction_apart():
    """Notebook 3's case: fine-tuning (2 epochs of 200 s) against the head (20 epochs of 2 s,
    after a 290-s extraction): per epoch, never fine-tuning against the extraction."""
    tuned, head = timed([200.0, 400.0]), timed([2.0 * i for i in range(1, 21)], extract=290.0)
    f = findings.epoch_cost(tuned, head, "fine-tuning", "the head")
    assert f.text == ("Fine-tuning: 200 s an epoch (2 epochs, 400 s). The head: 2 s an epoch (20 epochs, 40 s), "
                      "after extracting its features once in 290 s. An epoch of fine-tuning takes 100 times as "
                      "long as one of the head.")
    assert f.direction == "greater" and f.numbers["ratio"] == pytest.approx(100)
    assert "about as long" not in f.text  # the old wall-time sentence: 400 s against 330 s
    back = findings.epoch_cost(head, tuned, "the head", "fine-tuning")
    assert back.direction == "less" and "An epoch of fine-tuning takes 100 times as long as one of the head" in back.text


def test_epoch_cost_counts_the_fine_tuning_phases_and_both_extractions():
    both = timed([1.0, 2.0, 52.0, 102.0], phase=["head", "head", "finetune", "finetune"])
    assert findings.training_epochs(both) == (2, 100.0)
    stages = timed([10.0, 30.0], phase=["unfreeze20", "unfreeze64"])
    assert findings.training_epochs(stages) == (2, 30.0)
    big, small = timed([1.0, 2.0], extract=400.0), timed([0.9, 1.9], extract=40.0)
    f = findings.epoch_cost(big, small, "160 px", "32 px")
    assert f.direction == "none" and "An epoch of 160 px takes about as long as one of 32 px." in f.text
    assert f.text.endswith("Extracting the features took 10 times as long (400 s against 40 s).")
    assert findings.epoch_cost(timed([]), small, "a run", "b").text == \
        "A run has no per-epoch times in its record to compare."


def test_compare_at_counts_each_setting_and_the_change():
    a = [rec(0.60), rec(0.70), rec(0.80)]
    b = [rec(0.30), rec(0.60), rec(0.795)]
    f = findings.compare_at([500, 10, 100], [a[2], a[0], a[1]], [b[2], b[0], b[1]], "frozen", "scratch")
    assert f.text.startswith("Frozen against scratch at 3 settings of images per class: ahead at 2, "
                             "behind at 0, no clear difference at 1.")
    lines = f.text.splitlines()
    assert lines[1].startswith("- 10 images per class: frozen beats scratch by 30.0 points")
    assert "no clear difference" in lines[3] and lines[3].startswith("- 500")
    assert lines[4].startswith("From 10 to 500 images per class, the difference moves in favour of scratch")
    assert f.direction == "none"
    assert f.numbers["values"] == [10, 100, 500]
    same = findings.compare_at([1, 2], [rec(0.9), rec(0.9)], [rec(0.5), rec(0.5)], "a", "b")
    assert same.direction == "greater" and "No clear change" in same.text
    assert findings.compare_at([1], [rec(0.2)], [rec(0.5)], "a", "b").direction == "less"
    with pytest.raises(ValueError):
        findings.compare_at([1, 2], [rec(0.2)], [rec(0.5)], "a", "b")


def test_gap():
    r = {"metrics": {"train_accuracy": 0.95, "test_accuracy": 0.85},
         "evaluation": {"train": {"n": 5000}, "test": {"n": 10000}}}
    f = findings.gap(r, "CNN")
    assert f.direction == "greater" and "10.0 points higher" in f.text and "5,000 images" in f.text
    r["metrics"]["train_accuracy"] = 0.851
    assert findings.gap(r, "CNN").direction == "none"


def test_confusions_names_the_largest_off_diagonal_cells():
    cm = [[8, 2, 0], [5, 5, 0], [0, 1, 9]]
    f = findings.confusions(cm, ["cat", "dog", "ship"], top=2)
    assert f.text == ("The most frequent mistakes on the test set: dog taken for cat 5 times (50.0% of the "
                      "dog images); cat taken for dog 2 times (20.0% of the cat images).")
    assert findings.confusions([[3, 0], [0, 4]], ["a", "b"]).text == "No test image is misclassified."


def test_as_record_feeds_compare():
    a, b = findings.as_record({"accuracy": 0.9, "n": 10000}), findings.as_record({"accuracy": 0.8, "n": 10000})
    assert findings.compare(a, b, "with flips", "without").direction == "greater"


def scored(correct: np.ndarray, images: str = "test set 1") -> dict:
    """A record with its per-image results on the test split."""
    correct = np.asarray(correct, dtype=bool)
    return {"metrics": {"test_accuracy": float(correct.mean())},
            "evaluation": {"test": {"n": int(correct.size), "correct": pack_correct(correct), "images": images}}}


def planted(extra: int = 100, n: int = 10000) -> tuple[np.ndarray, np.ndarray]:
    """B right on 70% of the images; A right on those and on ``extra`` more."""
    b = np.random.default_rng(0).random(n) < 0.7
    a = b.copy()
    a[np.flatnonzero(~b)[:extra]] = True
    return a, b


def test_paired_test_finds_what_unpaired_intervals_call_noise():
    a, b = planted()  # 1.0 point apart, inside the ±1.3 points of two independent 10,000-image scores
    unpaired = findings.compare(scored(a, "test set 1"), scored(b, "test set 2"), "A", "B")
    assert unpaired.direction == "none" and unpaired.numbers["test"] == "interval"
    assert unpaired.text.endswith("unpaired intervals, as the two were scored on different images).")
    f = findings.compare(scored(a), scored(b), "A", "B")
    assert f.direction == "greater" and f.numbers["test"] == "mcnemar"
    assert (f.numbers["a_only"], f.numbers["b_only"]) == (100, 0) and f.numbers["p_value"] < 1e-20
    assert f.text == ("A beats B by 1.0 points (test accuracy 71.0% against 70.0%; paired on the same 10,000 "
                      "test images, 100 right only with the first and 0 only with the second: exact McNemar "
                      "test p < 0.001).")
    assert findings.compare(scored(b), scored(a), "B", "A").direction == "less"


def test_paired_test_sees_no_difference_between_identical_results():
    a, _ = planted()
    f = findings.compare(scored(a), scored(a.copy()), "A", "A again")
    assert f.direction == "none" and f.numbers["p_value"] == 1.0 and "no clear difference" in f.text
    # the same accuracy from different images right: many discordant pairs, evenly split
    b = np.roll(a, 1)
    g = findings.compare(scored(a), scored(b), "A", "B")
    assert g.direction == "none" and g.numbers["a_only"] == g.numbers["b_only"] > 1000


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_pairs():
    a = np.array([1] * 10 + [0] * 5 + [1] * 5, dtype=bool)
    b = np.array([0] * 10 + [0] * 5 + [1] * 5, dtype=bool)
    m = findings.mcnemar(a, b)
    assert (m["a_only"], m["b_only"], m["n"]) == (10, 0, 20)
    assert m["p_value"] == pytest.approx(2 * 0.5 ** 10)  # two-sided
    m2 = findings.mcnemar(np.r_[a, [False] * 3], np.r_[b, [True] * 3])
    assert m2["p_value"] == pytest.approx(binomtest(10, 13).pvalue)
    with pytest.raises(ValueError):
        findings.mcnemar(a, b[:5])


def test_records_without_per_image_results_fall_back_to_intervals_and_say_so():
    a, _ = planted()
    f = findings.compare(rec(0.85), scored(a), "A", "B")
    assert f.numbers["test"] == "interval" and f.direction == "greater"
    assert f.text.endswith("noise ±1.1 points; unpaired intervals, as a record holds no per-image results).")
    assert findings.paired(rec(0.5), rec(0.5)) == "a record holds no per-image results"


def test_as_record_keeps_per_image_results():
    a, b = planted()
    sa = {"accuracy": float(a.mean()), "n": a.size, "correct": pack_correct(a), "images": "x"}
    sb = {"accuracy": float(b.mean()), "n": b.size, "correct": pack_correct(b), "images": "x"}
    f = findings.compare(findings.as_record(sa), findings.as_record(sb), "with flips", "without")
    assert f.numbers["test"] == "mcnemar" and f.direction == "greater"


def test_setting_groups_mark_runs_of_the_same_setting():
    settings = [{"dropout": 0.2, "wd": 1e-4}, {"dropout": 0.0, "wd": 1e-4}, {"wd": 1e-4, "dropout": 0.2},
                {"dropout": 0.5, "wd": 1e-4}, {"dropout": 0.0, "wd": 1e-4}]
    assert findings.setting_groups(settings) == ["A", "B", "A", "", "B"]
    assert findings.setting_groups([{"a": 1}, {"a": 2}]) == ["", ""]


def test_run_to_run_spread_and_the_two_furthest_apart():
    a, b = planted(extra=300)
    runs = []
    for seed, (val, right) in enumerate([(0.72, b), (0.70, a), (0.71, b)]):
        r = scored(right)
        r["metrics"]["val_accuracy"], r["seed"] = val, seed
        runs.append(r)
    f = findings.run_to_run(runs, ["dropout = 0.2", "weight decay = 0.0001", "flips = True"],
                            {"dropout": 0.2, "weight_decay": 1e-4, "use_flips": True}, "A")
    assert f.text.startswith("3 runs of setting A (dropout 0.2, weight decay 0.0001, use flips on) differ only "
                             "in their seeds (0, 1, 2): validation accuracy from 70.0% to 72.0% (a spread of "
                             "2.0 points), test accuracy from 70.0% to 73.0% (a spread of 3.0 points).")
    # the furthest apart on test: seed 1 (a) against seed 0 (b), paired on the same images
    assert "The two furthest apart, image by image: weight decay = 0.0001 beats dropout = 0.2 by 3.0 points" in f.text
    assert f.numbers["val_spread"] == pytest.approx(0.02) and f.numbers["extremes"]["test"] == "mcnemar"
    for r in runs:
        r["seed"] = 0
    assert "share their seed too (0)" in findings.run_to_run(runs, ["x", "y", "z"], {"dropout": 0.2}).text
    assert findings.run_to_run(runs[:1], ["x"], {"dropout": 0.2}, "A").text == (
        "Only one run of setting A (dropout 0.2): its run-to-run noise is unknown.")


def test_spread_says_when_no_two_runs_differ_beyond_the_noise():
    close = [rec(0.6213, n=1500), rec(0.6240, n=1500), rec(0.6067, n=1500)]  # notebook 4's cpu rows
    f = findings.spread(close, ["mobilenetv2", "mobilenetv2 alpha 0.35", "mobilenet alpha 0.25"])
    assert f.direction == "none" and f.numbers["clear_pairs"] == 0 and f.numbers["pairs"] == 3
    assert f.text.startswith("The 3 test accuracies span 60.7% to 62.4% (1.7 points), and no two of them differ "
                             "clearly (each pair compared by their intervals where not scored on the same images)")
    a, b = planted()
    apart = findings.spread([scored(a), scored(b), scored(a.copy())], ["a", "b", "a again"])
    assert apart.direction == "greater" and apart.text.endswith(
        "; 2 of the 3 pairs differ clearly (compared image by image).")
