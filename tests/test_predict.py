"""tlkit.predict and ``tlkit predict``: class names from inside the model file, a threshold
checked before anything is loaded, images checked before they are decoded."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from servekit import NAMES, bomb_png, encode, image_bytes, tiny_model
from tlkit import TlkitError
from tlkit.cli import main
from tlkit.modelfile import MAX_META_BYTES, META_NAME, ModelFileError
from tlkit.predict import DECODE_BYTES_PER_PIXEL, ImageError, Limits, Predictor, decode_image


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("serve-model"))


@pytest.fixture(scope="module")
def predictor(model_file):
    return Predictor.load(model_file)


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_class_names_come_from_the_model_file(model_file, tmp_path):
    """A record beside the model (other class count, no ``dataset``) and a renamed file
    change nothing: the names travel inside the .keras archive."""
    renamed = tmp_path / "my flowers.keras"  # no _model.keras suffix to derive a record from
    shutil.copy(model_file, renamed)
    (tmp_path / "my flowers_record.json").write_text(json.dumps({"dataset": {"class_names": ["a", "b"]}}))
    (tmp_path / "tiny_record.json").write_text(json.dumps({"metrics": {}}))  # no dataset
    shutil.copy(model_file, tmp_path / "tiny_model.keras")
    for path in (renamed, tmp_path / "tiny_model.keras"):
        p = Predictor.load(path)
        assert p.class_names == NAMES and p.input_shape == (32, 32, 3) and p.threshold == 0.5
        assert p.meta["dataset"] == "synthetic"


def test_wrong_class_count_is_refused(model_file):
    with pytest.raises(ModelFileError, match="4 class names for a model with 3 outputs"):
        Predictor.load(model_file, class_names=["a", "b", "c", "d"])
    assert Predictor.load(model_file, class_names=["x", "y", "z"]).class_names == ["x", "y", "z"]


def test_predict_is_the_models_own_answer(predictor):
    x = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    want = np.asarray(predictor.model.predict(x, verbose=0))
    got = predictor.proba(x)
    np.testing.assert_allclose(got, want, atol=1e-5)
    predictor.threshold = 0.0
    results = predictor.predict(x)
    assert [label for label, _ in results] == [NAMES[i] for i in want.argmax(1)]
    (label, conf), = predictor.predict(x[0])  # one image, no batch axis
    assert label == results[0][0] and conf == pytest.approx(results[0][1], abs=1e-6)
    top = predictor.classify(x, top_k=2)
    for t, p in zip(top, want):
        assert [g["label"] for g in t["top_k"]] == [NAMES[i] for i in np.argsort(-p)[:2]]
        assert t["confidence"] == pytest.approx(p.max(), abs=1e-5) and t["unknown"] is False
    predictor.threshold = 0.5


def test_unknown_threshold(predictor):
    x = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    conf = predictor.proba(x).max(1)
    predictor.threshold = float(np.median(conf))
    for (label, c), r in zip(predictor.predict(x), predictor.classify(x)):
        assert (label == "unknown") == (c < predictor.threshold) == r["unknown"]
        assert r["label"] == label and r["top_k"][0]["label"] in NAMES
    predictor.threshold = 0.5


def test_bad_threshold_fails_before_loading(monkeypatch, model_file, tmp_path, capsys):
    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the threshold was checked")

    monkeypatch.setattr("tlkit.modelfile.load_model", no_load)
    with pytest.raises(TlkitError, match="between 0 and 1"):
        Predictor.load(model_file, threshold=2)
    img = tmp_path / "a.png"
    img.write_bytes(image_bytes())
    assert main(["predict", str(model_file), str(img), "--threshold", "2"]) == 2
    err = capsys.readouterr().err
    assert "--threshold must be a probability between 0 and 1, not 2" in err
    assert len(_error_lines(err)) == 1


def test_wrong_shape(predictor):
    with pytest.raises(TlkitError, match=r"\(16, 16, 3\).*\(32, 32, 3\).*predict_files"):
        predictor.predict(np.zeros((2, 16, 16, 3), np.uint8))


def test_decode_image_sizes_and_formats(tmp_path):
    for fmt in ("PNG", "JPEG", "WEBP"):
        arr = decode_image(image_bytes(fmt, (640, 480)), (32, 24))
        assert arr.shape == (32, 24, 3) and arr.dtype == np.uint8
    with pytest.raises(ImageError, match="is GIF; send JPEG, PNG, WEBP") as e:
        decode_image(image_bytes("GIF"), (32, 32), formats=("JPEG", "PNG", "WEBP"))
    assert e.value.status == 415
    # the camera's EXIF orientation is applied: a landscape file shown as portrait
    im = Image.fromarray(np.zeros((20, 60, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    p = tmp_path / "rotated.jpg"
    red = np.zeros((20, 60, 3), np.uint8)
    red[:, :30] = (255, 0, 0)  # left half red: after rotation it is the top half
    Image.fromarray(red).save(p, exif=exif)
    arr = decode_image(p, (60, 20))
    assert arr[:25, :, 0].mean() > 200 and arr[-25:, :, 0].mean() < 50


@pytest.mark.parametrize("data, status, match", [
    (b"this is not an image", 400, "not an image"),
    (image_bytes("PNG", (200, 200))[:3000], 400, "truncated"),
    (image_bytes("JPEG", (200, 200))[:2000], 400, "truncated"),
    (bomb_png(8000, 8000), 413, "8000x8000 = 64,000,000 pixels, over the limit of 50,000,000"),
    (bomb_png(30000, 30000), 413, "too large to decode safely"),
])
def test_bad_images_are_one_clear_error(data, status, match):
    with pytest.raises(ImageError, match=match) as e:
        decode_image(data, (32, 32), name="upload.png")
    assert e.value.status == status and "upload.png" in str(e.value)


def test_pixel_limit_is_settable():
    with pytest.raises(ImageError, match="48x40 = 1,920 pixels, over the limit of 1,000"):
        decode_image(image_bytes("PNG", (48, 40)), (32, 32), max_pixels=1000)
    assert decode_image(bomb_png(20, 20), (8, 8), max_pixels=400).shape == (8, 8, 3)
    with pytest.raises(TlkitError, match="--max-pixels must be at least 1, not 0"):
        Limits(max_pixels=0)


def test_cli_predict(model_file, tmp_path, capsys):
    paths = []
    for i, size in enumerate(((32, 32), (50, 40))):  # any size: predict resizes
        p = tmp_path / f"img{i}.png"
        p.write_bytes(image_bytes("PNG", size, seed=i))
        paths.append(str(p))
    assert main(["predict", str(model_file), *paths, "--threshold", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == paths
    assert all(line.split("\t")[1] in NAMES and 0 < float(line.split("\t")[2]) <= 1 for line in lines)
    assert main(["predict", str(model_file), *paths, "--threshold", "1"]) == 0
    assert [line.split("\t")[1] for line in capsys.readouterr().out.strip().splitlines()] == ["unknown"] * 2


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("case", ["bomb", "not_zip", "not_image"])
def test_cli_predict_errors_are_one_line(case, model_file, tmp_path, capsys):
    model, img = str(model_file), tmp_path / "photo.png"
    img.write_bytes(image_bytes())
    if case == "bomb":
        img.write_bytes(bomb_png(12000, 12000))
        want = "photo.png is 12000x12000 = 144,000,000 pixels"
    elif case == "not_zip":
        fake = tmp_path / "fake_model.keras"
        fake.write_text("{}")
        model, want = str(fake), "is not a Keras model file"
    else:
        img.write_bytes(b"nope")
        want = "cannot read image"
    assert main(["predict", model, str(img)]) == 2
    err = capsys.readouterr().err
    assert want in err and err.startswith("tlkit: error: ") and len(_error_lines(err)) == 1


def test_high_depth_images_are_scaled_not_clipped():
    """A 16-bit greyscale PNG at half scale is mid-grey, not near white (Pillow's convert clips)."""
    from tlkit.data import _decode, to_rgb8

    grey16 = np.full((40, 48), 128 * 257, np.uint16)
    arr = decode_image(encode(grey16), (32, 32))
    assert arr.shape == (32, 32, 3) and np.all(arr == 128)
    assert np.all(_decode(encode(grey16), 16)[0] == 128)  # the data sets' decoder too
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64)
    for mode, values, scale in [("I;16", ramp.astype(np.uint16), 257), ("I;16B", ramp.astype(">u2"), 257),
                                ("I", ramp.astype(np.int32), 257), ("F", (ramp / 65535).astype(np.float32), 1 / 255)]:
        im = Image.fromarray(values)
        got = np.asarray(to_rgb8(im))
        assert im.mode == mode and got.shape == (64, 64, 3) and got.dtype == np.uint8, mode
        np.testing.assert_allclose(got[..., 0], np.rint(values.astype(np.float64) / scale), atol=1, err_msg=mode)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decode_budget_refuses_before_decoding():
    """A 7000x7000 PNG (under the pixel limit) would take 421 MiB to decode: refused from its
    header; a JPEG of that size is decoded at 1/8 scale and passes."""
    with pytest.raises(ImageError, match=r"7000x7000 PNG: decoding it takes about 421 MB, over the "
                                         r"limit of 256 MB") as e:
        decode_image(bomb_png(7000, 7000), (32, 32), max_decode_bytes=Limits().max_decode_bytes)
    assert e.value.status == 413
    jpeg = encode(np.zeros((4000, 4000, 3), np.uint8), "JPEG")
    assert decode_image(jpeg, (32, 32), max_decode_bytes=4 * 2**20).shape == (32, 32, 3)  # not 144 MB


