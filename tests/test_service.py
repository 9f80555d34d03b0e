"""tlkit.service: the HTTP API, through a real HTTP client, in-process and on loopback.

Every bad upload gets a 4xx JSON answer and the server keeps answering."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from conftest import CLI_PREFIX, ROOT, SHARED  # noqa: E402
from servekit import NAMES, bomb_png, encode, image_bytes, tiny_model  # noqa: E402
from tlkit.modelfile import ModelFileError, save_model  # noqa: E402
from tlkit.predict import Limits, Predictor, decode_image  # noqa: E402
from tlkit.service import _UploadGuard, answer_text, app_from_model, create_app, running  # noqa: E402

LIMITS = Limits(max_bytes=200_000, max_pixels=4_000_000, max_files=4, top_k=2)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("service-model"))


@pytest.fixture(scope="module")
def predictor(model_file):
    return Predictor.load(model_file, threshold=0.0)


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, LIMITS)) as c:
        yield c


def _upload(data: bytes, name: str = "x.png", ctype: str = "image/png") -> dict:
    return {"file": (name, data, ctype)}


def test_health_labels_docs(client):
    assert client.get("/health").json() == {"status": "ok", "classes": 3, "input_shape": [32, 32, 3],
                                            "threshold": 0.0}
    assert client.get("/labels").json() == {"labels": NAMES}
    docs = client.get("/docs")
    assert docs.status_code == 200
    # offline: every file the page loads comes from this server, and is there
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", docs.text)
    assert urls and not [u for u in urls if not u.startswith("/")], urls
    assert all(client.get(u).status_code == 200 for u in urls)
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/predict/batch", "/labels", "/health"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and 'capture="environment"' in page.text


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_predict_answers_what_the_model_says(client, predictor, fmt):
    data = image_bytes(fmt, (64, 48), seed=3)
    r = client.post("/predict", files=_upload(data, f"x.{fmt.lower()}", f"image/{fmt.lower()}"))
    assert r.status_code == 200, r.text
    j = r.json()
    p = predictor.proba(decode_image(data, (32, 32)))[0]
    assert j["label"] == NAMES[p.argmax()] and j["unknown"] is False
    assert j["confidence"] == pytest.approx(p.max(), abs=1e-5)
    assert [g["label"] for g in j["top_k"]] == [NAMES[i] for i in np.argsort(-p)[:2]]
    assert j["filename"] == f"x.{fmt.lower()}"


def test_16_bit_png_is_answered_like_its_8_bit_twin(client):
    """A 16-bit greyscale PNG is scaled to 8 bits (Pillow alone clips it to near white)."""
    rng = np.random.default_rng(5)
    grey8 = rng.integers(0, 256, (32, 32), dtype=np.uint8)  # the model's size: no resizing
    j16 = client.post("/predict", files=_upload(encode(grey8.astype(np.uint16) * 257), "g16.png")).json()
    j8 = client.post("/predict", files=_upload(encode(grey8), "g8.png")).json()
    assert j16["label"] == j8["label"] and j16["confidence"] == pytest.approx(j8["confidence"], abs=1e-6)


def test_unknown_below_threshold(model_file):
    with TestClient(app_from_model(model_file, threshold=0.99)) as c:
        j = c.post("/predict", files=_upload(image_bytes())).json()
    assert j["label"] == "unknown" and j["unknown"] is True and j["confidence"] < 0.99
    assert j["top_k"][0]["label"] in NAMES
    top = j["top_k"][0]
    assert answer_text(j).startswith(f"unknown (the top class is below the threshold); top-class "
                                     f"probability {j['confidence']:.3f}; top classes: {top['label']} ")


def test_answer_text_says_the_answer_in_words():
    answer = {"label": "cat", "confidence": 0.91234, "unknown": False,
              "top_k": [{"label": "cat", "probability": 0.91234}, {"label": "dog", "probability": 0.05}]}
    assert answer_text(answer) == "cat; top-class probability 0.912; top classes: cat 0.912, dog 0.050"


def test_batch(client, predictor):
    datas = [image_bytes("PNG", seed=i) for i in range(3)]
    r = client.post("/predict/batch", files=[("files", (f"{i}.png", d, "image/png")) for i, d in enumerate(datas)])
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    want = predictor.classify(np.stack([decode_image(d, (32, 32)) for d in datas]), 2)
    assert [g["filename"] for g in got] == ["0.png", "1.png", "2.png"]
    assert [g["label"] for g in got] == [w["label"] for w in want]
    too_many = [("files", (f"{i}.png", datas[0], "image/png")) for i in range(5)]
    r = client.post("/predict/batch", files=too_many)
    assert r.status_code == 413 and "over the limit of 4 files a request" in r.json()["detail"]


BAD = {
    "random bytes": (dict(files=_upload(os.urandom(3000))), 400, "not an image"),
    "truncated PNG": (dict(files=_upload(image_bytes("PNG", (120, 120))[:4000])), 400, "truncated"),
    "truncated JPEG": (dict(files=_upload(image_bytes("JPEG", (120, 120))[:1500], "x.jpg", "image/jpeg")),
                       400, "truncated"),
    "JSON body": (dict(json={"file": "x"}), 415, "multipart/form-data"),
    "text part": (dict(files=_upload(b"hello", "x.txt", "text/plain")), 415, "content type text/plain"),
    "GIF": (dict(files=_upload(image_bytes("GIF"), "x.gif", "application/octet-stream")), 415, "is GIF"),
    "empty body": (dict(content=b"", headers={"content-type": "multipart/form-data; boundary=b"}),
                   400, "empty request body"),
    "no boundary": (dict(content=b"x", headers={"content-type": "multipart/form-data"}), 415,
                    "multipart/form-data (field 'file'), with a boundary"),
    "empty file": (dict(files=_upload(b"")), 400, "is empty"),
    "file over max_bytes": (dict(files=_upload(b"\x89PNG" + os.urandom(300_000))), 413, "over the limit"),
    "decompression bomb": (dict(files=_upload(bomb_png(4000, 4000), "bomb.png")), 413,
                           "4000x4000 = 16,000,000 pixels, over the limit of 4,000,000"),
    "two files": (dict(files=[("file", ("a.png", image_bytes(), "image/png"))] * 2), 413,
                  "over the limit of 1 file a request to /predict"),
    "no file field": (dict(files={"image": ("x.png", image_bytes(), "image/png")}), 422, None),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_uploads_get_4xx_json_and_the_server_keeps_serving(client, case):
    kwargs, status, match = BAD[case]
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    if match:
        assert match in r.json()["detail"]
    assert client.get("/health").status_code == 200
    assert client.post("/predict", files=_upload(image_bytes())).status_code == 200


def test_model_loads_once_and_safely(monkeypatch, model_file, tmp_path):
    import keras

    import tlkit.modelfile

    calls = []
    real = tlkit.modelfile.load_model
    monkeypatch.setattr(tlkit.modelfile, "load_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    with TestClient(app_from_model(model_file)) as c:
        for _ in range(3):
            assert c.post("/predict", files=_upload(image_bytes())).status_code == 200
    assert len(calls) == 1
    # a model file with a Lambda layer (arbitrary code) is refused at start-up: safe_mode
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    evil = save_model(keras.Model(inputs, outputs), tmp_path / "evil_model.keras", NAMES)
    with pytest.raises(ModelFileError, match="cannot load"):
        app_from_model(evil)


def _first_flower() -> bytes:
    archive = SHARED / "data" / "flowers5-small.tar.gz"
    if not archive.is_file():
        pytest.skip("../shared/data/flowers5-small.tar.gz is absent")
    with tarfile.open(archive, "r|gz") as tar:
        for m in tar:
            if m.isfile() and m.name.lower().endswith(".jpg"):
                return tar.extractfile(m).read()
    pytest.fail("no JPEG in the flowers archive")


def test_loopback_real_photo_and_random_bytes(predictor):
    """uvicorn on 127.0.0.1 in a thread, a real HTTP client over TCP."""
    photo = _first_flower()
    with running(create_app(predictor, LIMITS)) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert url.startswith("http://127.0.0.1:")
        r = c.post("/predict", files=_upload(photo, "flower.jpg", "image/jpeg"))
        assert r.status_code == 200, r.text
        assert r.json()["label"] in NAMES and 0 < r.json()["confidence"] <= 1
        bad = c.post("/predict", files=_upload(os.urandom(5000), "noise.jpg", "image/jpeg"))
        assert bad.status_code == 400 and "not an image" in bad.json()["detail"]
        assert c.get("/health").json()["status"] == "ok"


def test_a_trained_run_serves_on_loopback(cli_run):
    """The acceptance path: the model of a real ``tlkit train`` run, its own class names."""
    run, _ = cli_run
    record = json.loads((run / f"{CLI_PREFIX}_record.json").read_text())
    names = record["dataset"]["class_names"]
    with running(app_from_model(run / f"{CLI_PREFIX}_model.keras")) as url:
        assert httpx.get(url + "/labels").json() == {"labels": names}
        j = httpx.post(url + "/predict", files=_upload(image_bytes("PNG", (32, 32)))).json()
        assert j["label"] in names + ["unknown"] and len(j["top_k"]) == 3
        assert httpx.post(url + "/predict", files=_upload(os.urandom(999))).status_code == 400
        assert httpx.get(url + "/health").json()["status"] == "ok"


def test_loopback_streamed_body_over_the_limit(predictor):
    """A chunked upload with no Content-Length is refused at the limit (413), and the
    server answers the next request."""
    def body():
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\r\n"
        for _ in range(20):  # 20 x 64 KiB = 1.3 MB, over the 200,000 + 64 KiB limit
            yield b"\0" * 65536

    with running(create_app(predictor, LIMITS)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/predict", content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert "content-length" not in r.request.headers
        assert r.status_code == 413 and "request body is over the limit of 265,536 bytes" in r.json()["detail"]
        assert c.get("/health").status_code == 200


def test_serve_without_the_extra_names_it(model_file):
    code = ("import sys; sys.modules['fastapi'] = None; from tlkit.cli import main; "
            f"sys.exit(main(['serve', '--model', {str(model_file)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "tlkit: error: tlkit serve needs fastapi: install the serve extra, pip install 'tlkit[serve]'"]


def test_serve_settings_are_checked(model_file, capsys):
    from tlkit.cli import main

    assert main(["serve", "--model", str(model_file), "--max-bytes", "0"]) == 2
    assert "--max-bytes must be at least 1, not 0" in capsys.readouterr().err
    assert main(["serve", "--model", str(model_file), "--threshold", "-1"]) == 2
    assert "--threshold must be a probability" in capsys.readouterr().err
    assert main(["serve", "--model", str(model_file), "--port", "70000"]) == 2
    assert "--port must be between 0 and 65535" in capsys.readouterr().err


def test_load_script_is_bounded_and_reports(tmp_path, model_file):
    """benchmarks/load_service.py: a fixed number of requests on loopback, JSON figures."""
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load_service.py"), "--model",
                           str(model_file), "--requests", "12", "--concurrency", "3", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["requests"] == 12 == r["ok"] and r["errors"] == {} and r["concurrency"] == 3
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["max"]
    assert r["requests_per_s"] > 0 and r["server_rss_mb"]["end"] > 0


def _answer(sock: socket.socket) -> bytes:
    """A whole HTTP answer: its head, then as many body bytes as its content-length says
    (one recv may return the head alone)."""
    sock.settimeout(20)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_uploads_beyond_max_concurrent_get_503_and_a_stalled_body_408(predictor):
    """With one upload slot taken by a client that stops sending, the next upload gets 503
    with Retry-After; the stalled one gets 408 after body_timeout, and the slot is free again."""
    limits = dataclasses.replace(LIMITS, max_concurrent=1, body_timeout=2.0)
    part = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    with running(create_app(predictor, limits)) as url, httpx.Client(base_url=url, timeout=30) as c:
        stalled = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        stalled.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n" + part)
        for _ in range(100):  # until the server has let the stalled upload in
            r = c.post("/predict", files=_upload(image_bytes()))
            if r.status_code != 200:
                break
            time.sleep(0.02)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "try again in 1 s" in r.json()["detail"]
        answer = _answer(stalled)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 2 s" in answer, answer
        stalled.close()
        assert c.post("/predict", files=_upload(image_bytes())).status_code == 200
        assert c.get("/health").status_code == 200


def test_upload_bodies_stream_through_never_held_whole():
    """The app gets the first chunk of a body before the second is read from the client, so
    a body is never in memory whole (Starlette spools its files to disk beyond 1 MiB)."""
    read, seen = [], []

    async def client():
        read.append(len(read))
        return {"type": "http.request", "body": b"x" * 1000, "more_body": len(read) < 100}

    async def app(scope, receive, send):
        seen.append(((await receive())["body"][:1], len(read)))
        while (await receive())["more_body"]:
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict",
             "headers": [(b"content-type", b"multipart/form-data; boundary=b")]}
    asyncio.run(_UploadGuard(app, LIMITS, ("/predict",))(scope, client, send))
    assert seen == [(b"x", 1)] and len(read) == 100 and sent[0]["status"] == 200


def test_slow_clients_do_not_starve_health(model_file):
    """1,100 connections sending a byte a second to ``tlkit serve`` (default settings) limited
    to 1,024 open files: /health keeps answering, as connections are capped and the oldest
    still sending its headers makes room for a new one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if max(soft, hard if hard != resource.RLIM_INFINITY else 4096) < 1200:
        pytest.skip("this test opens 1,100 client sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tlkit.cli", "serve", "--model", str(model_file), "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)))
    slow: list[socket.socket] = []
    try:
        for _ in range(600):
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        for _ in range(1100):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setblocking(False)
            sock.send(b"G")
            slow.append(sock)
        waits = []
        for _ in range(4):  # a byte a second on every connection, /health in between
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"E")
            t0 = time.perf_counter()
            assert httpx.get(url + "/health", timeout=5).status_code == 200
            waits.append(time.perf_counter() - t0)
            time.sleep(1)
        assert max(waits) < 2, waits
    finally:
        for sock in slow:
            sock.close()
        server.terminate()
        server.wait(30)


def test_connection_cap_and_header_timeout(predictor):
    """A connection that sends no headers is closed after header_timeout; when every
    connection is taken by a client past its headers, a new one is answered 503 and closed."""
    limits = dataclasses.replace(LIMITS, max_connections=1, header_timeout=0.5)
    with running(create_app(predictor, limits)) as url:
        port = int(url.rsplit(":", 1)[1])
        silent = socket.create_connection(("127.0.0.1", port))
        t0 = time.perf_counter()
        assert _answer(silent) == b"" and time.perf_counter() - t0 < 5  # closed by the server
        silent.close()
        with httpx.Client(base_url=url, timeout=10) as kept:  # answered, then kept alive
            assert kept.get("/health").status_code == 200
            extra = socket.create_connection(("127.0.0.1", port))
            answer = _answer(extra)
            assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in answer
            extra.close()
        for _ in range(50):  # room again once the server has seen the kept one close
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health", timeout=10).status_code == 200:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("no room after the only connection closed")
