"""The GitHub Pages workflow: valid YAML, and it builds the book with a make target and the
book command that `make test` runs (so CI checks what gets published)."""
from __future__ import annotations

import re

import pytest

from conftest import ROOT

yaml = pytest.importorskip("yaml")
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def make_recipes() -> dict[str, list[str]]:
    """The Makefile's targets and their recipe lines, ``$(BIN)`` spelled out as ``.venv/bin``."""
    text = (ROOT / "Makefile").read_text()
    venv = re.search(r"^VENV \?= (\S+)$", text, re.M).group(1)
    recipes: dict[str, list[str]] = {}
    target = None
    for line in text.splitlines():
        head = re.match(r"^([\w.-]+):(?!=)", line)
        if head:
            target = head.group(1)
            recipes.setdefault(target, [])
        elif line.startswith("\t") and target:
            recipes[target].append(line.strip().replace("$(BIN)", f"{venv}/bin"))
    return recipes


def test_workflow_builds_the_book_as_ci_does_and_deploys_it():
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["branches"] == ["main"]
    assert wf["permissions"]["pages"] == "write" and wf["permissions"]["id-token"] == "write"
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    uses = [s.get("uses", "").split("@")[0] for s in build["steps"]]
    assert uses[:2] == ["actions/checkout", "actions/setup-python"]
    assert build["steps"][1]["with"]["python-version"] == "3.11"
    recipes = make_recipes()
    runs = [s["run"].strip() for s in build["steps"] if "run" in s]
    for command in runs:
        if command.startswith("make "):
            assert command.split()[1] in recipes, f"the workflow runs '{command}': no such Makefile target"
        else:  # any other command is one that `make test` runs
            assert command in recipes["test"], f"the workflow runs '{command}', which `make test` does not"
    assert any("book build" in c or c.split()[1:2] == ["book"] for c in runs)
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"  # where tlkit book build writes the HTML
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert [s["uses"].split("@")[0] for s in deploy["steps"]] == ["actions/deploy-pages"]