_MEASURE = """
import sys
from pathlib import Path
from tlkit.predict import decode_image

def peak():  # VmHWM: this process's own peak (ru_maxrss keeps the forking parent's across exec)
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1]) * 1024

decode_image(open(sys.argv[2], "rb").read(), (8, 8))  # imports and plugins first
data = open(sys.argv[1], "rb").read()
before = peak()
decode_image(data, (32, 32))
print(peak() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc")
@pytest.mark.parametrize("fmt, mode", [("PNG", "RGBA"), ("PNG", "P"), ("PNG", "RGB"), ("WEBP", "RGBA")])
def test_decode_memory_is_within_the_documented_bytes_per_pixel(fmt, mode, tmp_path):
    """Peak memory of one decode, measured in a fresh process, is at most
    DECODE_BYTES_PER_PIXEL[fmt] bytes a pixel: the figure the service's memory bound uses."""
    side = 3000
    y, x = np.mgrid[0:side, 0:side]
    arr = np.stack([x % 256, y % 256, (x + y) % 256, (x * y) % 256], -1).astype(np.uint8)
    (tmp_path / "big").write_bytes(encode(arr, fmt, mode))
    (tmp_path / "small").write_bytes(encode(arr[:8, :8], fmt, mode))
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path / "big"), str(tmp_path / "small")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    per_pixel = int(proc.stdout) / side**2
    assert 0 < per_pixel <= DECODE_BYTES_PER_PIXEL[fmt], f"{fmt} {mode}: {per_pixel:.2f} bytes a pixel"


def _with_meta_bomb(model_file: Path, out: Path, mib: int) -> Path:
    """A copy of ``model_file`` whose tlkit.json inflates to ``mib`` MiB of spaces."""
    with zipfile.ZipFile(model_file) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename != META_NAME:
                dst.writestr(info, src.read(info))
        with dst.open(META_NAME, "w") as f:
            for _ in range(mib):
                f.write(b" " * 2**20)
    return out


def test_a_huge_metadata_member_is_refused_unread(model_file, tmp_path, capsys):
    """A tlkit.json that inflates to 64 MB (a zip bomb of spaces) is refused after reading
    MAX_META_BYTES of it, in ``predict`` and before the model is loaded."""
    bomb = _with_meta_bomb(model_file, tmp_path / "bomb_model.keras", 64)
    assert bomb.stat().st_size < model_file.stat().st_size + 2**20
    with pytest.raises(ModelFileError, match=f"tlkit.json is over the limit of {MAX_META_BYTES:,} bytes"):
        Predictor.load(bomb)
    img = tmp_path / "a.png"
    img.write_bytes(image_bytes())
    assert main(["predict", str(bomb), str(img)]) == 2
    err = capsys.readouterr().err
    assert "is over the limit of" in err and len(_error_lines(err)) == 1
