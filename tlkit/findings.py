"""Findings: sentences that state a result, computed from run records, never typed.

Each function compares records and returns a :class:`Finding`: the sentence with its
numbers and the right direction, or "no clear difference" when the difference lies inside
the noise. Noise is judged with a binomial interval on the test-set size: an accuracy
measured on ``n`` images is uncertain by about ``1.96 * sqrt(p (1 - p) / n)`` (95%).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

Z = 1.96  # two-sided 95%


@dataclass(frozen=True)
class Finding:
    """One computed statement and the numbers behind it."""

    text: str
    direction: str  # "greater", "less", "none" (inside the noise), "grows", "shrinks"
    numbers: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text


def interval(p: float, n: int, z: float = Z) -> float:
    """Half-width of the normal-approximation binomial interval of an accuracy ``p`` on ``n``."""
    return z * math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))


def diff_noise(pa: float, na: int, pb: float, nb: int, z: float = Z) -> float:
    """Half-width of the interval of the difference of two independent accuracies."""
    return z * math.sqrt(max(pa * (1 - pa), 1e-12) / max(na, 1) + max(pb * (1 - pb), 1e-12) / max(nb, 1))


def _points(x: float) -> str:
    return f"{abs(x) * 100:.1f} points"


def test_n(record: dict, split: str = "test") -> int:
    """How many images a record's accuracy on ``split`` was measured on."""
    ev = record.get("evaluation", {}).get(split, {})
    if "n" in ev:
        return int(ev["n"])
    return int(sum(record["dataset"]["counts"][split]))


def accuracy(record: dict, split: str = "test") -> float:
    return float(record["metrics"][f"{split}_accuracy"])


def compare(a: dict, b: dict, a_name: str, b_name: str, split: str = "test") -> Finding:
    """``a`` against ``b`` on one split's accuracy: who is ahead, by how much, or no clear difference."""
    pa, pb = accuracy(a, split), accuracy(b, split)
    na, nb = test_n(a, split), test_n(b, split)
    d, noise = pa - pb, diff_noise(pa, na, pb, nb)
    nums = {"a": pa, "b": pb, "difference": d, "noise": noise, "n_a": na, "n_b": nb}
    where = f"{split} accuracy {pa:.1%} against {pb:.1%}"
    if abs(d) <= noise:
        return Finding(f"{a_name} and {b_name}: no clear difference ({where}; the difference of "
                       f"{_points(d)} is inside the ±{_points(noise)} noise of {na:,} and {nb:,} "
                       "test images).", "none", nums)
    verb = "beats" if d > 0 else "falls behind"
    return Finding(f"{a_name} {verb} {b_name} by {_points(d)} ({where}; noise ±{_points(noise)}).",
                   "greater" if d > 0 else "less", nums)


def best(records: Sequence[dict], names: Sequence[str], split: str = "test") -> Finding:
    """Which of several runs scores highest, and whether it is clearly ahead of the runner-up."""
    order = sorted(range(len(records)), key=lambda i: accuracy(records[i], split), reverse=True)
    top, second = order[0], order[1] if len(order) > 1 else None
    if second is None:
        return Finding(f"{names[top]}: {split} accuracy {accuracy(records[top], split):.1%}.", "none")
    c = compare(records[top], records[second], names[top], names[second], split)
    if c.direction == "none":
        return Finding(f"{names[top]} scores highest, but not clearly ahead of {names[second]}: "
                       + c.text.split(": ", 1)[1], "none", c.numbers)
    return Finding(f"{names[top]} scores highest: " + c.text, "greater", c.numbers)


def trend(values: Sequence[float], gaps: Sequence[float], ns: Sequence[int], what: str,
          of: str = "the train−test gap") -> Finding:
    """How ``of`` (one number per setting, e.g. a gap) changes as ``what`` grows.

    Compares the two ends; a change inside their combined noise is "no clear trend". With
    more than two settings it also says when the change is not monotonic.
    """
    order = sorted(range(len(values)), key=lambda i: values[i])
    v = [values[i] for i in order]
    g = [gaps[i] for i in order]
    n = [ns[i] for i in order]
    change = g[-1] - g[0]
    noise = Z * math.sqrt(0.25 / n[0] + 0.25 / n[-1])  # worst-case binomial noise of each end
    nums = {"values": v, "gaps": g, "change": change, "noise": noise}
    ends = f"{g[0]:+.3f} at {what} = {v[0]:g}, {g[-1]:+.3f} at {v[-1]:g}"
    if abs(change) <= noise:
        return Finding(f"No clear trend in {of} as {what} grows ({ends}; noise ±{noise:.3f}).", "none", nums)
    steps = [b - a for a, b in zip(g, g[1:])]
    monotonic = all(s >= 0 for s in steps) or all(s <= 0 for s in steps)
    word = "grows" if change > 0 else "shrinks"
    return Finding(f"{of[0].upper() + of[1:]} {word} as {what} grows ({ends})"
                   + ("" if monotonic else ", though not step by step") + ".",
                   "grows" if change > 0 else "shrinks", nums)


def cost_ratio(a: dict, b: dict, a_name: str, b_name: str) -> Finding:
    """How many times the wall time of ``b`` the run ``a`` took."""
    ta, tb = float(a["wall_seconds"]), float(b["wall_seconds"])
    if tb <= 0:
        return Finding(f"{b_name} has no measured wall time to compare with.", "none")
    r = ta / tb
    if 0.8 <= r <= 1.25:
        return Finding(f"{a_name} took about as long as {b_name} ({ta:.0f} s against {tb:.0f} s).",
                       "none", {"ratio": r})
    return Finding(f"{a_name} took {r:.1f} times the wall time of {b_name} ({ta:.0f} s against "
                   f"{tb:.0f} s).", "greater" if r > 1 else "less", {"ratio": r})
