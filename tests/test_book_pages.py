"""The book's page checker (benchmarks/book_pages.py) in headless Chromium, on small pages made
here: a page wider than a phone's screen, a wide table in its own scroll box, a code line
longer than a laptop's column. Skips without Playwright and Chromium (``make test-page``)."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("book_pages", ROOT / "benchmarks" / "book_pages.py")
book_pages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book_pages)

pytestmark = pytest.mark.browser
PAGE = ('<!doctype html><html><head><meta name="viewport" content="width=device-width">'
        '<style>body{{margin:0}} article{{max-width:700px;padding:8px}} pre{{white-space:pre-wrap}}'
        '</style></head><body><main><article>{}</article></main></body></html>')
LONG = "x" * 60  # fits a laptop's column, not a phone's screen
CODE = "y" * 150  # a code line wider than a laptop's column


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not shutil.which(book_pages.CHROMIUM):
        pytest.skip(f"no Chromium at {book_pages.CHROMIUM}: apt-get install -y chromium (or make test-page)")
    html = tmp_path_factory.mktemp("html")
    pages = {
        "fine": "<p>A short line.</p><div class='cell_output'><table style='display:block;"
                f"overflow-x:auto;max-width:100%'><tr><td><code style='white-space:nowrap'>{LONG}"
                "</code></td></tr></table></div>",
        "wide": f"<p>A file: <code style='white-space:nowrap'>{LONG}</code></p>",
        "long_code": f"<div class='cell_input'><pre>print('{CODE}')\nshort = 1</pre></div>",
    }
    for name, body in pages.items():
        (html / f"{name}.html").write_text(PAGE.format(body), encoding="utf-8")
    out = tmp_path_factory.mktemp("shots")
    return book_pages.check_pages(html, out, (1280, 390)), out


def problems(entry: dict) -> dict:
    return {k: entry[k] for k in book_pages.PROBLEMS if entry[k]}


def test_a_page_wider_than_a_phone_is_found(report):
    rep, _ = report
    assert not problems(rep["pages"]["wide.html"]["1280"])
    wide = rep["pages"]["wide.html"]["390"]["wider_than_screen"]
    assert wide and wide[0]["window"] == 390 and wide[0]["page"] > 390
    assert any(LONG[:20] in el["text"] for el in wide[0]["sticking_out"])


def test_a_table_scrolling_in_its_own_box_is_fine(report):
    rep, out = report
    for width in ("1280", "390"):
        entry = rep["pages"]["fine.html"][width]
        assert not problems(entry), entry
        assert (out / entry["screenshot"]).is_file() and entry["screenshot"].startswith(f"{width}/")


def test_a_code_line_longer_than_the_column_is_found_on_a_laptop(report):
    rep, _ = report
    wrapped = rep["pages"]["long_code.html"]["1280"]["wrapped_code"]
    assert [w["chars"] for w in wrapped] == [len(f"print('{CODE}')")]
    assert rep["problems"] == sum(len(problems(e)[k]) for by_width in rep["pages"].values()
                                  for e in by_width.values() for k in problems(e))
