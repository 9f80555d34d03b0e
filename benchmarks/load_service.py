"""A bounded load test of ``tlkit serve``'s ``POST /predict`` on loopback.

Starts ``tlkit serve`` in a subprocess on 127.0.0.1 (never another host), sends a fixed
number of requests with a fixed number of concurrent clients, then stops the server. Reports
latency p50/p90/p99/max, requests/s, errors by status, and the server's resident memory
(VmRSS) after warm-up, half-way and at the end, plus its peak (VmHWM), as JSON.

    python benchmarks/load_service.py --requests 500 --concurrency 4 --out runs/load_service.json
    python benchmarks/load_service.py --model runs/train/x_model.keras --image photo.jpg

Without ``--model`` it serves an untrained 32-px CNN (5 classes): serving cost does not depend
on the weights. Without ``--image`` it sends a 640x480 JPEG (a phone-style upload).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def _photo(width: int = 640, height: int = 480) -> bytes:
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    img = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _tiny_model(folder: Path) -> Path:
    from tlkit.modelfile import save_model
    from tlkit.models import build_classifier

    clf = build_classifier("cnn", 5, input_shape=(32, 32, 3))
    return save_model(clf.model, folder / "load_model.keras", ["a", "b", "c", "d", "e"])


def run(model: Path, image: bytes, requests: int, concurrency: int, timeout_s: float) -> dict:
    import httpx

    from tlkit.system import cpu_load, cpu_model

    load_before = cpu_load()
    port = _free_port()
    url = f"http://{HOST}:{port}"
    server = subprocess.Popen([sys.executable, "-m", "tlkit.cli", "serve", "--model", str(model),
                               "--host", HOST, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not answer /health within {timeout_s:.0f} s")
            time.sleep(0.25)

        files = {"file": ("photo.jpg", image, "image/jpeg")}
        with httpx.Client(base_url=url, timeout=timeout_s) as c:  # warm-up: first calls trace
            for _ in range(10):
                c.post("/predict", files=files)
        memory = {"after_warmup": _rss_mb(server.pid)}

        latencies: list[float] = []
        statuses: Counter = Counter()
        lock = threading.Lock()
        counter = iter(range(requests))

        def worker() -> None:
            with httpx.Client(base_url=url, timeout=timeout_s) as c:
                for i in counter:  # each worker takes the next request number until none is left
                    t0 = time.perf_counter()
                    try:
                        status = c.post("/predict", files=files).status_code
                    except httpx.TransportError as e:
                        status = type(e).__name__
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                        statuses[status] += 1
                        if i == requests // 2:
                            memory["half_way"] = _rss_mb(server.pid)

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        memory["end"] = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)

    ms = np.asarray(latencies) * 1000
    rss = [memory[k]["VmRSS"] for k in ("after_warmup", "half_way", "end") if k in memory]
    return {
        "requests": requests, "concurrency": concurrency, "wall_s": round(wall, 3),
        "requests_per_s": round(requests / wall, 2),
        "latency_ms": {q: round(float(np.percentile(ms, p)), 2)
                       for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        "ok": statuses.get(200, 0), "errors": {str(k): v for k, v in statuses.items() if k != 200},
        "server_rss_mb": {k: round(v["VmRSS"], 1) for k, v in memory.items()},
        "server_rss_growth_mb": round(rss[-1] - rss[0], 1),
        "server_peak_rss_mb": round(memory["end"]["VmHWM"], 1),
        "image_bytes": len(image), "model": model.name,
        "host": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_before": load_before,
                 "python": platform.python_version()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="a .keras written by tlkit (default: tiny CNN)")
    p.add_argument("--image", type=Path, default=None, help="the image to send (default: 640x480 JPEG)")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds: server start and each request")
    p.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    a = p.parse_args()
    if a.requests < 1 or not 1 <= a.concurrency <= 64:
        p.error("--requests must be at least 1 and --concurrency between 1 and 64")
    image = a.image.read_bytes() if a.image else _photo()
    with tempfile.TemporaryDirectory() as tmp:
        model = a.model or _tiny_model(Path(tmp))
        result = run(model, image, a.requests, a.concurrency, a.timeout)
    print(json.dumps(result, indent=1))
    if a.out:
        from tlkit.system import write_json

        write_json(result, a.out)


if __name__ == "__main__":
    main()
