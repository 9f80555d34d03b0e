"""tlkit.comparison (notebook 4): the rows compared, published facts with their sources,
cost measured here, the table and the computed sentences."""
from __future__ import annotations

import pytest

from conftest import MNV2_035
from tlkit import comparison, models, records
from tlkit.course import GPU

COMPARED = GPU["04"]["models_to_compare"]  # notebook 4's list, the one place it is written

pytestmark = pytest.mark.backends  # also run on JAX by `make test`


def test_published_facts_have_sources():
    for name, alpha in comparison.comparison_entries(COMPARED):
        f = models.get_spec(name).facts(alpha)
        assert f is not None, (name, alpha)
        assert 0.4 < f.top1 < 0.9 and f.params_m > 0 and f.size in (224, 300)
        assert "http" in f.source, (name, f.source)
    spec = models.get_spec("mobilenetv2")
    assert spec.facts() == spec.facts(1.0) and (spec.facts(1.0).top1, spec.facts(1.0).params_m) == (0.713, 3.5)
    assert (spec.facts(0.35).top1, spec.facts(0.35).params_m) == (0.603, 1.66)
    assert "TF-slim" in spec.facts(0.35).source
    assert models.get_spec("mobilenet").facts(0.25).top1 == 0.498
    assert models.get_spec("resnet50").facts() == models.Published(0.749, 25.6, 224, models.KERAS_TABLE)
    assert models.get_spec("efficientnetb3").facts().size == 300
    assert models.get_spec("mobilenetv2").facts(0.5) is None and models.get_spec("cnn").facts() is None


def test_comparison_entries_and_labels():
    entries = comparison.comparison_entries(COMPARED)
    assert len(entries) == 11 and entries[:9] == [
        (n, models.get_spec(n).config().alpha) for n in COMPARED]
    assert entries[9:] == [("mobilenetv2", 0.35), ("mobilenet", 0.25)]
    # a width variant already asked for is not repeated; names are case-insensitive
    assert comparison.comparison_entries(["MobileNetV2"], [("mobilenetv2", 1.0)]) == [("mobilenetv2", 1.0)]
    assert comparison.entry_label("mobilenetv2", 1.0) == "mobilenetv2"
    assert comparison.entry_label("resnet50") == "resnet50"
    assert comparison.entry_label("mobilenetv2", 0.35) == "mobilenetv2 alpha 0.35"
    table = comparison.facts_table(entries + [("cnn", None)])
    assert list(table["ImageNet top-1"][:2]) == ["74.9%", "76.4%"]
    assert table["source"].iloc[-1] == "no published figure recorded"


def test_measure_backbone_counts_flops_at_the_size():
    small = comparison.measure_backbone("mobilenetv2", 32, 0.35, batch_size=4, seconds=0.05)
    big = comparison.measure_backbone("mobilenetv2", 64, 0.35, batch_size=4, seconds=0.05)
    assert small["backbone_params"] == big["backbone_params"] == 410_208  # no top, any size
    assert small["images_per_second"] > 0 and small["img_size"] == 32 and small["batch_size"] == 4
    assert 3.0 < big["forward_flops"] / small["forward_flops"] < 5.0  # about the square of the size


class FakeClock:
    """A clock that each batch moves on by ``step`` seconds."""

    def __init__(self, step: float):
        self.now, self.step, self.calls = 100.0, step, 0

    def __call__(self) -> float:
        return self.now

    def batch(self) -> None:
        self.now += self.step
        self.calls += 1


@pytest.mark.parametrize("step, seconds, min_batches, timed", [
    (0.3, 2.0, 5, 7),     # fast batches: as many as fill the time (2.1 s)
    (1.0, 0.5, 3, 3),     # slow batches: at least min_batches
    (2 ** -10, 2.0, 5, 2048)])  # a GPU's milliseconds: thousands of batches, not two
def test_throughput_is_timed_over_fixed_seconds_after_warmup(step, seconds, min_batches, timed):
    clock = FakeClock(step)
    ips = comparison.throughput(clock.batch, 64, seconds=seconds, min_batches=min_batches, warmup=2,
                                clock=clock)
    assert clock.calls == 2 + timed  # the warm-up batches are run, not timed
    assert ips == pytest.approx(64 / step)


def _comparison_record(acc: float, source: str, n: int = 1000, val: float | None = None) -> dict:
    return {"kind": "comparison", "weights_source": source, "weights_origin": None,
            "metrics": {"test_accuracy": acc, "val_accuracy": acc if val is None else val},
            "evaluation": {"test": {"n": n}, "val": {"n": n}}, "images_per_second": 345.0}


COST = {"mobilenetv2": {"backbone_params": 2_257_984, "forward_flops": 110_000_000, "img_size": 96,
                        "images_per_second": 300.0},
        "mobilenetv2 alpha 0.35": {"backbone_params": 410_208, "forward_flops": 22_000_000,
                                   "img_size": 96, "images_per_second": 900.0},
        "resnet50": {"backbone_params": 23_587_712, "forward_flops": 1_416_000_000, "img_size": 96,
                     "images_per_second": 50.0}}


