"""Findings: sentences that state a result, computed from run records, never typed.

Each function compares records and returns a :class:`Finding`: the sentence with its
numbers and the right direction, or "no clear difference" when the difference lies inside
the noise. Two models scored on the same images are compared image by image, with the exact
McNemar test (:func:`mcnemar`) on the per-image results their records hold
(:func:`tlkit.evaluate.score`). Without them, noise is judged with a binomial interval on
the test-set size: an accuracy measured on ``n`` images is uncertain by about
``1.96 * sqrt(p (1 - p) / n)`` (95%), and the sentence says the comparison was unpaired.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.stats import binomtest

from tlkit.markup import md_text

Z = 1.96  # two-sided 95%
ALPHA = 0.05  # the paired test's level, the same 95% as Z
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}  # in sentences


@dataclass(frozen=True)
class Finding:
    """One computed statement and the numbers behind it."""

    text: str
    direction: str  # "greater", "less", "none" (inside the noise), "grows", "shrinks"
    numbers: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        """The sentence as Markdown, shown literally line by line (names come from records)."""
        return "\n".join(map(md_text, self.text.splitlines()))


def interval(p: float, n: int, z: float = Z) -> float:
    """Half-width of the normal-approximation binomial interval of an accuracy ``p`` on ``n``."""
    return z * math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))


def diff_noise(pa: float, na: int, pb: float, nb: int, z: float = Z) -> float:
    """Half-width of the interval of the difference of two independent accuracies."""
    return z * math.sqrt(max(pa * (1 - pa), 1e-12) / max(na, 1) + max(pb * (1 - pb), 1e-12) / max(nb, 1))


def _points(x: float) -> str:
    return f"{abs(x) * 100:.1f} points"


def test_n(record: dict, split: str = "test") -> int:
    """How many images a record's accuracy on ``split`` was measured on
    (:func:`tlkit.records.split_images`); an error when the record does not say."""
    from tlkit.records import split_images

    n = split_images(record, split)
    if n is None:
        raise KeyError(f"record {record.get('name', '?')!r} does not say how many {split} images it was scored on")
    return n


def accuracy(record: dict, split: str = "test") -> float:
    return float(record["metrics"][f"{split}_accuracy"])


def _difference(a: dict, a_split: str, b: dict, b_split: str) -> dict:
    """Two accuracies, their image counts, their difference and its noise (see :func:`diff_noise`)."""
    pa, pb = accuracy(a, a_split), accuracy(b, b_split)
    na, nb = test_n(a, a_split), test_n(b, b_split)
    return {"a": pa, "b": pb, "difference": pa - pb, "noise": diff_noise(pa, na, pb, nb), "n_a": na, "n_b": nb}


def correctness(record: dict, split: str = "test") -> tuple[np.ndarray, str] | None:
    """Which of a split's images a record's model got right, and which images these were
    (:func:`tlkit.evaluate.images_id`); None when the record does not hold both."""
    from tlkit.evaluate import unpack_correct  # here: reading sentences needs no Keras

    ev = record.get("evaluation", {}).get(split, {})
    if not ev.get("correct") or not ev.get("images"):
        return None
    return unpack_correct(ev["correct"], test_n(record, split)), ev["images"]


def paired(a: dict, b: dict, split: str = "test") -> tuple[np.ndarray, np.ndarray] | str:
    """The per-image results of two records scored on the same images of ``split``, or why
    they cannot be paired."""
    ca, cb = correctness(a, split), correctness(b, split)
    if ca is None or cb is None:
        return "a record holds no per-image results"
    if ca[1] != cb[1]:
        return "the two were scored on different images"
    return ca[0], cb[0]


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray) -> dict:
    """The exact McNemar test of two models on the same images: of the images exactly one
    of them gets right (the discordant pairs), how many does each, and the two-sided p-value
    of a binomial test of those counts against an even split (``scipy.stats.binomtest``)."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired results need the same images, not {a.shape} and {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    return {"a_only": a_only, "b_only": b_only, "p_value": float(p), "n": int(a.size)}


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _judge(a: dict, b: dict, split: str) -> tuple[str, str, dict]:
    """``a`` against ``b`` on ``split``: the direction ("greater", "less" or "none"), the
    evidence in words, and the numbers. Paired (:func:`mcnemar`) when both records hold
    per-image results on the same images; else the binomial intervals, and the words say so."""
    nums = _difference(a, split, b, split)
    pa, pb, na, nb, d, noise = (nums[k] for k in ("a", "b", "n_a", "n_b", "difference", "noise"))
    images = f"{SPLIT_NAMES.get(split, split)} images"
    where = f"{SPLIT_NAMES.get(split, split)} accuracy {pa:.1%} against {pb:.1%}"
    pair = paired(a, b, split)
    if not isinstance(pair, str):
        m = mcnemar(*pair)
        nums.update(test="mcnemar", p_value=m["p_value"], a_only=m["a_only"], b_only=m["b_only"])
        evidence = (f"{where}; paired on the same {m['n']:,} {images}, {m['a_only']:,} right only with the "
                    f"first and {m['b_only']:,} only with the second: exact McNemar test {_p(m['p_value'])}")
        if m["p_value"] >= ALPHA:
            return "none", evidence, nums
        return ("greater" if m["a_only"] > m["b_only"] else "less"), evidence, nums
    nums.update(test="interval")
    unpaired = f"unpaired intervals, as {pair}"
    if abs(d) <= noise:
        return "none", (f"{where}; the difference of {_points(d)} is inside the ±{_points(noise)} noise of "
                        f"{na:,} and {nb:,} {images}; {unpaired}"), nums
    return "greater" if d > 0 else "less", f"{where}; noise ±{_points(noise)}; {unpaired}", nums


