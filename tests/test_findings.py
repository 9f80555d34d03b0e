"""tlkit.findings: computed sentences say the right direction, and nothing inside the noise."""
from __future__ import annotations

from tlkit import findings


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


def test_best_names_the_top_run():
    f = findings.best([rec(0.6), rec(0.9), rec(0.7)], ["a", "b", "c"])
    assert f.text.startswith("b scores highest") and f.direction == "greater"


def test_trend_grows_shrinks_and_flat():
    up = findings.trend([0.1, 0.3, 1.0], [0.05, 0.06, 0.12], [10000] * 3, "training-set fraction")
    assert up.direction == "grows" and "grows" in up.text
    down = findings.trend([0.0, 0.5], [0.2, 0.05], [10000, 10000], "dropout")
    assert down.direction == "shrinks"
    flat = findings.trend([0.0, 0.5], [0.05, 0.051], [1000, 1000], "dropout")
    assert flat.direction == "none" and "No clear trend" in flat.text
    bumpy = findings.trend([1, 2, 3], [0.0, 0.3, 0.1], [10000] * 3, "x")
    assert "not step by step" in bumpy.text


def test_cost_ratio():
    f = findings.cost_ratio(rec(0.8, wall=300), rec(0.8, wall=100), "fine-tuning", "the head")
    assert "3.0 times" in f.text and f.direction == "greater"
    assert findings.cost_ratio(rec(0.8, wall=81), rec(0.8, wall=86), "a", "b").direction == "none"
