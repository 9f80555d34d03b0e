"""The camera page at ``/`` in headless Chromium (Debian's ``chromium`` package, driven by
Playwright) against the app on loopback: upload an image, read the answer off the page.

Run it with ``make test-page`` (installs chromium and Playwright), or
``pytest -m browser tests/test_page.py`` where both are installed; it skips otherwise.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
sync_api = pytest.importorskip("playwright.sync_api")

from servekit import NAMES, image_bytes, tiny_model  # noqa: E402
from tlkit.predict import Predictor  # noqa: E402
from tlkit.service import create_app, running  # noqa: E402

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("TLKIT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or make test-page)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("page-model"))


def _answer(browser, url: str, image) -> dict:
    page = browser.new_page()
    try:
        page.goto(url + "/")
        assert page.get_attribute("#file", "capture") == "environment"
        assert page.get_attribute("#file", "accept") == "image/*"
        page.wait_for_function("document.getElementById('labels').textContent.includes(',')")
        page.set_input_files("#file", image)
        page.wait_for_function("['done', 'unknown', 'error'].includes("
                               "document.getElementById('result').dataset.state)", timeout=30_000)
        return {"state": page.get_attribute("#result", "data-state"),
                "answer": page.text_content("#answer"), "error": page.text_content("#error"),
                "labels": page.text_content("#labels"),
                "top": [(li.get_attribute("data-label"), float(li.get_attribute("data-probability")))
                        for li in page.query_selector_all("#top li")]}
    finally:
        page.close()


def test_page_shows_the_services_answer(browser, model_file, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes("JPEG", (320, 240), seed=5))
    with running(create_app(Predictor.load(model_file, threshold=0.0))) as url:
        shown = _answer(browser, url, str(photo))
        with open(photo, "rb") as fh:
            api = httpx.post(url + "/predict", files={"file": ("photo.jpg", fh, "image/jpeg")}).json()
    assert shown["state"] == "done" and shown["answer"] == api["label"] and api["label"] in NAMES
    assert shown["labels"] == ", ".join(NAMES)
    assert [label for label, _ in shown["top"]] == [g["label"] for g in api["top_k"]]
    np.testing.assert_allclose([p for _, p in shown["top"]], [g["probability"] for g in api["top_k"]],
                               atol=1e-6)


def test_page_shows_unknown_and_errors(browser, model_file, tmp_path):
    photo, noise = tmp_path / "photo.png", tmp_path / "noise.png"
    photo.write_bytes(image_bytes("PNG", (64, 64)))
    noise.write_bytes(os.urandom(2000))
    with running(create_app(Predictor.load(model_file, threshold=0.99))) as url:
        unsure = _answer(browser, url, str(photo))
        broken = _answer(browser, url, str(noise))
    assert unsure["state"] == "unknown" and unsure["answer"] == "unknown" and len(unsure["top"]) == 3
    assert broken["state"] == "error" and broken["error"].startswith("Error 400: cannot read image noise.png")