def compare(a: dict, b: dict, a_name: str, b_name: str, split: str = "test") -> Finding:
    """``a`` against ``b`` on one split's accuracy: who is ahead, by how much, or no clear
    difference; judged image by image when both were scored on the same images (see :func:`_judge`)."""
    direction, detail, nums = _judge(a, b, split)
    if direction == "none":
        return Finding(f"{a_name} and {b_name}: no clear difference ({detail}).", "none", nums)
    verb = "beats" if direction == "greater" else "falls behind"
    return Finding(f"{a_name} {verb} {b_name} by {_points(nums['difference'])} ({detail}).", direction, nums)


def spread(records: Sequence[dict], names: Sequence[str], split: str = "test") -> Finding:
    """How far apart several runs' accuracies on ``split`` lie, and how many pairs of them
    differ clearly (:func:`compare`, image by image where two were scored on the same
    images): a chart of them whose axis spans only differences inside the noise should say
    so. Direction "none" when no pair differs clearly."""
    if len(records) != len(names):
        raise ValueError(f"spread needs one name per record, not {len(records)} records and {len(names)} names")
    acc = [accuracy(r, split) for r in records]
    if len(records) < 2:
        return Finding(f"One {SPLIT_NAMES.get(split, split)} accuracy: nothing to compare.", "none",
                       {"clear_pairs": 0, "pairs": 0})
    judged = [_judge(records[i], records[j], split) for i in range(len(records)) for j in range(i + 1, len(records))]
    clear = sum(d != "none" for d, _, _ in judged)
    paired_all = all(n["test"] == "mcnemar" for _, _, n in judged)
    how = "image by image" if paired_all else "by their intervals where not scored on the same images"
    head = (f"The {len(acc)} {SPLIT_NAMES.get(split, split)} accuracies span {min(acc):.1%} to {max(acc):.1%} "
            f"({_points(max(acc) - min(acc))})")
    nums = {"low": min(acc), "high": max(acc), "clear_pairs": clear, "pairs": len(judged)}
    if not clear:
        return Finding(f"{head}, and no two of them differ clearly (each pair compared {how}): a chart that "
                       "spreads them over its whole axis magnifies differences inside the noise.", "none", nums)
    return Finding(f"{head}; {clear} of the {len(judged)} pairs differ clearly (compared {how}).", "greater", nums)


