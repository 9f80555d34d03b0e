"""A bounded load test of ``tlkit serve`` on loopback: ordinary uploads, or hostile ones.

Starts ``tlkit serve`` in a subprocess on 127.0.0.1 (never another host), sends a fixed
number of requests, then stops the server, and prints JSON figures.

The default run sends ``--requests`` uploads of one image from ``--concurrency`` clients to
``POST /predict``: latency p50/p90/p99/max, requests/s, errors by status, and the server's
resident memory (VmRSS) after warm-up, half-way and at the end, plus its peak (VmHWM).

``--hostile`` runs three bounded scenarios against one server limited to 1,024 open files,
each reporting the statuses, latency and the server's peak memory against the bound that
``tlkit.service.memory_bound`` documents for the server's limits:

- ``png``: ``--rounds`` rounds of 16 uploads at once of the worst PNG the limits accept (RGBA,
  as many pixels as ``max_decode_bytes`` allows), then 16 at once of a 7000x7000 PNG;
- ``batch``: 4 ``POST /predict/batch`` at once, each ``max_files`` files of nearly
  ``max_bytes`` (noise PNGs, which do not compress);
- ``slow``: 1,100 connections sending a byte a second for ``--slow-seconds`` while
  ``GET /health`` is timed every 0.2 s.

    python benchmarks/load_service.py --requests 500 --concurrency 4 --out runs/load_service.json
    python benchmarks/load_service.py --hostile --out runs/load_hostile.json
    python benchmarks/load_service.py --model runs/train/x_model.keras --image photo.jpg

Without ``--model`` it serves an untrained 32-px CNN (5 classes): serving cost does not depend
on the weights. Without ``--image`` it sends a 640x480 JPEG (a phone-style upload).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

HOST = "127.0.0.1"
SERVER_FILES = 1024  # the server's open-file limit in --hostile (a common `ulimit -n`)
SLOW_CONNECTIONS = 1100


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


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _photo(width: int = 640, height: int = 480) -> bytes:
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    img = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _flat_png(side: int) -> bytes:
    """An RGBA PNG of ``side`` x ``side`` that compresses to little (smooth ramps)."""
    ramp = (np.arange(side) * 255 // max(side - 1, 1)).astype(np.uint8)
    rgba = np.empty((side, side, 4), np.uint8)
    rgba[..., 0], rgba[..., 1] = ramp[None, :], ramp[:, None]
    rgba[..., 2], rgba[..., 3] = 128, 255
    return _png(rgba)


def _noise_png(max_bytes: int) -> bytes:
    """A noise RGB PNG just under ``max_bytes`` (noise does not compress: 3 bytes a pixel)."""
    side = math.isqrt(max_bytes // 3)
    while True:
        data = _png(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))
        if len(data) <= max_bytes:
            return data
        side -= 16


def _tiny_model(folder: Path) -> Path:
    from tlkit.modelfile import save_model
    from tlkit.models import build_classifier

    clf = build_classifier("cnn", 5, input_shape=(32, 32, 3))
    return save_model(clf.model, folder / "load_model.keras", ["a", "b", "c", "d", "e"])


@contextlib.contextmanager
def _serving(model: Path, timeout_s: float, files: int | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """``tlkit serve`` on loopback (with at most ``files`` open files); yields (url, process)."""
    import httpx

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    port = _free_port()
    url = f"http://{HOST}:{port}"
    server = subprocess.Popen([sys.executable, "-m", "tlkit.cli", "serve", "--model", str(model),
                               "--host", HOST, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              preexec_fn=limit_files if files else None)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not answer /health within {timeout_s:.0f} s")
            time.sleep(0.25)
        yield url, server
    finally:
        server.terminate()
        server.wait(30)


def _latency(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {q: round(float(np.percentile(ms, p)), 2) for q, p in (("p50", 50), ("p90", 90), ("p99", 99),
                                                                 ("max", 100))}


def run(model: Path, image: bytes, requests: int, concurrency: int, timeout_s: float) -> dict:
    import httpx

    from tlkit.system import cpu_load

    load_before = cpu_load()
    with _serving(model, timeout_s) as (url, server):
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

    rss = [memory[k]["VmRSS"] for k in ("after_warmup", "half_way", "end") if k in memory]
    return {
        "requests": requests, "concurrency": concurrency, "wall_s": round(wall, 3),
        "requests_per_s": round(requests / wall, 2), "latency_ms": _latency(latencies),
        "ok": statuses.get(200, 0), "errors": {str(k): v for k, v in statuses.items() if k != 200},
        "server_rss_mb": {k: round(v["VmRSS"], 1) for k, v in memory.items()},
        "server_rss_growth_mb": round(rss[-1] - rss[0], 1),
        "server_peak_rss_mb": round(memory["end"]["VmHWM"], 1),
        "image_bytes": len(image), "model": model.name, "host": _host(load_before),
    }


def _host(load_before: float | None) -> dict:
    from tlkit.system import cpu_model

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_before": load_before,
            "python": platform.python_version()}


def _peak_during(pid: int, work: Callable[[], dict]) -> dict:
    """Run ``work`` and add the server's peak resident memory meanwhile: VmHWM after resetting
    it (Linux's clear_refs), and the largest VmRSS sampled every 20 ms."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    sampled, done = [_rss_mb(pid)["VmRSS"]], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            sampled.append(_rss_mb(pid)["VmRSS"])

    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.perf_counter()
    try:
        result = work()
    finally:
        done.set()
        sampler.join()
    return {**result, "wall_s": round(time.perf_counter() - t0, 2),
            "server_peak_rss_mb": round(max(max(sampled), _rss_mb(pid)["VmHWM"]), 1)}


def _at_once(url: str, n: int, post: Callable, timeout_s: float) -> dict:
    """``n`` requests at once (``post(client)``), each on its own connection."""
    import httpx

    def one(_: int) -> tuple[int | str, float]:
        with httpx.Client(base_url=url, timeout=timeout_s) as c:
            t0 = time.perf_counter()
            try:
                status: int | str = post(c).status_code
            except httpx.TransportError as e:
                status = type(e).__name__
            return status, time.perf_counter() - t0

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    return {"statuses": {str(k): v for k, v in sorted(Counter(s for s, _ in results).items(), key=str)},
            "latency_ms": _latency([t for _, t in results])}


def _slow_clients(url: str, port: int, seconds: float) -> dict:
    """``SLOW_CONNECTIONS`` connections sending a byte a second while /health is timed."""
    import httpx

    socks = []
    for _ in range(SLOW_CONNECTIONS):
        s = socket.create_connection((HOST, port))
        s.setblocking(False)
        s.send(b"G")
        socks.append(s)
    waits, failures, t_end, next_byte = [], Counter(), time.monotonic() + seconds, 0.0
    try:
        while time.monotonic() < t_end:
            if time.monotonic() >= next_byte:  # a byte a second on every connection still open
                for s in socks:
                    with contextlib.suppress(OSError):
                        s.send(b"E")
                next_byte = time.monotonic() + 1
            t0 = time.perf_counter()
            try:
                status = httpx.get(url + "/health", timeout=10).status_code
            except httpx.TransportError as e:
                status = type(e).__name__
            waits.append(time.perf_counter() - t0)
            if status != 200:
                failures[str(status)] += 1
            time.sleep(0.2)
        closed = 0  # by the server: an end of stream, a reset or its 503
        for s in socks:
            try:
                closed += s.recv(1024)[:5] in (b"", b"HTTP/")
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
    finally:
        for s in socks:
            s.close()
    return {"connections": SLOW_CONNECTIONS, "seconds": seconds, "closed_by_server": closed,
            "health_requests": len(waits), "health_failures": dict(failures),
            "health_latency_ms": _latency(waits)}


def hostile(model: Path, rounds: int, slow_seconds: float, timeout_s: float) -> dict:
    """The three hostile scenarios against one server, with the documented memory bound."""
    from tlkit.modelfile import load_model
    from tlkit.predict import DECODE_BYTES_PER_PIXEL, Limits
    from tlkit.service import memory_bound, upload_bytes
    from tlkit.system import cpu_load

    limits, load_before = Limits(), cpu_load()
    shape = tuple(load_model(model)[0].input_shape[1:])
    side = math.isqrt(limits.max_decode_bytes // DECODE_BYTES_PER_PIXEL["PNG"])
    worst, bomb, noise = _flat_png(side), _flat_png(7000), _noise_png(limits.max_bytes)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, SLOW_CONNECTIONS + 200), hard))
    with _serving(model, timeout_s, files=SERVER_FILES) as (url, server):
        base = _rss_mb(server.pid)["VmRSS"]
        port = int(url.rsplit(":", 1)[1])

        def pngs(data: bytes) -> Callable[[], dict]:
            return lambda: _at_once(url, 16, lambda c: c.post(
                "/predict", files={"file": ("big.png", data, "image/png")}), timeout_s)

        batch = [("files", (f"{i}.png", noise, "image/png")) for i in range(limits.max_files)]
        scenarios = {
            **{f"png_round{r + 1}": _peak_during(server.pid, pngs(worst)) for r in range(rounds)},
            "png_7000x7000": _peak_during(server.pid, pngs(bomb)),
            "batch": _peak_during(server.pid, lambda: _at_once(
                url, 4, lambda c: c.post("/predict/batch", files=batch), timeout_s)),
            "slow": _peak_during(server.pid, lambda: _slow_clients(url, port, slow_seconds)),
        }
        alive = server.poll() is None
    bound = memory_bound(limits, shape, int(base * 2**20)) / 2**20
    peak = max(s["server_peak_rss_mb"] for s in scenarios.values())
    return {
        "limits": dict(vars(limits)),
        "server_open_files": SERVER_FILES,
        "inputs": {"worst_png": f"{side}x{side} RGBA, {len(worst):,} bytes",
                   "png_7000x7000": f"RGBA, {len(bomb):,} bytes",
                   "batch_file": f"noise PNG, {len(noise):,} bytes, x {limits.max_files} a batch"},
        "scenarios": scenarios,
        "server_base_rss_mb": round(base, 1),
        "memory_bound_mb": round(bound, 1),
        "memory_bound": (f"base {base:,.0f} MB + {limits.max_concurrent} uploads x "
                         f"{upload_bytes(limits, shape) / 2**20:,.1f} MB + {limits.max_connections} "
                         f"connections x 0.5 MB"),
        "server_peak_rss_mb": peak, "within_bound": peak <= bound, "server_alive": alive,
        "model": model.name, "host": _host(load_before),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="a .keras written by tlkit (default: tiny CNN)")
    p.add_argument("--image", type=Path, default=None, help="the image to send (default: 640x480 JPEG)")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--hostile", action="store_true", help="the hostile scenarios instead (see above)")
    p.add_argument("--rounds", type=int, default=2, help="--hostile: rounds of 16 worst-case PNGs")
    p.add_argument("--slow-seconds", type=float, default=15.0, help="--hostile: how long the slow clients last")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds: server start and each request")
    p.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    a = p.parse_args()
    if a.requests < 1 or not 1 <= a.concurrency <= 64:
        p.error("--requests must be at least 1 and --concurrency between 1 and 64")
    if not 1 <= a.rounds <= 10 or not 1 <= a.slow_seconds <= 120:
        p.error("--rounds must be between 1 and 10 and --slow-seconds between 1 and 120")
    with tempfile.TemporaryDirectory() as tmp:
        model = a.model or _tiny_model(Path(tmp))
        if a.hostile:
            result = hostile(model, a.rounds, a.slow_seconds, a.timeout)
        else:
            image = a.image.read_bytes() if a.image else _photo()
            result = run(model, image, a.requests, a.concurrency, a.timeout)
    print(json.dumps(result, indent=1))
    if a.out:
        from tlkit.system import write_json

        write_json(result, a.out)


if __name__ == "__main__":
    main()
