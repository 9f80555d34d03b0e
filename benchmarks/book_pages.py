"""Screenshots of the built book in headless Chromium, and what a reader would find wrong.

For each HTML page of ``_build/html`` at a normal laptop width: a full-page screenshot, and
a JSON report of elements whose content is cut off (wider than their box without a scroll
bar), images shown smaller than half their pixel width (illegible text), images without alt
text, and machine paths in the visible text. Run after ``tlkit book build``:

    python benchmarks/book_pages.py [--html _build/html] [--out runs/book-pages] [--width 1280]

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
PAGE_CHECKS = """() => {
  const main = document.querySelector('main') || document.body;
  const clipped = [];
  for (const el of main.querySelectorAll('table, pre, .cell_output, .output, img, p, li, div.math')) {
    const st = getComputedStyle(el);
    const scrolls = ['auto', 'scroll'].includes(st.overflowX);
    let ancestorScrolls = false;
    for (let a = el.parentElement; a && a !== main; a = a.parentElement) {
      if (['auto', 'scroll'].includes(getComputedStyle(a).overflowX) && a.scrollWidth > a.clientWidth + 1) {
        ancestorScrolls = true; break;
      }
    }
    const box = el.getBoundingClientRect(), mbox = main.getBoundingClientRect();
    const wider = el.scrollWidth > el.clientWidth + 1 && !scrolls;
    const outside = box.right > mbox.right + 2;
    if ((wider || outside) && !ancestorScrolls && !scrolls)
      clipped.push({tag: el.tagName, text: (el.innerText || el.alt || '').slice(0, 80),
                    scroll: el.scrollWidth, client: el.clientWidth});
  }
  const small = [], noAlt = [];
  for (const img of main.querySelectorAll('img')) {
    if (!img.alt) noAlt.push(img.getAttribute('src'));
    if (img.naturalWidth && img.clientWidth < 0.5 * img.naturalWidth)
      small.push({src: img.getAttribute('src'), natural: img.naturalWidth, shown: img.clientWidth});
  }
  return {clipped, small, noAlt, text: main.innerText};
}"""


def check_pages(html: Path, out: Path, width: int = 1280) -> dict:
    """Screenshot every page under ``html`` and collect what is cut off or unreadable."""
    from playwright.sync_api import sync_playwright

    pages = sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and p.name != "genindex.html"
                   and p.name != "search.html")
    report: dict = {"width": width, "pages": {}}
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": width, "height": 900})
        for p in pages:
            rel = p.relative_to(html).as_posix()
            tab.goto(p.resolve().as_uri())
            tab.wait_for_timeout(500)
            tab.wait_for_load_state("load")
            if tab.url != p.resolve().as_uri():  # a redirect page (index.html)
                continue
            found = tab.evaluate(PAGE_CHECKS)
            shot = out / (rel.replace("/", "__").removesuffix(".html") + ".png")
            tab.screenshot(path=str(shot), full_page=True)
            report["pages"][rel] = {"screenshot": shot.name, "clipped": found["clipped"],
                                    "small_images": found["small"], "images_without_alt": found["noAlt"],
                                    "machine_paths": sorted(set(MACHINE_PATH.findall(found["text"])))}
        browser.close()
    report["problems"] = sum(len(v["clipped"]) + len(v["small_images"]) + len(v["images_without_alt"])
                             + len(v["machine_paths"]) for v in report["pages"].values())
    write_json(report, out / "pages.json")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", default="_build/html")
    ap.add_argument("--out", default="runs/book-pages")
    ap.add_argument("--width", type=int, default=1280)
    a = ap.parse_args()
    if not Path(CHROMIUM).is_file():
        sys.exit(f"book_pages: no Chromium at {CHROMIUM}: apt-get install -y chromium (or set TLKIT_CHROMIUM)")
    report = check_pages(Path(a.html), Path(a.out), a.width)
    for page, r in report["pages"].items():
        issues = {k: r[k] for k in ("clipped", "small_images", "images_without_alt", "machine_paths") if r[k]}
        print(f"{page}: {'ok' if not issues else json.dumps(issues)[:400]}")
    print(f"{report['problems']} problems; screenshots in {a.out}")


if __name__ == "__main__":
    main()