def has_split(record: dict, split: str) -> bool:
    """Whether a record holds an accuracy on ``split``."""
    return f"{split}_accuracy" in record.get("metrics", {})


def best(records: Sequence[dict], names: Sequence[str], select: str = "val", report: str = "test") -> Finding:
    """The run chosen on ``select`` accuracy (validation: the test set plays no part in the
    choice), whether it is clearly ahead there of the runner-up, then its ``report`` (test)
    accuracy, stated once. ``numbers["chosen"]``: the chosen run's index.

    When a record holds no ``select`` accuracy, the choice falls back to ``report`` and the
    sentence says that the reported accuracy is then optimistic."""
    if not records or len(records) != len(names):
        raise ValueError(f"best needs one name per record, not {len(records)} records and {len(names)} names")
    fallback = not all(has_split(r, select) for r in records)
    on = report if fallback else select
    order = sorted(range(len(records)), key=lambda i: accuracy(records[i], on), reverse=True)
    top = order[0]
    rep = accuracy(records[top], report)
    n = test_n(records[top], report)
    reported = f"{SPLIT_NAMES.get(report, report)} accuracy: {rep:.1%} (±{_points(interval(rep, n))} on {n:,} images)"
    if fallback:
        missing = [names[i] for i, r in enumerate(records) if not has_split(r, select)]
        note = (f" ({', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no "
                f"{SPLIT_NAMES.get(select, select)} accuracy, so the choice is made on {report} accuracy, "
                "and that accuracy is optimistic: it picked the winner)")
    else:
        note = ""
    head = f"Chosen on {SPLIT_NAMES.get(on, on)} accuracy{note}: {names[top]}"
    if len(order) == 1:
        return Finding(f"{head} ({SPLIT_NAMES.get(on, on)} accuracy {accuracy(records[top], on):.1%}). "
                       f"Its {reported}.", "none", {"chosen": top, "reported": rep})
    second = order[1]
    direction, detail, nums = _judge(records[top], records[second], on)
    nums = {**nums, "chosen": top, "reported": rep}
    if direction == "none":
        return Finding(f"{head}, but not clearly ahead of {names[second]} ({detail}). Its {reported}.",
                       "none", nums)
    return Finding(f"{head}, ahead of {names[second]} by {_points(nums['difference'])} ({detail}). "
                   f"Its {reported}.", "greater", nums)


def _value(v) -> str:
    """A setting's value in words: on/off, or a number as short as it goes."""
    return ("on" if v else "off") if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)


def setting_groups(settings: Sequence[dict]) -> list[str]:
    """A mark for each run: the same letter ("A", "B"…) for runs whose settings are equal,
    in order of first appearance, and "" for a setting that only one run has."""
    keys = [json.dumps(s, sort_keys=True, default=str) for s in settings]
    shared = [k for k in dict.fromkeys(keys) if keys.count(k) > 1]
    return [chr(ord("A") + shared.index(k)) if k in shared else "" for k in keys]


