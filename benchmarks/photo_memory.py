"""Peak memory and cache size of loading a folder of large photos at a small working size.

Writes a folder of large JPEGs (phone-photo size, noisy content so the files are as big as
real ones) into a temporary folder, then loads it in fresh subprocesses with
``load_dataset(folder, image_size=S)`` and ``load_dataset(folder, fallback_size=S)`` (what
``tlkit train --img-size S`` does), on a folder of one size and on one with portrait photos
mixed in. Each case reports the child's peak RSS (``VmHWM``: unlike ``ru_maxrss`` it leaves out
the parent's pages at fork time; ``ru_maxrss`` where /proc is absent), the peak before loading
(imports only), the cache entry's size, the array shape and the wall time, as JSON.

    python benchmarks/photo_memory.py --out runs/photo_memory.json
    python benchmarks/photo_memory.py --photos 300 --img-size 224 --crop center   # notebook 7's load
    python benchmarks/photo_memory.py --data-module old_data.py --label old --out old.json

``--data-module`` measures another copy of ``tlkit/data.py`` (e.g. ``git show
HEAD:tlkit/data.py > old_data.py``) with the installed tlkit around it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import importlib.util, json, resource, sys, time
from pathlib import Path


def peak_mb():
    # VmHWM is this process's own peak; ru_maxrss also counts the parent's pages at fork time
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


module, folder, mode, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
options = json.loads(sys.argv[5])  # e.g. {"crop": "center"}
if module == "tlkit.data":
    import tlkit.data as data
else:
    spec = importlib.util.spec_from_file_location("data_under_test", module)
    data = sys.modules["data_under_test"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data)
import PIL.Image  # imported before the baseline so that only the loading itself counts
before = peak_mb()
start = time.perf_counter()
ds = data.load_dataset(folder, **{mode: size}, **options)
wall = time.perf_counter() - start
peak = peak_mb()
entries = list((data.cache_dir() / "datasets").glob("*.npz"))
print(json.dumps({"peak_rss_mb": peak, "imports_rss_mb": before,
                  "load_seconds": round(wall, 2), "image_shape": list(ds.image_shape),
                  "images": int(sum(map(sum, ds.counts().values()))),
                  "cache_entry_mb": sum(p.stat().st_size for p in entries) / 2**20}))
"""


def write_photos(folder: Path, n: int, width: int, height: int, portrait_every: int,
                 seed: int = 0) -> dict:
    """``n`` JPEGs in two class folders; every ``portrait_every``-th one is height x width."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 10, (height + 64, width + 64, 3)).round().astype(np.int16)
    sizes = []
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
        img = np.asarray(small.resize((width, height), Image.BICUBIC), np.int16)
        dy, dx = rng.integers(0, 64, 2)
        img += noise[dy:dy + height, dx:dx + width]  # in place, in 16 bits: a 12-MP photo a second
        img = np.clip(img, 0, 255, out=img).astype(np.uint8)
        if portrait_every and i % portrait_every == portrait_every - 1:
            img = np.ascontiguousarray(img.transpose(1, 0, 2))
        path = folder / ("cats" if i % 2 else "dogs") / f"IMG_{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path, quality=92)
        sizes.append(path.stat().st_size)
    return {"photos": n, "photo_mb_mean": round(float(np.mean(sizes)) / 2**20, 2),
            "folder_mb": round(sum(sizes) / 2**20, 1)}


def measure(module: str, folder: Path, mode: str, size: int, options: dict | None = None) -> dict:
    """One load in a fresh process with an empty cache; ``options``: more load_dataset arguments."""
    with tempfile.TemporaryDirectory(prefix="tlkit-bench-cache-") as cache:
        env = {**os.environ, "TLKIT_CACHE_DIR": cache}
        proc = subprocess.run([sys.executable, "-c", CHILD, module, str(folder), mode, str(size),
                               json.dumps(options or {})], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", type=int, default=30)
    p.add_argument("--width", type=int, default=4000)
    p.add_argument("--height", type=int, default=3000)
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--data-module", default="tlkit.data",
                   help="tlkit.data, or the path of another copy of data.py to measure")
    p.add_argument("--crop", default=None, help="center, pad or squash (default: load_dataset's own)")
    p.add_argument("--layouts", nargs="+", default=["one_size", "mixed_orientation"],
                   choices=["one_size", "mixed_orientation"])
    p.add_argument("--label", default="current")
    p.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    a = p.parse_args(argv)
    options = {"crop": a.crop} if a.crop else {}
    result = {"label": a.label, "data_module": a.data_module, "img_size": a.img_size, **options,
              "platform": platform.platform(), "measured": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "cases": {}}
    with tempfile.TemporaryDirectory(prefix="tlkit-photos-") as tmp:
        for layout, portrait_every in (("one_size", 0), ("mixed_orientation", 5)):
            if layout not in a.layouts:
                continue
            folder = Path(tmp) / layout
            result[layout] = write_photos(folder, a.photos, a.width, a.height, portrait_every)
            for mode in ("image_size", "fallback_size"):
                case = f"{layout}/{mode}"
                result["cases"][case] = measure(a.data_module, folder, mode, a.img_size, options)
                result["cases"][case]["arrays_mb"] = round(a.photos * a.img_size ** 2 * 3 / 2**20, 1)
                print(case, result["cases"][case], flush=True)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
