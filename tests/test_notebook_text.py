"""The notebooks' prose states no measured result: numbers that come from a run (accuracies,
differences in points, speeds, wall times) are printed by code from records, never typed."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tlkit.course import NOTEBOOKS

ROOT = Path(__file__).resolve().parents[1]
# an accuracy (0.853, 85.3%), a difference in points, a speed or a measured duration
MEASURED = re.compile(r"(?<!alpha=)(?<!alpha )\b0\.\d{2,}\b|\d+\.\d+\s*%|\b\d{2}\s*%(?! split)|\d+(\.\d+)?\s*(percentage )?points\b"
                      r"|\d+(\.\d+)?\s*img/s|\b\d+(\.\d+)?\s*(s|seconds|minutes|min)\b(?! of)")


def markdown_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_measured_number_in_markdown(name):
    found = [m.group(0) for text in markdown_cells(ROOT / "notebooks" / f"{name}.ipynb")
             for m in MEASURED.finditer(text.replace("last 10%", ""))]
    assert not found, f"{name}: typed results in markdown: {found}"


def test_the_check_finds_typed_results():
    typed = ["fine-tuning reaches 0.874", "beats it by 2.2 points", "85.4% test accuracy",
             "at 594 img/s", "in 757 s"]
    assert all(MEASURED.search(t) for t in typed)
    assert not MEASURED.search("a learning rate about 10× lower, 32×32 images, a 5× smaller backbone")