def run_to_run(records: Sequence[dict], names: Sequence[str], setting: dict, mark: str = "",
               split: str = "val", also: str = "test") -> Finding:
    """How far runs of one ``setting`` (named ``mark``, as :func:`setting_groups` marks it)
    spread on ``split`` and ``also`` when only their seeds differ: the run-to-run noise that
    one run per setting cannot show. The two runs furthest apart on ``also`` are compared
    image by image (:func:`compare`): a clear difference there is between two trained models,
    not between two settings."""
    words = ", ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in setting.items())
    setting = f"{f'setting {mark}' if mark else 'one setting'} ({words})"
    if len(records) < 2:
        return Finding(f"Only one run of {setting}: its run-to-run noise is unknown.", "none", {})
    seeds = [r.get("seed") for r in records]
    listed = ", ".join(map(str, seeds))
    how = (f"differ only in their seeds ({listed})" if len(set(seeds)) == len(seeds)
           else f"share their seed too ({seeds[0]})" if len(set(seeds)) == 1 else f"have seeds {listed}")
    nums: dict = {"seeds": seeds}
    parts = []
    for sp in (split, also):
        acc = [accuracy(r, sp) for r in records]
        nums[sp] = acc
        nums[f"{sp}_spread"] = max(acc) - min(acc)
        parts.append(f"{SPLIT_NAMES.get(sp, sp)} accuracy from {min(acc):.1%} to {max(acc):.1%} (a spread of "
                     f"{_points(max(acc) - min(acc))})")
    text = f"{len(records)} runs of {setting} {how}: " + ", ".join(parts) + "."
    acc = nums[also]
    hi, lo = acc.index(max(acc)), acc.index(min(acc))
    if hi != lo:
        c = compare(records[hi], records[lo], names[hi], names[lo], also)
        nums["extremes"] = c.numbers
        text += f" The two furthest apart, image by image: {c.text}"
    return Finding(text, "none", nums)


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


def training_epochs(record: dict) -> tuple[int, float]:
    """(epochs, seconds) of a record's training, from its history (``seconds``: the wall time
    at each epoch's end, counted from the start; ``phase``: each epoch's phase). A run whose
    head phase on cached features came first (fine-tuning) counts its later phases only."""
    h = record.get("history", {})
    ends = [float(t) for t in h.get("seconds") or []]
    phases = list(h.get("phase") or [None] * len(ends))
    durations = [end - start for end, start in zip(ends, [0.0, *ends[:-1]])]
    tuned = [d for d, p in zip(durations, phases) if p != "head"]
    kept = tuned if tuned else durations
    return len(kept), sum(kept)


def extraction_seconds(record: dict) -> float:
    """The one-time feature extraction of a record's frozen-feature run (0: none), as measured
    when the features were extracted, also if they came from the cache."""
    return float(record.get("model", {}).get("extraction", {}).get("extract_seconds") or 0.0)


def _seconds(s: float) -> str:
    return f"{s:.2g} s" if s < 10 else f"{s:.0f} s"


def _times(r: float) -> str:
    return f"{r:.1f} times" if r < 10 else f"{r:.0f} times"


def epoch_cost(a: dict, b: dict, a_name: str, b_name: str) -> Finding:
    """What an epoch of ``a``'s training costs against one of ``b``'s (:func:`training_epochs`),
    with feature extraction, paid once, said apart (:func:`extraction_seconds`): like with like,
    never fine-tuning epochs against an extraction."""
    parts, per_epoch = [], []
    for rec, name in ((a, a_name), (b, b_name)):
        n, seconds = training_epochs(rec)
        if not n:
            return Finding(f"{name[:1].upper() + name[1:]} has no per-epoch times in its record to compare.", "none")
        x = extraction_seconds(rec)
        per_epoch.append(seconds / n)
        parts.append(f"{name[:1].upper() + name[1:]}: {_seconds(seconds / n)} an epoch ({n} epoch{'s' * (n != 1)}, "
                     f"{seconds:.0f} s)" + (f", after extracting its features once in {x:.0f} s" if x else "") + ".")
    r = per_epoch[0] / per_epoch[1]
    if 0.8 <= r <= 1.25:
        verdict, direction = f"An epoch of {a_name} takes about as long as one of {b_name}.", "none"
    elif r > 1:
        verdict, direction = f"An epoch of {a_name} takes {_times(r)} as long as one of {b_name}.", "greater"
    else:
        verdict, direction = f"An epoch of {b_name} takes {_times(1 / r)} as long as one of {a_name}.", "less"
    nums = {"ratio": r, "per_epoch": per_epoch}
    xa, xb = extraction_seconds(a), extraction_seconds(b)
    if xa and xb:
        nums["extraction_ratio"] = xa / xb
        verdict += (f" Extracting the features took {_times(xa / xb)} as long ({xa:.0f} s against {xb:.0f} s)."
                    if not 0.8 <= xa / xb <= 1.25 else
                    f" Extracting the features took about as long ({xa:.0f} s against {xb:.0f} s).")
    return Finding(" ".join([*parts, verdict]), direction, nums)


