"""Screenshots of the built book in headless Chromium, and what a reader would find wrong.

Every HTML page of ``_build/html`` is opened at each width (by default a laptop's, 1280 px,
and a phone's, 390 px). For each: a full-page screenshot, and a JSON report of

- ``wider_than_screen``: the page is wider than the window (the reader scrolls the whole page
  sideways), with the visible elements that stick out of it and sit in no scrolling box;
- ``clipped``: visible elements of the page's text whose content is cut off (wider than their
  box, without a scroll bar) or runs out of the column;
- ``small_images``: images shown smaller than half their pixel width (illegible text), and
- ``wrapped_code``: lines of a code cell longer than the column, which wrap and go on at
  its left edge: both at widths from :data:`DESKTOP` up (on a phone a figure is scaled to the
  screen and read by zooming in, and code lines wrap);
- ``images_without_alt`` and ``machine_paths`` (absolute paths of this machine in the text).

A wide table or code block that scrolls inside its own box is fine: it is no problem. Run after
``tlkit book build``; the exit status is 1 when a page has a problem:

    python benchmarks/book_pages.py [--html _build/html] [--out runs/book-pages] [--widths 1280 390]

Needs Playwright (``pip install -e ".[browser]"``) and Chromium (``apt-get install chromium``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tlkit.book import MACHINE_PATH  # noqa: E402
from tlkit.system import write_json  # noqa: E402

CHROMIUM = os.environ.get("TLKIT_CHROMIUM", "/usr/bin/chromium")
WIDTHS = (1280, 390)  # a laptop, a phone
DESKTOP = 1200  # from this window width, figures are legible and code lines fit the column
PROBLEMS = ("wider_than_screen", "clipped", "small_images", "wrapped_code", "images_without_alt",
            "machine_paths")
PAGE_CHECKS = """(desktop) => {
  const main = document.querySelector('main') || document.body;
  const article = document.querySelector('article') || main;
  const visible = el => el.getClientRects().length > 0 && el.getBoundingClientRect().width > 0
      && (!el.checkVisibility || el.checkVisibility({checkVisibilityCSS: true}));
  const scrollBox = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  // an ancestor below `top` whose overflow is one of `kinds`: a scroll box ('auto', 'scroll'),
  // or one that also hides what sticks out ('hidden', 'clip': a drawer, a menu)
  const boxedIn = (el, top, kinds) => {
    for (let a = el.parentElement; a && a !== top; a = a.parentElement)
      if (kinds.includes(getComputedStyle(a).overflowX)) return true;
    return false;
  };
  const describe = el => ({tag: el.tagName, cls: (el.className || '').toString().slice(0, 60),
                           text: (el.innerText || el.alt || '').trim().slice(0, 80),
                           right: Math.round(el.getBoundingClientRect().right),
                           scroll: el.scrollWidth, client: el.clientWidth});
  const win = window.innerWidth, doc = document.documentElement.scrollWidth;
  const outside = [];
  if (doc > win + 1) {
    for (const el of document.body.querySelectorAll('*')) {
      if (!visible(el) || el.getBoundingClientRect().right <= win + 1) continue;
      if (boxedIn(el, document.body, ['auto', 'scroll', 'hidden', 'clip'])) continue;
      // the innermost culprits: an element none of whose visible children sticks out
      const kids = [...el.children].filter(k => visible(k) && k.getBoundingClientRect().right > win + 1);
      if (!kids.length) outside.push(describe(el));
      if (outside.length >= 8) break;
    }
  }
  const clipped = [];
  const abox = article.getBoundingClientRect();
  for (const el of article.querySelectorAll('table, pre, .cell_output, .output, img, p, li, div.math')) {
    if (!visible(el) || scrollBox(el) || boxedIn(el, article, ['auto', 'scroll'])) continue;
    const wider = el.scrollWidth > el.clientWidth + 1;
    const out = el.getBoundingClientRect().right > abox.right + 2;
    if (wider || out) clipped.push(describe(el));
  }
  const small = [], noAlt = [];
  for (const img of article.querySelectorAll('img')) {
    if (!visible(img)) continue;
    if (!img.alt) noAlt.push(img.getAttribute('src'));
    if (desktop && img.naturalWidth && img.clientWidth < 0.5 * img.naturalWidth)
      small.push({src: img.getAttribute('src'), natural: img.naturalWidth, shown: img.clientWidth});
  }
  const wrapped = [];
  const ctx = document.createElement('canvas').getContext('2d');
  for (const pre of desktop ? article.querySelectorAll('div.cell_input pre') : []) {
    if (!visible(pre)) continue;
    const st = getComputedStyle(pre);
    ctx.font = st.font;
    const room = pre.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight);
    for (const line of pre.innerText.split('\\n'))
      if (ctx.measureText(line).width > room + 0.5)
        wrapped.push({line: line.slice(0, 100), chars: line.length, room: Math.round(room)});
  }
  return {page: doc, window: win, outside, clipped, small, wrapped, noAlt, text: main.innerText};
}"""


def book_pages(html: Path) -> list[Path]:
    """The book's pages under ``html`` (not the search page, index or static files)."""
    return sorted(p for p in html.rglob("*.html") if "_static" not in p.parts
                  and p.name not in ("genindex.html", "search.html"))