def _rows(recs: dict) -> list[dict]:
    return [comparison.comparison_row(n, a, COST[comparison.entry_label(n, a)], recs.get(comparison.entry_label(n, a)))
            for n, a in [("resnet50", None), ("mobilenetv2", 1.0), ("mobilenetv2", 0.35)]]


def test_comparison_rows_and_table():
    recs = {"mobilenetv2": _comparison_record(0.80, "random")}
    rows = _rows(recs)
    assert rows[0]["weights"] == comparison.NOT_AVAILABLE and rows[0]["test_accuracy"] is None
    assert rows[0]["published_top1"] == 0.749 and rows[0]["gflops"] == pytest.approx(1.416)
    assert rows[1]["weights"] == records.RANDOM_HEAD and rows[1]["test_accuracy"] == 0.80
    assert rows[2]["model"] == "mobilenetv2 alpha 0.35" and rows[2]["published_params_m"] == 1.66
    table = comparison.comparison_table(rows)
    acc = "test accuracy (frozen features + head)"
    assert list(table[acc]) == ["—", "80.0%", "—"]
    assert list(table["source"]) == ["Keras Applications table", "Keras Applications table",
                                     "TF-slim MobileNetV2 checkpoint table"]
    assert list(table.index) == ["resnet50", "mobilenetv2", "mobilenetv2 alpha 0.35"]
    assert list(table["FLOPs at 96 px"]) == ["1.42 GFLOP", "110 MFLOP", "22.0 MFLOP"]
    # two throughputs, named apart: every row's timed forward pass, a measured row's extraction
    assert list(table["forward img/s"]) == ["50", "300", "900"]
    assert list(table["extraction img/s (data set)"]) == ["—", "345", "—"]
    rows = [{**r, "forward_batch": 64} for r in rows]
    assert comparison.forward_column(rows) == "forward img/s (batch of 64)"
    assert list(table["backbone params (here, no top)"]) == ["23.6 M", "2.26 M", "410 k"]
    assert list(table["params (published, with top)"]) == ["25.6 M", "3.50 M", "1.66 M"]
    costs = comparison.costs_table([{**COST[m], "model": m.split()[0], "alpha": 0.35 if "alpha" in m else None,
                                     "batch_size": 64} for m in COST])
    assert list(costs.index) == list(COST) and list(costs["FLOPs per image at 96 px"]) == [
        "110 MFLOP", "22.0 MFLOP", "1.42 GFLOP"]
    assert list(costs["backbone params (no top)"]) == ["2.26 M", "410 k", "23.6 M"]
    assert list(costs["forward img/s (batch of 64)"]) == ["300", "900", "50"]


def test_comparison_takeaways_transfer(tmp_path):
    path = tmp_path / MNV2_035
    path.write_bytes(b"not the converted checkpoint")
    src = f"imagenet:{path}"
    # chosen on validation accuracy: the narrow model, though the full one scores higher on test
    recs = {"mobilenetv2": {**_comparison_record(0.85, src, val=0.70), "weights_origin": "Keras file"},
            "mobilenetv2 alpha 0.35": {**_comparison_record(0.75, src, val=0.80), "weights_origin": "Keras file"}}
    rows = _rows(recs)
    assert rows[1]["weights"] == "ImageNet weights (Keras file), frozen" and comparison.is_transfer(rows[1]["weights"])
    said = comparison.comparison_takeaways(rows, recs)
    assert said[0] == ("2 of 3 rows have a measured test accuracy (weights: ImageNet weights (Keras file), frozen); "
                       "the other rows: weights not available offline.")
    assert said[1].startswith("Chosen on validation accuracy: mobilenetv2 alpha 0.35, ahead of mobilenetv2 by "
                              "10.0 points")
    assert said[1].endswith("Its test accuracy: 75.0% (±2.7 points on 1,000 images).")
    assert len(said) == 3  # the chosen model is the cheapest: no cost sentence against itself
    assert said[2].startswith("mobilenetv2 beats mobilenetv2 alpha 0.35 by 10.0 points")
    assert "5.0 times the FLOPs" in said[2] and "300 against 900 images/s" in said[2]
    assert not any(s.startswith("Not transfer") for s in said)


def test_comparison_takeaways_never_call_random_rows_transfer():
    recs = {"mobilenetv2": _comparison_record(0.30, "random", 200),
            "mobilenetv2 alpha 0.35": _comparison_record(0.28, "random", 200)}
    said = comparison.comparison_takeaways(_rows(recs), recs)
    assert not comparison.is_transfer(records.RANDOM_HEAD)
    assert all(s.startswith(f"Not transfer ({records.RANDOM_HEAD}): ") for s in said[1:])
    assert "not clearly ahead" in said[1]
    assert comparison.comparison_takeaways(_rows({}), {}) == [
        "0 of 3 rows have a measured test accuracy (weights: none); the other rows: "
        "weights not available offline."]