def compare_at(values: Sequence[float], a: Sequence[dict], b: Sequence[dict], a_name: str, b_name: str,
               what: str = "images per class", split: str = "test") -> Finding:
    """``a[i]`` against ``b[i]`` at each setting ``values[i]`` (e.g. labelled images per class):
    how often each is ahead, the sentence of each setting, and whether the difference changes
    from the smallest setting to the largest beyond the noise of both ends (and in whose favour)."""
    if not len(values) == len(a) == len(b) or not values:
        raise ValueError(f"compare_at needs one record of each side per setting, not {len(values)} "
                         f"settings, {len(a)} and {len(b)} records")
    order = sorted(range(len(values)), key=lambda i: values[i])
    cs = [(values[i], compare(a[i], b[i], a_name, b_name, split)) for i in order]
    count = {d: sum(c.direction == d for _, c in cs) for d in ("greater", "less", "none")}
    k = len(cs)
    head = (f"{a_name[:1].upper() + a_name[1:]} against {b_name} at {k} setting{'s' * (k != 1)} of "
            f"{what}: ahead at {count['greater']}, behind at {count['less']}, no clear difference at "
            f"{count['none']}.")
    lines = [f"- {v:g} {what}: {c.text}" for v, c in cs]
    nums = {"values": [v for v, _ in cs], "differences": [c.numbers["difference"] for _, c in cs],
            "noise": [c.numbers["noise"] for _, c in cs], **count}
    if k > 1:
        (v0, c0), (v1, c1) = cs[0], cs[-1]
        change = c1.numbers["difference"] - c0.numbers["difference"]
        noise = math.hypot(c0.numbers["noise"], c1.numbers["noise"])
        nums.update(change=change, change_noise=noise)
        ends = (f"{c0.numbers['difference'] * 100:+.1f} points at {v0:g}, "
                f"{c1.numbers['difference'] * 100:+.1f} at {v1:g}; noise ±{_points(noise)}")
        if abs(change) <= noise:
            lines.append(f"No clear change in the difference from {v0:g} to {v1:g} {what} ({ends}).")
        else:
            lines.append(f"From {v0:g} to {v1:g} {what}, the difference moves in favour of "
                         f"{a_name if change > 0 else b_name} ({ends}).")
    direction = "greater" if count["greater"] == k else "less" if count["less"] == k else "none"
    return Finding("\n".join([head, *lines]), direction, nums)


def gap(record: dict, name: str, a: str = "train", b: str = "test") -> Finding:
    """The accuracy gap of one run between two splits (train − test by default)."""
    nums = _difference(record, a, record, b)
    pa, pb, na, nb, d, noise = (nums[k] for k in ("a", "b", "n_a", "n_b", "difference", "noise"))
    where = f"{a} accuracy {pa:.1%} on {na:,} images, {b} accuracy {pb:.1%} on {nb:,}"
    if abs(d) <= noise:
        return Finding(f"{name}: no clear {a}−{b} gap ({where}; ±{_points(noise)} noise).", "none", nums)
    side = "higher" if d > 0 else "lower"
    return Finding(f"{name}: {a} accuracy is {_points(d)} {side} than {b} accuracy ({where}; noise "
                   f"±{_points(noise)}).", "greater" if d > 0 else "less", nums)