def page_problems(found: dict) -> dict:
    """What the browser found on one page, as the report's entries (empty lists: none)."""
    wide = ([{"page": found["page"], "window": found["window"], "sticking_out": found["outside"]}]
            if found["page"] > found["window"] + 1 else [])
    return {"wider_than_screen": wide, "clipped": found["clipped"], "small_images": found["small"],
            "wrapped_code": found["wrapped"], "images_without_alt": found["noAlt"],
            "machine_paths": sorted(set(MACHINE_PATH.findall(found["text"])))}


def check_pages(html: Path, out: Path, widths: tuple[int, ...] = WIDTHS) -> dict:
    """Screenshot every page under ``html`` at each width (``out/<width>/``) and collect what
    is too wide for the screen, cut off or unreadable; writes ``out/pages.json``."""
    from playwright.sync_api import sync_playwright

    report: dict = {"widths": list(widths), "pages": {}}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for width in widths:
            shots = out / str(width)
            shots.mkdir(parents=True, exist_ok=True)
            tab = browser.new_page(viewport={"width": width, "height": 900})
            for p in book_pages(html):
                rel = p.relative_to(html).as_posix()
                tab.goto(p.resolve().as_uri())
                tab.wait_for_load_state("load")
                tab.wait_for_timeout(300)
                if tab.url != p.resolve().as_uri():  # a redirect page (index.html)
                    continue
                found = tab.evaluate(PAGE_CHECKS, width >= DESKTOP)
                shot = shots / (rel.replace("/", "__").removesuffix(".html") + ".png")
                tab.screenshot(path=str(shot), full_page=True)
                entry = {"screenshot": shot.relative_to(out).as_posix(), **page_problems(found)}
                report["pages"].setdefault(rel, {})[str(width)] = entry
            tab.close()
        browser.close()
    report["problems"] = sum(len(e[k]) for by_width in report["pages"].values()
                             for e in by_width.values() for k in PROBLEMS)
    out.mkdir(parents=True, exist_ok=True)
    write_json(report, out / "pages.json")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", default="_build/html")
    ap.add_argument("--out", default="runs/book-pages")
    ap.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS), help="window widths in px")
    a = ap.parse_args()
    if not Path(CHROMIUM).is_file():
        sys.exit(f"book_pages: no Chromium at {CHROMIUM}: apt-get install -y chromium (or set TLKIT_CHROMIUM)")
    report = check_pages(Path(a.html), Path(a.out), tuple(a.widths))
    for page, by_width in report["pages"].items():
        for width, r in by_width.items():
            issues = {k: r[k] for k in PROBLEMS if r[k]}
            print(f"{page} at {width} px: {'ok' if not issues else json.dumps(issues)[:600]}")
    print(f"{report['problems']} problems; screenshots and pages.json in {a.out}")
    sys.exit(1 if report["problems"] else 0)


if __name__ == "__main__":
    main()
