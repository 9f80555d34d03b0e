"""The repository URL lives in _config.yml; the Colab badges, install cells and Setup page follow it."""
from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT

yaml = pytest.importorskip("yaml")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def repository() -> tuple[str, str]:
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def test_five_notebooks_and_the_appendices():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_badge_and_install_cell_follow_config(path):
    url, branch = repository()
    slug = url.removeprefix("https://github.com/")
    text = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    badge = f"https://colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{path.name}"
    assert badge in text
    installs = re.findall(r'%pip install -q "([^"]+)"', text)
    extra = "[serve]" if path.stem.startswith("06") else ""  # the appendix serves a model
    assert installs == [f"tlkit{extra} @ git+{url}"]  # no course extras in Colab


def test_no_other_repository_url():
    url, _ = repository()
    for path in NOTEBOOKS + sorted((ROOT / "book").glob("*.md")) + [ROOT / "README.md"]:
        for found in re.findall(r"github\.com/[\w.-]+/[\w.-]+", path.read_text()):
            assert f"https://{found}".rstrip(".") == url, (path.name, found)


def test_setup_page_installs_from_the_repository():
    url, _ = repository()
    setup = (ROOT / "book" / "setup.md").read_text()
    assert f"git+{url}" in setup
    assert not re.search(r'pip install "tlkit\[\w+\]"\s', setup)  # no PyPI name that does not exist