def confusions(confusion: Sequence[Sequence[int]], class_names: Sequence[str], top: int = 3) -> Finding:
    """The ``top`` most frequent mistakes of a confusion matrix (rows: true class), each with
    its share of the true class's images."""
    cm = [[int(v) for v in row] for row in confusion]
    cells = sorted(((cm[i][j], i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i][j]),
                   reverse=True)[:top]
    if not cells:
        return Finding("No test image is misclassified.", "none", {"pairs": []})
    parts = [f"{class_names[i]} taken for {class_names[j]} {n:,} times ({n / max(sum(cm[i]), 1):.1%} of "
             f"the {class_names[i]} images)" for n, i, j in cells]
    return Finding("The most frequent mistakes on the test set: " + "; ".join(parts) + ".", "none",
                   {"pairs": [(class_names[i], class_names[j], n) for n, i, j in cells]})


def as_record(score: dict, split: str = "test") -> dict:
    """One split's score (``evaluate.score``'s dict) in the shape :func:`compare` reads, to
    compare two scorings of one model (e.g. with and without test-time augmentation), with
    its per-image results when it has them."""
    keep = {k: score[k] for k in ("n", "correct", "images") if k in score}
    return {"metrics": {f"{split}_accuracy": score["accuracy"]}, "evaluation": {split: keep}}


def unknown(chosen: dict, test: dict | None = None, other: dict | None = None) -> Finding:
    """What an 'unknown' threshold does, from a run record's ``unknown`` part: ``chosen``
    (:meth:`tlkit.evaluate.Threshold.info`, on the validation split), then on the test split
    (``test``: ``precision``, ``coverage``, ``n``) and on images of none of the classes
    (``other``: ``unknown``, the share turned away, and ``n``)."""
    t, n = chosen["threshold"], chosen["n"]
    if chosen["reached"]:
        head = (f"A threshold of {t:.2f} keeps {chosen['precision']:.1%} precision (asked: "
                f"{chosen['target_precision']:.0%}) on the {n:,} validation images, answering {chosen['coverage']:.1%} of them")
    else:
        head = (f"No threshold reaches {chosen['target_precision']:.0%} precision on the {n:,} validation images: "
                f"the best, {chosen['precision']:.1%}, is at {t:.2f}, answering {chosen['coverage']:.1%} of them")
    parts = [head]
    if test:
        answered = max(round(test["coverage"] * test["n"]), 1)
        parts.append(f"on the {test['n']:,} test images it answers {test['coverage']:.1%} with {test['precision']:.1%} "
                     f"precision (±{_points(interval(test['precision'], answered))})")
    if other:
        parts.append(f"and it turns {other['unknown']:.1%} of {other['n']:,} images of none of the classes into "
                     f"'unknown' (the other {1 - other['unknown']:.1%} are named as one of the classes)")
    return Finding("; ".join(parts) + ".", "none", {"chosen": chosen, "test": test, "other": other})


def data_checks(checks: dict) -> Finding:
    """What the checks of a data set found, from a run record's ``data_checks`` part:
    ``duplicates`` (identical files, :func:`tlkit.data.duplicate_summary`), ``unreadable``
    files, and ``near_duplicates``: pairs of images across splits whose frozen features are
    nearly the same (``threshold``, and a count for each pair of splits)."""
    d, near = checks["duplicates"], checks["near_duplicates"]
    pairs = near["pairs"]
    found = sum(pairs.values())
    text = (f"Identical files: {d['groups']:,} group(s) ({d['across_classes']:,} across classes, "
            f"{d['across_splits']:,} across splits); unreadable files: {checks['unreadable']:,}. "
            f"Near-duplicates (cosine similarity of frozen features at least {near['threshold']:g}): "
            + ", ".join(f"{v:,} pair(s) between {k.replace('-', ' and ')}" for k, v in pairs.items()) + ".")
    return Finding(text, "greater" if found or d["groups"] else "none", checks)
