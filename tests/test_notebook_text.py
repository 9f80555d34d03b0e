"""The notebooks read well: their prose states no measured result (numbers that come from a run,
accuracies, differences in points, speeds, wall times, are printed by code from records, never
typed), their code fits the book's column, and their epoch logs are folded."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tlkit.course import CELL_WIDTH, NOTEBOOKS

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


def code_cells(path: Path) -> list[dict]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_code_fits_the_column(name):
    """No code line is longer than the book's code column holds at a laptop's width
    (_static/tlkit.css): a longer line would wrap and go on at the left edge."""
    long = [(c.get("id"), line) for c in code_cells(ROOT / "notebooks" / f"{name}.ipynb")
            for line in "".join(c["source"]).splitlines() if len(line) > CELL_WIDTH]
    assert not long, f"{name}: code lines over {CELL_WIDTH} characters: {long}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_epoch_logs_are_folded(name):
    """A cell that prints a line per epoch (verbose=2) shows its output folded on its page."""
    open_logs = [c.get("id") for c in code_cells(ROOT / "notebooks" / f"{name}.ipynb")
                 if "verbose=2" in "".join(c["source"])
                 and "hide-output" not in c.get("metadata", {}).get("tags", [])]
    assert not open_logs, f"{name}: tag these cells hide-output: {open_logs}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_exercise_has_a_folded_solution(name):
    """Solution k of a notebook is a dropdown admonition (folded on the page), and the code
    that computes a solution's numbers is folded too (hide-cell)."""
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
    text = "\n".join(markdown_cells(ROOT / "notebooks" / f"{name}.ipynb"))
    exercises = text.split("## Exercises", 1)[1].split(":::", 1)[0]
    numbers = [int(m) for m in re.findall(r"^(\d+)\. ", exercises, re.M)]
    solutions = [int(m) for m in re.findall(r"^:::\{admonition\} Solution (\d+)\n:class: dropdown\n",
                                            text, re.M)]
    assert numbers and solutions == numbers == list(range(1, len(numbers) + 1)), (numbers, solutions)
    unfolded = [c["id"] for c in nb["cells"] if c["cell_type"] == "code" and "solution" in c["id"]
                and "hide-cell" not in c["metadata"].get("tags", [])]
    assert not unfolded, f"{name}: fold these solution cells (hide-cell): {unfolded}"
