"""The repository URL lives in _config.yml; the Colab badges, install cells and Setup page follow it."""
from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT
from tlkit import TlkitError, course

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
    cells = json.loads(path.read_text())["cells"]
    text = "".join("".join(c["source"]) for c in cells)
    badge = f"https://colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{path.name}"
    generated = course.colab_badge(path.stem, course.book_config(ROOT))
    assert badge in generated and generated in "".join(cells[0]["source"]).splitlines(), (
        f"{path.name}'s Colab badge differs from _config.yml: run python -m tlkit.course --sync-badges")
    # the install cell names the repository once, REPO, which IPython expands in %pip's line
    assert re.findall(r'^REPO = "([^"]+)"$', text, re.M) == [url]
    installs = re.findall(r'%pip install -q "([^"]+)"', text)
    extra = "[serve]" if path.stem.startswith("06") else ""  # the appendix serves a model
    assert installs == [f"tlkit{extra} @ git+{{REPO}}"]  # no course extras in Colab


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


def test_sync_badges_follows_a_new_repository_url(tmp_path):
    """A changed repository URL or branch in _config.yml reaches every badge with one sync;
    only the badge line changes, and a notebook without a badge line is named."""
    nbformat = pytest.importorskip("nbformat")
    config = (ROOT / "_config.yml").read_text()
    url, branch = repository()
    (tmp_path / "_config.yml").write_text(config.replace(url, "https://github.com/someone/fork")
                                          .replace(f"branch: {branch}", "branch: dev"))
    (tmp_path / "notebooks").mkdir()
    for path in NOTEBOOKS:
        (tmp_path / "notebooks" / path.name).write_bytes(path.read_bytes())
    assert course.sync_badges(tmp_path / "notebooks") == [p.stem for p in NOTEBOOKS]
    assert course.sync_badges(tmp_path / "notebooks") == []
    old = nbformat.read(NOTEBOOKS[0], as_version=4)
    new = nbformat.read(tmp_path / "notebooks" / NOTEBOOKS[0].name, as_version=4)
    assert [c.id for c in old.cells] == [c.id for c in new.cells] and old.cells[1:] == new.cells[1:]
    changed = [(a, b) for a, b in zip(old.cells[0].source.split("\n"), new.cells[0].source.split("\n")) if a != b]
    assert changed == [(course.colab_badge(NOTEBOOKS[0].stem, course.book_config(ROOT)),
                        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                        f"(https://colab.research.google.com/github/someone/fork/blob/dev/notebooks/{NOTEBOOKS[0].name})")]
    new.cells[0].source = new.cells[0].source.replace(course.BADGE_TEXT, "[![Colab]")
    nbformat.write(new, tmp_path / "notebooks" / NOTEBOOKS[0].name)
    with pytest.raises(TlkitError, match="first cell has 0 Colab badge lines"):
        course.sync_badges(tmp_path / "notebooks")


def test_colab_needs_a_github_repository():
    with pytest.raises(TlkitError, match="repository.url"):
        course.colab_link("01_cnn_from_scratch", {"repository": {"url": "https://gitlab.com/a/b"},
                                                  "launch_buttons": {"colab_url": "https://colab.research.google.com"}})


def test_the_book_launch_button_opens_the_course_notebook():
    """The theme points a notebook page's Colab button at the executed copy (book/notebooks/,
    not in the repository); tlkit.book, the book's Sphinx extension, points it at the notebook
    the badge opens. Other pages and buttons are left alone."""
    from types import SimpleNamespace

    from tlkit.book import _colab_opens_the_course_notebook

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "tlkit.book" in config["sphinx"]["extra_extensions"]
    theme = "https://colab.research.google.com/github/x/y/blob/main/book/notebooks/03_fine_tuning.ipynb"

    def buttons(pagename: str) -> list[dict]:
        context = {"header_buttons": [{"type": "link", "url": "download"}, {"type": "group", "buttons": [
            {"text": "Colab", "url": theme}, {"text": "Binder", "url": "binder"}]}]}
        _colab_opens_the_course_notebook(SimpleNamespace(srcdir=str(ROOT)), pagename, "page.html", context, None)
        return context["header_buttons"][1]["buttons"]

    assert buttons("book/notebooks/03_fine_tuning") == [
        {"text": "Colab", "url": course.colab_link("03_fine_tuning", config)}, {"text": "Binder", "url": "binder"}]
    assert buttons("book/setup")[0]["url"] == theme
