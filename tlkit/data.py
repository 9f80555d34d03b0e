"""Datasets: by name or path, local first, decoded once and cached as uint8 arrays.

``load_dataset("cifar10")`` looks in ``data_dir`` / ``$TLKIT_DATA_DIR`` for an image
folder or archive whose name starts with ``cifar10`` before it asks Keras to download;
``load_dataset("synthetic")`` draws a learnable data set in memory; any path to an
image folder (one folder a class, optionally under ``train/`` and ``test/``), a
``.tar``/``.tar.gz``/``.zip`` of one, or a folder of TFRecord shards also works.
Non-square images are made square by ``crop`` (:data:`CROPS`); every file's bytes are hashed
as it streams past, so identical files across classes and splits are reported
(:meth:`Dataset.duplicates`).
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from tlkit import TlkitError
from tlkit.system import (cache_dir, cache_key, cache_load, cache_store, clean_temp_files,
                          download_timeout, file_digest)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
SPLIT_NAMES = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}
BUILTIN = ("synthetic", "cifar10", "cifar100", "flowers")
FLOWERS_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
CACHE_VERSION = 4  # of the data-set cache entries under cache_dir() / "datasets"; 4: file names and hashes
MAX_IMAGE_BYTES = 64 * 2**20  # a larger file or archive member is skipped, never read whole
MAX_IMAGE_PIXELS = 50_000_000  # an image that would decode to more pixels is skipped
#: How a non-square image becomes a square one: ``center`` crops its middle (Keras's
#: ``crop_to_aspect_ratio``), ``pad`` fits it whole and fills the rest black (letterbox),
#: ``squash`` resizes it whole (distorted).
CROPS = ("center", "pad", "squash")


class DatasetError(TlkitError):
    """A data set could not be found or read; the message says how to fix it."""


@dataclass
class Dataset:
    """Images as uint8 arrays (N, H, W, 3) with integer labels and class names."""

    name: str
    source: str
    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    corrupt: list[str] = field(default_factory=list)
    crop: str = "squash"
    #: per split, each image's file (relative path) and a 64-bit hash of its bytes, in the
    #: order of the split's images as loaded; empty for data sets not read from files
    files: dict[str, np.ndarray] = field(default_factory=dict)
    digests: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def counts(self) -> dict[str, list[int]]:
        """Images per class in each split."""
        out = {}
        for split in ("train", "val", "test"):
            y = getattr(self, f"y_{split}")
            if y is not None:
                out[split] = np.bincount(y, minlength=self.num_classes).tolist()
        return out

    def imbalance(self) -> float:
        """Largest over smallest training class (1.0 = balanced)."""
        c = np.bincount(self.y_train, minlength=self.num_classes)
        return float(c.max() / max(c.min(), 1))

    def describe(self) -> str:
        """A short human-readable summary: sizes, class counts, imbalance, corrupt files and
        identical files (when the data came from files)."""
        c = self.counts()
        lines = [f"{self.name} ({self.source}): {self.num_classes} classes, images {self.image_shape}"]
        for split, counts in c.items():
            lines.append(f"  {split:5s} {sum(counts):6d} images, per class min {min(counts)} max {max(counts)}")
        lines.append(f"  imbalance (max/min train class) {self.imbalance():.2f}")
        if self.corrupt:
            lines.append(f"  {len(self.corrupt)} unreadable image(s) skipped: {', '.join(self.corrupt[:5])}"
                         + (" ..." if len(self.corrupt) > 5 else ""))
        if self.digests:
            d = duplicate_summary(self.duplicates())
            lines.append(f"  identical files: {d['groups']} group(s) of {d['files']} files, "
                         f"{d['across_classes']} across classes, {d['across_splits']} across splits"
                         + (" (Dataset.duplicates() lists them)" if d["groups"] else ""))
        return "\n".join(lines)

    def info(self) -> dict:
        """What a run record stores about the data."""
        out = {"name": self.name, "source": self.source, "class_names": list(self.class_names),
               "counts": self.counts(), "image_shape": list(self.image_shape),
               "imbalance": round(self.imbalance(), 3), "corrupt": list(self.corrupt), "crop": self.crop}
        if self.digests:
            out["duplicates"] = duplicate_summary(self.duplicates())
        return out

    def duplicates(self) -> list[list[dict]]:
        """Groups of files with identical bytes (largest first): each file as ``split``,
        ``index`` (into that split), ``file`` and ``label``. A group spanning classes is a
        labelling conflict; one spanning splits leaks test images into training."""
        if not self.digests:
            return []
        groups: dict[int, list[tuple[str, int]]] = {}
        for split, digests in self.digests.items():
            for i, d in enumerate(digests.tolist()):
                groups.setdefault(d, []).append((split, i))
        out = [[self.about(split, i) for split, i in members] for members in groups.values() if len(members) > 1]
        return sorted(out, key=lambda g: (-len(g), g[0]["file"]))

    def about(self, split: str, index: int) -> dict:
        """One image: its ``split``, ``index`` there, ``file`` (or ``"<split> #<index>"`` for data
        not read from files) and ``label`` (class name)."""
        files = self.files.get(split)
        return {"split": split, "index": int(index),
                "file": str(files[index]) if files is not None else f"{split} #{index}",
                "label": self.class_names[int(getattr(self, f"y_{split}")[index])]}


def duplicate_summary(groups: list[list[dict]]) -> dict:
    """How many groups of identical files (:meth:`Dataset.duplicates`) there are, how many
    files they hold, and how many span classes or splits."""
    return {"groups": len(groups), "files": sum(map(len, groups)),
            "across_classes": sum(len({f["label"] for f in g}) > 1 for g in groups),
            "across_splits": sum(len({f["split"] for f in g}) > 1 for g in groups)}


# --------------------------------------------------------------------------- synthetic

def make_synthetic(n_classes: int = 4, n_per_class: int = 200, size: int = 32, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Draw ``n_classes`` of coloured shapes and textures on noisy backgrounds.

    Each class has its own shape or texture; colour, position, scale and background
    vary per image, so a model has to learn the shapes, not one pixel. Deterministic by seed.
    """
    kinds = ["disc", "square", "triangle", "cross", "ring", "stripes", "checker", "diamond",
             "hbar", "dots"]
    if not 2 <= n_classes <= len(kinds):
        raise DatasetError(f"synthetic data has 2 to {len(kinds)} classes, not {n_classes}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    n = n_classes * n_per_class
    labels = np.repeat(np.arange(n_classes), n_per_class)
    images = np.empty((n, size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        cx, cy = rng.uniform(0.3, 0.7, 2)
        r = rng.uniform(0.15, 0.3)
        dx, dy = xx - cx, yy - cy
        kind = kinds[label]
        if kind == "disc":
            mask = dx**2 + dy**2 < r**2
        elif kind == "square":
            mask = (abs(dx) < r * 0.85) & (abs(dy) < r * 0.85)
        elif kind == "triangle":
            mask = (dy < r * 0.8) & (dy > -r) & (abs(dx) < (dy + r) * 0.6)
        elif kind == "cross":
            mask = ((abs(dx) < r / 3.5) & (abs(dy) < r)) | ((abs(dy) < r / 3.5) & (abs(dx) < r))
        elif kind == "ring":
            d = np.sqrt(dx**2 + dy**2)
            mask = (d < r) & (d > r * 0.6)
        elif kind == "stripes":
            mask = np.sin((xx + yy) * rng.uniform(14, 20) + rng.uniform(0, 6)) > 0.3
        elif kind == "checker":
            k = rng.uniform(6, 9)
            mask = (np.floor(xx * k) + np.floor(yy * k)) % 2 == 0
        elif kind == "diamond":
            mask = abs(dx) + abs(dy) < r
        elif kind == "hbar":
            mask = (abs(dy) < r / 3) & (abs(dx) < r * 1.2)
        else:  # dots
            mask = (np.sin(xx * rng.uniform(18, 24)) * np.sin(yy * rng.uniform(18, 24))) > 0.5
        background = rng.uniform(0, 0.5, 3) + rng.normal(0, 0.06, (size, size, 3))
        colour = rng.uniform(0.45, 1.0, 3)
        img = np.where(mask[..., None], colour, background) + rng.normal(0, 0.04, (size, size, 3))
        images[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64), kinds[:n_classes]


def make_image_folder(root: str | Path, n_classes: int = 3, per_class: int = 40, *, mislabelled: int = 2,
                      duplicates: int = 2, near_duplicates: int = 2, other: int = 24, seed: int = 0) -> dict:
    """Write drawn shapes (:func:`make_synthetic`) as a folder of photos like a student's:
    ``photos/<class>/*.jpg`` of varied sizes and aspect ratios, each class in its own shape and
    tint (so even colour tells the classes apart), with planted mistakes to find:
    ``mislabelled`` images of another class in a class's folder, ``duplicates`` files copied
    byte for byte into another class's folder, ``near_duplicates`` re-encoded, slightly
    smaller copies in the same folder, and one unreadable file; and ``other/``: ``other``
    images of shapes of none of the classes, untinted. The same arguments write the same files
    (into an existing folder too). Returns the folders and what was planted (paths relative to
    ``photos/``, as :meth:`Dataset.duplicates` names files)."""
    import colorsys

    from PIL import Image

    root = Path(root)
    total = n_classes + 3
    x, y, kinds = make_synthetic(total, per_class + mislabelled + other, 64, seed)
    rng = np.random.default_rng(seed)
    folder, others = root / "photos", root / "other"
    planted: dict = {"folder": folder, "other": others, "classes": kinds[:n_classes], "mislabelled": [],
                     "duplicates": [], "near_duplicates": [], "unreadable": []}
    tints = [colorsys.hsv_to_rgb(c / n_classes, 0.75, 1.0) for c in range(n_classes)] + [(0.7,) * 3] * 3

    def save(i: int, path: Path) -> str:
        w, h = (int(rng.integers(96, 192)) for _ in range(2))
        path.parent.mkdir(parents=True, exist_ok=True)
        img = (x[i] * np.asarray(tints[y[i]])).astype(np.uint8)
        Image.fromarray(img).resize((w, h), Image.BILINEAR).save(path, quality=90)
        return path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)

    by_class = [np.flatnonzero(y == c) for c in range(total)]
    files = []
    for c, name in enumerate(kinds[:n_classes]):
        for i in by_class[c][:per_class]:
            files.append(folder / save(i, folder / name / f"IMG_{i:05d}.jpg"))
        for k in range(mislabelled):  # a shape of the next class, filed under this one
            i = by_class[(c + 1) % n_classes][per_class + k]
            planted["mislabelled"].append(save(i, folder / name / f"IMG_{i:05d}.jpg"))
    picks = rng.choice(len(files), duplicates + near_duplicates, replace=False)
    for j, pick in enumerate(picks):
        src = files[pick]
        if j < duplicates:  # the same bytes in the next class's folder
            other_class = kinds[(kinds.index(src.parent.name) + 1) % n_classes]
            dst = folder / other_class / f"copy_{src.name}"
            dst.write_bytes(src.read_bytes())
            planted["duplicates"].append((src.relative_to(folder).as_posix(), dst.relative_to(folder).as_posix()))
        else:  # the same photo again, smaller and re-encoded: other bytes
            dst = src.with_name(f"edited_{src.name}")
            with Image.open(src) as im:
                im.resize((im.width * 9 // 10, im.height * 9 // 10), Image.BILINEAR).save(dst, quality=75)
            planted["near_duplicates"].append((src.relative_to(folder).as_posix(),
                                               dst.relative_to(folder).as_posix()))
    bad = folder / kinds[0] / "IMG_broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a JPEG")
    planted["unreadable"].append(bad.relative_to(folder).as_posix())
    for k in range(other):
        save(by_class[n_classes + k % 3][k // 3], others / f"other_{k:03d}.jpg")
    return planted


# --------------------------------------------------------------------------- image folders

def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not Path(name).name.startswith(".")


class TooLarge(Exception):
    """An image skipped for its size; an entry of :func:`read_image_tree` in place of its
    bytes, and listed with the unreadable images."""


def _read_capped(open_file, size: int) -> bytes | TooLarge:
    """The bytes of one file or member of declared ``size``: one larger than
    :data:`MAX_IMAGE_BYTES` is not opened, and the read stops past the cap whatever the size
    claimed, so no file is ever held beyond it."""
    too_large = TooLarge(f"larger than {MAX_IMAGE_BYTES / 2**20:g} MB")
    if size > MAX_IMAGE_BYTES:
        return too_large
    with open_file() as fh:
        data = fh.read(MAX_IMAGE_BYTES + 1)
    return too_large if len(data) > MAX_IMAGE_BYTES else data


Entry = tuple[str, bytes | TooLarge | None]  # (path, its bytes); a folder: (path + "/", None)


def _iter_folder(root: Path) -> Iterator[Entry]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root)
        if str(rel) != ".":
            yield rel.as_posix() + "/", None
        for f in sorted(filenames):
            if _is_image(f):
                p = Path(dirpath) / f
                yield (rel / f).as_posix(), _read_capped(lambda: open(p, "rb"), p.stat().st_size)


def _iter_tar(path: Path) -> Iterator[Entry]:
    # Stream the archive: random access into a .tar.gz re-decompresses from the start.
    # A member that is not read is skipped in blocks, never held.
    with tarfile.open(path, "r|*") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            if member.isdir():
                yield name.rstrip("/") + "/", None
            elif member.isfile() and _is_image(name):
                yield name, _read_capped(lambda: tar.extractfile(member), member.size)


def _iter_zip(path: Path) -> Iterator[Entry]:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                yield info.filename, None
            elif _is_image(info.filename):
                yield info.filename, _read_capped(lambda: zf.open(info), info.file_size)


def _resize(im, size: int):
    from PIL import Image

    return im.resize((size, size), Image.BILINEAR)


#: Modes with more than 8 bits a channel, and the factor that scales each to 0..255: integers
#: hold 16-bit values (16-bit PNG and TIFF), floats hold 0..1.
HIGH_DEPTH = {"I": 1 / 257, "I;16": 1 / 257, "I;16L": 1 / 257, "I;16B": 1 / 257, "I;16N": 1 / 257,
              "F": 255.0}


def to_rgb8(im, size: tuple[int, int] | None = None, box: tuple[float, float, float, float] | None = None):
    """``im`` as 8-bit RGB, resized to ``size`` (width, height) with bilinear filtering when given
    (from its region ``box``, left, top, right, bottom, when given: a crop without a copy).

    High-depth images (:data:`HIGH_DEPTH`) are scaled to 8 bits, not clipped as Pillow's
    ``convert`` clips them (a 16-bit photo would turn near white). RGB, greyscale and
    high-depth images are resized before anything else, so no full-size copy is made.
    """
    from PIL import Image

    scale = HIGH_DEPTH.get(im.mode)
    if scale is None and im.mode not in ("RGB", "L"):
        im = im.convert("RGB")  # palette, alpha (dropped), CMYK: a copy at full size
    elif scale is not None and im.mode not in ("I", "I;16", "F"):
        im = im.convert("I")  # other byte orders: Pillow resizes these wrongly
    if size and (size != im.size or box):
        im = im.resize(size, Image.BILINEAR, box=box)
    if scale is not None:
        im = Image.fromarray(np.clip(np.rint(np.asarray(im, np.float64) * scale), 0, 255).astype(np.uint8))
    return im.convert("RGB")


def fit(im, size: tuple[int, int], crop: str = "squash"):
    """``im`` as 8-bit RGB of ``size`` (width, height), its aspect ratio made ``size``'s by
    ``crop`` (:data:`CROPS`): ``center`` resizes the middle region of that aspect ratio,
    ``pad`` resizes it whole to fit inside and centres it on black, ``squash`` resizes it whole."""
    from PIL import Image

    (w, h), (tw, th) = im.size, size
    if crop == "center":
        scale = min(w / tw, h / th)
        cw, ch = tw * scale, th * scale
        return to_rgb8(im, size, ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2))
    if crop == "pad":
        scale = min(tw / w, th / h)
        inner = (max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale))))
        canvas = Image.new("RGB", size)
        canvas.paste(to_rgb8(im, inner), ((tw - inner[0]) // 2, (th - inner[1]) // 2))
        return canvas
    return to_rgb8(im, size)


def _decode(data: bytes, image_size: int | None = None, fallback_size: int | None = None,
            crop: str = "squash") -> tuple[np.ndarray, tuple[int, int], bool]:
    """Decode one image straight to its working size; returns (uint8 array, native (h, w),
    whether it was resized to ``image_size`` or ``fallback_size``).

    ``image_size`` S gives S x S; ``fallback_size`` F gives F x F for an image larger than F
    either way and leaves smaller ones as they are (:class:`_Decoder` resizes mixed sizes).
    A non-square image is made square by ``crop`` (:func:`fit`), at its own scale when it
    keeps its size. A JPEG is decoded at a reduced scale (``draft``) that still covers the
    target, so a phone photo never exists at full resolution in memory. An image that would
    still decode to more than :data:`MAX_IMAGE_PIXELS` raises :class:`TooLarge` first.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        side = image_size or (fallback_size if fallback_size and max(w, h) > fallback_size
                              else None)
        scaled = bool(side)
        if side is None and w != h and crop != "squash":  # made square at its own scale
            side = min(w, h) if crop == "center" else max(w, h)
        resize = bool(side) and (w, h) != (side, side)
        if resize:
            im.draft("RGB", (side, side))
        if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:
            raise TooLarge(f"{w}x{h} px, more than {MAX_IMAGE_PIXELS:,}")
        rgb = fit(im, (side, side), crop) if resize else to_rgb8(im)
        return np.asarray(rgb, dtype=np.uint8), (h, w), resize and scaled


class _Decoder:
    """Decodes images one at a time as they stream past, each once and at its working size.

    Peak memory is the decoded arrays at working size plus one image in flight: its encoded
    bytes (at most :data:`MAX_IMAGE_BYTES`, dropped once decoded) and its decoding (under 12
    bytes a decoded pixel, at most :data:`MAX_IMAGE_PIXELS` pixels).
    """

    def __init__(self, source: str, image_size: int | None, fallback_size: int | None,
                 crop: str = "squash"):
        self.source, self.image_size, self.fallback_size = source, image_size, fallback_size
        self.crop = crop
        self.arrays: dict[str, np.ndarray] = {}
        self.digests: dict[str, int] = {}  # of the bytes: identical files, found while streaming
        self.native: Counter = Counter()
        self.corrupt: list[str] = []
        self.resized = False

    def add(self, name: str, data: bytes | TooLarge) -> None:
        """Decode one image; an unreadable or too large one is listed in ``corrupt``."""
        try:
            if isinstance(data, TooLarge):
                raise data
            img, native, scaled = _decode(data, self.image_size, self.fallback_size, self.crop)
        except TooLarge as e:
            self.corrupt.append(f"{name} ({e})")
            return
        except Exception:  # PIL raises many types for bad files; each one is listed
            self.corrupt.append(name)
            return
        self.native[native] += 1
        if len(self.native) > 1 and not (self.image_size or self.fallback_size):
            (a, _), (b, _) = self.native.most_common(2)
            raise DatasetError(f"{self.source}: images have different sizes (e.g. {a[1]}x{a[0]} "
                               f"and {b[1]}x{b[0]}); pass image_size=S (CLI: --img-size S) to "
                               "resize them when loading")
        self.resized |= scaled
        self.arrays[name] = img
        self.digests[name] = int.from_bytes(hashlib.sha1(data).digest()[:8], "little")

    def finish(self) -> dict:
        """Resize the images still at their own size when sizes are mixed; returns the native
        sizes (``native``: one (h, w), or None when mixed; ``largest``: (h, w)) and ``resized``."""
        from PIL import Image

        shapes = {a.shape[:2] for a in self.arrays.values()}
        if len(shapes) > 1:  # only with fallback_size: the larger ones are at F x F already
            f = int(self.fallback_size)  # type: ignore[arg-type]
            for name, a in self.arrays.items():
                if a.shape[:2] != (f, f):
                    self.arrays[name] = np.asarray(_resize(Image.fromarray(a), f), np.uint8)
            self.resized = True
        largest = [max((s[i] for s in self.native), default=0) for i in (0, 1)]
        native = list(next(iter(self.native))) if len(self.native) == 1 else None
        return {"native": native, "largest": largest, "resized": self.resized}

    def stack(self, names: list[str]) -> np.ndarray:
        """The decoded images of ``names`` (readable ones, at least one) in one preallocated
        array; each is released as it is copied, so the data is never held twice."""
        out = np.empty((len(names),) + self.arrays[names[0]].shape, np.uint8)
        for i, n in enumerate(names):
            out[i] = self.arrays.pop(n)
        return out

    def split(self, names: list[str], labels: list[int]) -> tuple[np.ndarray, ...]:
        """(images, labels, files, digests) of ``names``, the images stacked (:meth:`stack`)."""
        return (self.stack(names), np.asarray(labels, np.int64), np.asarray(names),
                np.asarray([self.digests.pop(n) for n in names], np.uint64))


def read_image_tree(entries: Iterable[Entry], source: str, image_size: int | None = None,
                    fallback_size: int | None = None, crop: str = "squash") -> dict:
    """Turn (path, bytes) entries of an image-folder layout into arrays per split.

    Layouts: ``<class>/<img>`` or ``<split>/<class>/<img>`` below any common top folders.
    Every image is decoded once, as it streams past, straight to its working size:
    ``image_size`` S resizes every image to S x S; ``fallback_size`` F resizes to F x F the
    images larger than F and, when sizes are mixed, all of them; uniform images no larger
    than F keep their size (a model resizes them itself). ``crop`` makes non-square images
    square (:func:`fit`). Each file's bytes are hashed on the way (identical files).
    Memory is bounded by design, whatever the archive holds: N readable images take
    N x S x S x 3 bytes at working size S (their own size, at most MAX_IMAGE_PIXELS, when
    neither size is given), plus one image in flight: at most MAX_IMAGE_BYTES encoded and
    under 12 x MAX_IMAGE_PIXELS bytes decoding it (about 0.7 GB at the defaults), plus a
    compressed tar stream's buffers (tens of MB). Files, members or images over a limit are
    skipped and listed in ``corrupt`` with the reason.
    Returns ``{"splits": {split: (x, y, files, digests)}, "class_names": [...], "corrupt": [...],
    "sizes": {"native", "largest", "resized"}}``.
    """
    decoder = _Decoder(source, image_size, fallback_size, crop)
    files, dirs = [], set()
    for name, data in entries:
        parts = [p for p in name.split("/") if p]
        if data is None:
            dirs.add(tuple(parts))
            continue
        files.append(parts)
        for k in range(1, len(parts)):
            dirs.add(tuple(parts[:k]))
        decoder.add("/".join(parts), data)
    if not files:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {source}: "
                           "expected one folder per class, e.g. flowers/daisy/001.jpg")
    # Strip top folders that every file shares (e.g. "flowers/" or "cifar10-jpg/").
    prefix: list[str] = []
    while True:
        firsts = {tuple(p[: len(prefix) + 1]) for p in files if len(p) > len(prefix) + 2}
        if len(firsts) == 1 and all(len(p) > len(prefix) + 2 for p in files):
            candidate = list(next(iter(firsts)))
            if candidate[-1].lower() in SPLIT_NAMES:
                break
            prefix = candidate
        else:
            break
    depth = len(prefix)
    rel = [p[depth:] for p in files]
    top = {p[0] for p in rel if len(p) > 1}
    split_layout = bool(top) and all(t.lower() in SPLIT_NAMES for t in top) and any(
        t.lower() == "train" for t in top)
    if not split_layout and any(len(p) < 2 for p in rel):
        loose = next("/".join(prefix + p) for p in rel if len(p) < 2)
        raise DatasetError(f"{source}: image {loose} is not inside a class folder; "
                           "put each class's images in a folder named after the class")
    if split_layout and any(len(p) < 3 for p in rel):
        loose = next("/".join(prefix + p) for p in rel if len(p) < 3)
        raise DatasetError(f"{source}: image {loose} is not inside <split>/<class>/")

    def class_dirs(split: str | None) -> set[str]:
        base = tuple(prefix) + ((split,) if split else ())
        return {d[len(base)] for d in dirs if len(d) == len(base) + 1 and d[: len(base)] == base}

    by_split: dict[str, list[tuple[str, str]]] = {}
    for p in rel:
        split = SPLIT_NAMES[p[0].lower()] if split_layout else "all"
        cls = p[1] if split_layout else p[0]
        by_split.setdefault(split, []).append((cls, "/".join(prefix + p)))
    raw_splits = [s for s in top] if split_layout else [None]
    all_class_dirs = set().union(*(class_dirs(s) for s in raw_splits))
    class_names = sorted(all_class_dirs)
    present = {cls for items in by_split.values() for cls, _ in items}
    empty = sorted(all_class_dirs - present)
    if empty:
        raise DatasetError(f"{source}: class folder(s) {', '.join(empty)} hold no images; "
                           "add images or remove the empty folder(s)")
    if len(class_names) < 2:
        raise DatasetError(f"{source}: only one class ({class_names[0]}) found; a classifier needs "
                           "at least two class folders side by side")
    index = {c: i for i, c in enumerate(class_names)}
    sizes = decoder.finish()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, items in by_split.items():
        readable = [(cls, path) for cls, path in items if path in decoder.arrays]
        if not readable:
            raise DatasetError(f"{source}: every image of split '{split}' is unreadable")
        out[split] = decoder.split([path for _, path in readable], [index[cls] for cls, _ in readable])
    return {"splits": out, "class_names": class_names, "corrupt": sorted(decoder.corrupt),
            "sizes": sizes}


def _entries(path: Path) -> Iterator[Entry]:
    """The entries of an image folder, or of a .tar/.tar.gz/.tgz/.zip archive of one."""
    if path.is_dir():
        return _iter_folder(path)
    if zipfile.is_zipfile(path):
        return _iter_zip(path)
    if tarfile.is_tarfile(path):
        return _iter_tar(path)
    raise DatasetError(f"{path} is neither a folder nor a .tar/.tar.gz/.zip archive of images")


def read_images(path: str | Path, image_size: int | None = None,
                fallback_size: int | None = None, crop: str = "squash") -> dict:
    """Read an image folder, or a .tar/.tar.gz/.tgz/.zip archive of one."""
    path = Path(path)
    return read_image_tree(_entries(path), str(path), image_size, fallback_size, crop)


def sample_images(source: str | Path, n: int, image_size: int, *, crop: str = "center",
                  data_dir: str | Path | None = None, seed: int = 0) -> np.ndarray:
    """Up to ``n`` images (a seeded choice) of ``source`` at ``image_size`` x ``image_size``,
    e.g. images of none of a classifier's classes: a built-in data set's test images, or every
    image in a folder or archive, in class folders or not (unreadable ones skipped)."""
    _check_crop(crop)
    rng = np.random.default_rng(seed)
    if str(source) in BUILTIN:  # a known set: loaded (and cached) at its own size, then resized
        x = load_dataset(source, data_dir=data_dir, fallback_size=image_size, seed=seed).x_test
        x = x[np.sort(rng.choice(len(x), min(n, len(x)), replace=False))]
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DatasetError(f"no images at {path}: give a folder or archive of images, or a "
                               f"built-in data set ({', '.join(BUILTIN)})")
        decoder = _Decoder(str(path), image_size, None, crop)
        for name, data in _entries(path):
            if data is not None:
                decoder.add(name, data)
        names = sorted(decoder.arrays)
        if not names:
            raise DatasetError(f"no readable images ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
        x = decoder.stack([names[i] for i in np.sort(rng.choice(len(names), min(n, len(names)), replace=False))])
    if x.shape[1:3] == (image_size, image_size):
        return x
    from PIL import Image

    return np.stack([np.asarray(fit(Image.fromarray(a), (image_size, image_size), crop)) for a in x])


# --------------------------------------------------------------------------- TFRecords

def read_tfrecords(path: str | Path, image_size: int | None = None,
                   fallback_size: int | None = None, crop: str = "squash") -> dict:
    """Read TFRecord shards of (image bytes, class id), the Kaggle 104-flowers layout.

    ``path`` is a folder of ``*.tfrec`` files, or one with ``train/`` and ``val/`` (or
    ``test/``) sub-folders. Features: ``image`` (JPEG bytes) and ``class`` (int64).
    Class names come from ``classes.txt`` beside the shards when present. Sizes as in
    :func:`read_image_tree`.
    """
    try:
        import tensorflow as tf
    except ImportError as e:
        raise DatasetError("reading TFRecords needs TensorFlow: pip install 'tlkit[tf]'") from e
    path = Path(path)
    groups = {}
    for sub in ("train", "val", "validation", "test"):
        shards = sorted((path / sub).glob("*.tfrec*"))
        if shards:
            groups[SPLIT_NAMES[sub] if sub != "test" else "test"] = shards
    if not groups:
        groups["all"] = sorted(path.glob("*.tfrec*"))
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "class": tf.io.FixedLenFeature([], tf.int64)}
    decoder = _Decoder(str(path), image_size, fallback_size, crop)
    labels: dict[str, dict[str, int]] = {}
    for split, shards in groups.items():
        labels[split] = {}
        for i, rec in enumerate(tf.data.TFRecordDataset([str(s) for s in shards])):
            try:
                ex = tf.io.parse_single_example(rec, spec)
            except tf.errors.InvalidArgumentError:
                if split == "test" and i == 0 and len(groups) > 1:  # Kaggle's test: no labels
                    del labels[split]
                    break
                raise DatasetError(f"{path}: TFRecords of split '{split}' lack an 'image' bytes "
                                   "or 'class' int64 feature (unlabelled test shards cannot train)")
            name = f"{split}#{i}"
            decoder.add(name, ex["image"].numpy())
            labels[split][name] = int(ex["class"].numpy())
    sizes = decoder.finish()
    splits = {}
    for split, names in labels.items():
        readable = [n for n in names if n in decoder.arrays]
        if not readable:
            raise DatasetError(f"{path}: every image of split '{split}' is unreadable")
        splits[split] = decoder.split(readable, [names[n] for n in readable])
    if "val" in splits and "test" not in splits:
        splits["test"] = splits.pop("val")
    n = int(max(s[1].max() for s in splits.values())) + 1
    names_file = path / "classes.txt"
    names = names_file.read_text().split("\n")[:n] if names_file.exists() else [str(i) for i in range(n)]
    return {"splits": splits, "class_names": [s.strip() for s in names],
            "corrupt": decoder.corrupt, "sizes": sizes}


# --------------------------------------------------------------------------- splits

def stratified_split(y: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): ``fraction`` of every class held out, shuffled by seed.

    Image folders come sorted by class, so a plain tail split would hold out whole classes.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(len(idx) * fraction))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        held.append(idx[:k])
        keep.append(idx[k:])
    return rng.permutation(np.concatenate(keep)), rng.permutation(np.concatenate(held))


def limit_per_class(y: np.ndarray, k: int | None, seed: int = 0) -> np.ndarray:
    """Indices of at most ``k`` images of every class (a seeded random choice)."""
    if k is None:
        return np.arange(len(y))
    if k < 1:
        raise DatasetError(f"limit_per_class must be at least 1, not {k}")
    rng = np.random.default_rng(seed)
    idx = [rng.permutation(np.flatnonzero(y == c))[:k] for c in np.unique(y)]
    return np.sort(np.concatenate(idx))


def class_weights(y: np.ndarray, num_classes: int | None = None) -> dict[int, float]:
    """'Balanced' class weights, n / (classes * count), for Keras's ``class_weight``."""
    counts = np.bincount(y, minlength=num_classes or 0)
    n, k = counts.sum(), len(counts)
    return {i: float(n / (k * c)) if c else 0.0 for i, c in enumerate(counts)}


# --------------------------------------------------------------------------- lookup and cache

def data_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for local data sets, in order."""
    dirs = [data_dir, os.environ.get("TLKIT_DATA_DIR")]
    return [Path(d).expanduser() for d in dirs if d]


def find_local(name: str, data_dir: str | Path | None = None) -> Path | None:
    """A local folder or archive for a named data set (``cifar10*``, ``cifar100*``, ``flower*``)."""
    prefix = {"flowers": "flower"}.get(name, name)
    for d in data_dirs(data_dir):
        if not d.is_dir():
            continue
        for entry in sorted(d.iterdir()):
            low = entry.name.lower()
            if low.startswith(prefix) and not (name == "cifar10" and low.startswith("cifar100")):
                return entry
    return None


def _source_stamp(path: Path) -> tuple:
    """What identifies a source's content in a cache key. A file: its size and a hash of its
    bytes (a rewritten archive of the same size and time is still seen). A folder: every
    entry's relative name, size and mtime. The location is left out: a copy shares the entry.
    """
    if path.is_dir():
        h = hashlib.sha1()
        for p in sorted(path.rglob("*")):
            st = p.stat()
            size, mtime = (st.st_size, st.st_mtime_ns) if p.is_file() else (-1, 0)
            h.update(f"{p.relative_to(path).as_posix()}\0{size}\0{mtime}\n".encode())
        return ("folder", h.hexdigest())
    return ("file", path.stat().st_size, file_digest(path, "sha1", memo=False))


def _wanted(image_size: int | None, fallback_size: int | None) -> list[tuple]:
    """The cache entries that hold what a request asks for: (size tag, test on the entry's
    native sizes). An entry is tagged by what its arrays are, "native" or the size they were
    resized to, so requests that give the same arrays share one entry (a 32-px archive at
    fallback size 32 and 64 is one entry, not two)."""
    if image_size:
        return [(image_size, lambda m: True),
                ("native", lambda m: m["native"] == [image_size, image_size])]
    if fallback_size:
        def fits(m: dict) -> bool:  # uniform and no larger than F: kept as they are
            return m["native"] is not None and max(m["largest"]) <= fallback_size
        return [("native", fits), (fallback_size, lambda m: not fits(m))]
    return [("native", lambda m: True)]


def _read_entry(path: Path, accept) -> dict | None:
    """A cached data set, or None when its sizes do not give what ``accept`` asks for."""
    with np.load(path, allow_pickle=False) as z:
        native = z["native"].tolist()
        sizes = {"native": native if native[0] else None, "largest": z["largest"].tolist(),
                 "resized": bool(z["resized"])}
        if not accept(sizes):
            return None
        splits = {k[2:]: (z[k], z["y_" + k[2:]]) + tuple(z[f"{m}_{k[2:]}"] for m in "fd" if f"{m}_{k[2:]}" in z.files)
                  for k in z.files if k.startswith("x_")}
        if not splits or any(len({len(a) for a in s}) != 1 or s[0].dtype != np.uint8 for s in splits.values()):
            raise ValueError("inconsistent arrays")
        return {"splits": splits, "class_names": z["class_names"].tolist(),
                "corrupt": z["corrupt"].tolist(), "sizes": sizes}


def _write_entry(path: Path, raw: dict) -> None:
    arrays = {}
    for split, parts in raw["splits"].items():  # (x, y) or (x, y, files, digests)
        arrays.update(zip((f"{m}_{split}" for m in "xyfd"), parts))
    sizes = raw["sizes"]

    def write(tmp: Path) -> None:
        np.savez(tmp, class_names=np.array(raw["class_names"]),
                 corrupt=np.array(raw["corrupt"], dtype=str),
                 native=np.array(sizes["native"] or [0, 0]), largest=np.array(sizes["largest"]),
                 resized=np.array(sizes["resized"]), **arrays)

    cache_store(path, write, suffix=".npz")  # a full or read-only disk: run without the cache


def _load_path(path: Path, image_size: int | None, fallback_size: int | None,
               crop: str = "squash") -> dict:
    """Decoded arrays of a local source, from the cache when an entry holds them.

    A damaged entry is removed with a warning and rebuilt; temporary files of killed runs
    are cleaned on the way."""
    if not path.exists():
        raise DatasetError(f"no data set at {path}: give a built-in name ({', '.join(BUILTIN)}), "
                           "an image folder, or a .tar/.tar.gz/.zip of one")
    tfrec = path.is_dir() and (any(path.glob("*.tfrec*")) or any(path.glob("*/*.tfrec*")))
    kind = "tfrec" if tfrec else "images"
    stamp = _source_stamp(path)
    folder = cache_dir() / "datasets"
    clean_temp_files(folder)
    for tag, accept in _wanted(image_size, fallback_size):
        raw = cache_load(folder / f"{cache_key(CACHE_VERSION, kind, stamp, tag, crop)}.npz",
                         lambda p: _read_entry(p, accept))
        if raw is not None:
            return raw
    read = read_tfrecords if tfrec else read_images
    raw = read(path, image_size, fallback_size, crop)
    tag = (image_size or fallback_size) if raw["sizes"]["resized"] else "native"
    _write_entry(folder / f"{cache_key(CACHE_VERSION, kind, stamp, tag, crop)}.npz", raw)
    return raw


def _download_hint(name: str) -> str:
    where = {"cifar10": "an image folder or archive named cifar10* (e.g. cifar10-jpg.tar.gz)",
             "cifar100": "an image folder or archive named cifar100*",
             "flowers": "an image folder or archive named flower* (e.g. flower_photos.tgz from "
                        f"{FLOWERS_URL})"}[name]
    return (f"data set '{name}' is not available offline: put {where} into a folder and pass "
            "--data-dir DIR (or set TLKIT_DATA_DIR), or connect to the internet so Keras can "
            "download it")


def _load_keras(name: str, image_size: int | None, fallback_size: int | None, crop: str) -> dict:
    import keras

    try:
        with download_timeout():  # a server that never answers fails like no network
            if name == "flowers":
                folder = Path(keras.utils.get_file("flower_photos", origin=FLOWERS_URL,
                                                   extract=True))
            else:
                (xtr, ytr), (xte, yte) = getattr(keras.datasets, name).load_data()
        if name == "flowers":  # photos of many sizes: at most 224 px unless told otherwise
            return _load_path(folder, image_size, fallback_size or 224, crop)
    except TlkitError:
        raise
    except Exception as e:  # Keras raises URL, OS, timeout and hash errors when it cannot download
        raise DatasetError(_download_hint(name)) from e
    names = CIFAR10_CLASSES if name == "cifar10" else [str(i) for i in range(100)]
    return {"splits": {"train": (xtr, ytr.reshape(-1).astype(np.int64)),
                       "test": (xte, yte.reshape(-1).astype(np.int64))},
            "class_names": names, "corrupt": []}


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def load_dataset(name: str | Path, *, data_dir: str | Path | None = None,
                 image_size: int | None = None, fallback_size: int | None = None,
                 crop: str = "squash", limit_per_class: int | None = None, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, seed: int = 0, synthetic_classes: int = 4,
                 synthetic_per_class: int = 200, synthetic_size: int = 32) -> Dataset:
    """Load a data set by name or path, split it, and return uint8 arrays.

    ``image_size`` resizes every image when loading; ``fallback_size`` (the size a model
    works at) resizes images larger than it, and all of them when sizes are mixed, so that
    memory and cache scale with the working size, never with the photos' size.
    ``crop`` makes non-square images square (:data:`CROPS`; ``center`` as Keras's
    ``crop_to_aspect_ratio``); the default ``squash`` resizes them whole.
    ``limit_per_class`` keeps at most that many images of each class in every split
    (seeded). A missing test split is cut from the data (``test_fraction``), and a
    validation split from the training data (``val_fraction``), both stratified.
    Arguments are checked before anything is read.
    """
    _check_args(image_size=image_size, fallback_size=fallback_size,
                limit_per_class=limit_per_class, val_fraction=val_fraction,
                test_fraction=test_fraction)
    _check_crop(crop)
    key = str(name)
    if key == "synthetic":
        n_test = max(synthetic_per_class // 4, 2)
        x, y, names = make_synthetic(synthetic_classes, synthetic_per_class + n_test,
                                     synthetic_size, seed)
        keep, test = stratified_split(y, n_test / (synthetic_per_class + n_test), seed)
        raw = {"splits": {"train": (x[keep], y[keep]), "test": (x[test], y[test])},
               "class_names": names, "corrupt": []}
        ds_name, source = "synthetic", f"generated:classes={synthetic_classes},size={synthetic_size},seed={seed}"
    elif key in BUILTIN:
        local = find_local(key, data_dir)
        if local is not None:
            raw, source = _load_path(local, image_size, fallback_size, crop), str(local.resolve())
        else:
            raw, source = _load_keras(key, image_size, fallback_size, crop), "keras:download"
        ds_name = key
    else:
        path = Path(key).expanduser()
        if not path.exists() and "/" not in key and "." not in key:
            raise DatasetError(f"unknown data set '{key}': use one of {', '.join(BUILTIN)} or a "
                               "path to an image folder or archive")
        raw, source = _load_path(path, image_size, fallback_size, crop), str(path.resolve())
        ds_name = path.name.split(".")[0]
    ds = _assemble(raw, ds_name, source, limit_per_class, val_fraction, test_fraction, seed)
    ds.crop = crop
    return ds


def _check_crop(crop: str) -> None:
    if crop not in CROPS:
        raise DatasetError(f"crop (--crop) must be one of {', '.join(CROPS)}, not {crop!r}")


def _check_args(*, image_size, fallback_size, limit_per_class, val_fraction, test_fraction) -> None:
    """One clear line for a bad argument, before anything is read."""
    def whole(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1

    if limit_per_class is not None and not whole(limit_per_class):
        raise DatasetError(f"limit_per_class (--limit-per-class) must be a whole number of at "
                           f"least 1, not {limit_per_class!r}; leave it out to use every image")
    for arg, value in (("image_size", image_size), ("fallback_size", fallback_size)):
        if value is not None and not whole(value):
            raise DatasetError(f"{arg} must be a whole number of pixels, at least 1, not {value!r}")
    if not 0 <= val_fraction < 1:
        raise DatasetError(f"val_fraction must be in [0, 1), not {val_fraction!r}")
    if not 0 < test_fraction < 1:
        raise DatasetError(f"test_fraction must be in (0, 1), not {test_fraction!r}")


def _require_per_class(y: np.ndarray, class_names: list[str], cuts: list[str], where: str,
                       source: str, limit: int | None) -> None:
    """Refuse, in one line naming the class, a class of ``y`` too small to give at least one
    image to train and to each split cut from it (``cuts``)."""
    need = 1 + len(cuts)
    counts = np.bincount(y, minlength=len(class_names))
    short = next((c for c in range(len(class_names)) if counts[c] < need), None)
    if short is None:
        return
    fix = (f"raise limit_per_class (--limit-per-class) to at least {need}"
           if limit is not None and limit < need else "add images of it or remove its folder")
    splits = ", ".join(["train"] + cuts[:-1]) + f" and {cuts[-1]}"
    raise DatasetError(f"{source}: class '{class_names[short]}' has {counts[short]} image(s){where}; "
                       f"splitting it into {splits} needs at least {need}: {fix}")


def _take(split: tuple[np.ndarray, ...], idx: np.ndarray) -> tuple[np.ndarray, ...]:
    """The images ``idx`` of a split: (x, y) or (x, y, files, digests), each array indexed."""
    return tuple(a[idx] for a in split)


def _assemble(raw: dict, name: str, source: str, limit: int | None, val_fraction: float,
              test_fraction: float, seed: int) -> Dataset:
    splits = dict(raw["splits"])
    class_names = list(raw["class_names"])
    cut_val = "val" not in splits and val_fraction > 0
    if "all" in splits:
        everything = splits.pop("all")
        everything = _take(everything, limit_per_class(everything[1], limit, seed))
        y = everything[1]
        _require_per_class(y, class_names, ["test"] + ["validation"] * cut_val, "", source, limit)
        keep, test = stratified_split(y, test_fraction, seed)
        splits["train"], splits["test"] = _take(everything, keep), _take(everything, test)
    else:
        for s in list(splits):
            splits[s] = _take(splits[s], limit_per_class(splits[s][1], limit, seed))
    if "train" not in splits or "test" not in splits:
        raise DatasetError(f"{source}: found splits {sorted(splits)}; need train/ and test/ "
                           "folders, or one folder per class to split automatically")
    if "val" not in splits and cut_val:
        ytr = splits["train"][1]
        if "all" not in raw["splits"]:
            _require_per_class(ytr, class_names, ["validation"], " in train", source, limit)
        keep, val = stratified_split(ytr, val_fraction, seed + 1)
        splits["val"], splits["train"] = _take(splits["train"], val), _take(splits["train"], keep)
    files = {s: parts[2] for s, parts in splits.items() if len(parts) == 4}
    digests = {s: parts[3] for s, parts in splits.items() if len(parts) == 4}
    xv, yv = splits["val"][:2] if "val" in splits else (None, None)
    return Dataset(name=name, source=source, class_names=class_names, x_train=splits["train"][0],
                   y_train=splits["train"][1], x_val=xv, y_val=yv, x_test=splits["test"][0],
                   y_test=splits["test"][1], corrupt=list(raw["corrupt"]), files=files, digests=digests)

