"""Export a trained ``.keras`` model for serving: Keras, SavedModel, ONNX or TFLite.

Every export gets a labels file beside it, ``<stem>_labels.json`` (class names, input shape
and dtype, source model), and ONNX files also carry the class names in their metadata
(``class_names``, JSON). Which formats work depends on the installed backend and packages:
:func:`unavailable` says why one does not, before anything is loaded.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from tlkit import TlkitError
from tlkit.predict import SERVE_EXTRA
from tlkit.system import TMP_MARK, atomic_path, write_json

FORMATS = ("keras", "savedmodel", "onnx", "tflite")
SUFFIXES = {"keras": ".keras", "savedmodel": "_savedmodel", "onnx": ".onnx", "tflite": ".tflite"}


class ExportError(TlkitError):
    """A model cannot be exported in the asked format here; the message says why."""


def _has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def unavailable(fmt: str) -> str | None:
    """Why ``fmt`` cannot be exported with the installed backend and packages (None: it can)."""
    import keras

    backend = keras.backend.backend()
    if fmt not in FORMATS:
        return f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}"
    if fmt == "savedmodel" and not _has("tensorflow"):
        return "a SavedModel needs TensorFlow installed (pip install tensorflow-cpu)"
    if fmt == "tflite" and backend != "tensorflow":
        return f"TFLite export needs the tensorflow backend, this is {backend} (KERAS_BACKEND=tensorflow)"
    if fmt == "onnx":
        needs = {"tensorflow": ("tf2onnx", "onnx"), "jax": ("jax2onnx", "onnx"),
                 "torch": ("onnx",)}.get(backend)
        if needs is None:
            return f"Keras has no ONNX export on the {backend} backend"
        if not _has(*needs):
            extra = SERVE_EXTRA if backend == "tensorflow" else f"pip install {' '.join(needs)}"
            return f"ONNX export on {backend} needs {' and '.join(needs)}: {extra}"
    return None


_TF2ONNX_PATCHED = False


def _patch_tf2onnx() -> None:
    """Teach tf2onnx ``Erfc`` (TensorFlow's exact GELU uses it; tf2onnx 1.17 has no handler):
    erfc(x) = 1 - erf(x), with ONNX's own Erf."""
    global _TF2ONNX_PATCHED
    if _TF2ONNX_PATCHED:
        return
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:  # noqa: F841  (registered by the decorator)
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            node.type = "Erf"
            one = ctx.make_const(utils.make_name("erfc_one"), np.array(1, dtype))
            sub = ctx.insert_new_node_on_output("Sub", node.output[0],
                                                inputs=[one.output[0], node.output[0]])
            ctx.copy_shape(node.output[0], sub.output[0])
            ctx.copy_dtype(node.output[0], sub.output[0])

    _TF2ONNX_PATCHED = True


def _onnx(model, tmp: Path, labels: dict) -> None:
    import keras
    import onnx

    if keras.backend.backend() == "tensorflow":
        _patch_tf2onnx()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Keras's tf2onnx shim probes np.object
        model.export(str(tmp), format="onnx", verbose=False)
    proto = onnx.load(str(tmp))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "class_names", json.dumps(labels["class_names"])
    onnx.save(proto, str(tmp))


def _replace_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write a folder beside ``target`` and swap it in, so a reader never sees half of it."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}{TMP_MARK}")
    old = target.with_name(f".{target.name}.{os.getpid()}{TMP_MARK}old")
    for p in (tmp, old):
        shutil.rmtree(p, ignore_errors=True)
    try:
        write(tmp)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_model(model_path: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Export ``model_path`` (a ``.keras`` written by ``tlkit train``) as ``fmt`` into ``out``
    (default: beside it); writes ``<stem>_labels.json`` there too. Returns the export's path."""
    from tlkit.modelfile import load_model, read_meta, save_model
    from tlkit.models import inference_model

    reason = unavailable(fmt)
    if reason:
        raise ExportError(f"cannot export to {fmt} here: {reason}")
    model_path = Path(model_path)
    read_meta(model_path)  # a missing, non-zip or label-less file fails here, before any work
    out = Path(out) if out is not None else model_path.parent
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; pass a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"--out {out} cannot be created ({e.strerror or e}); pass another folder") from e
    if not os.access(out, os.W_OK):
        raise ExportError(f"--out {out} is not writable; pass another folder")
    stem = model_path.name.removesuffix(".keras")
    target = out / f"{stem}{SUFFIXES[fmt]}"
    if target.resolve() == model_path.resolve():
        raise ExportError(f"{model_path} is already a .keras file; pass --out DIR to copy it elsewhere")
    model, names, meta = load_model(model_path)
    model = inference_model(model)  # in float32, without random augmentation: what converts
    model(np.zeros((1, *model.input_shape[1:]), "uint8"), training=False)  # exporters need a called model
    labels = {"class_names": names, "input_shape": list(model.input_shape[1:]), "input_dtype": "uint8",
              "output": "softmax probabilities", "source": model_path.name, "format": fmt}
    if fmt == "keras":
        save_model(model, target, names, **{k: v for k, v in meta.items() if k != "class_names"})
    elif fmt == "onnx":
        with atomic_path(target, suffix=".onnx") as tmp:
            _onnx(model, tmp, labels)
    elif fmt == "tflite":
        with atomic_path(target, suffix=".tflite") as tmp:
            model.export(str(tmp), format="litert", verbose=False)
    else:
        def write(tmp: Path) -> None:
            model.export(str(tmp), format="tf_saved_model", verbose=False)
            write_json(labels, tmp / "labels.json")

        _replace_dir(target, write)
    write_json(labels, out / f"{stem}_labels.json")
    return target


def load_exported(path: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a uint8 image batch to probabilities, running an ``.onnx`` file with
    ONNX Runtime or a ``.tflite`` file with TensorFlow Lite (no Keras involved)."""
    path = Path(path)
    if path.suffix == ".onnx":
        if not _has("onnxruntime"):
            raise ExportError(f"running {path.name} needs onnxruntime: {SERVE_EXTRA}")
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: np.asarray(x, np.uint8)})[0]
    if path.suffix == ".tflite":
        if not _has("tensorflow"):
            raise ExportError(f"running {path.name} needs TensorFlow Lite (pip install tensorflow-cpu)")
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # tf.lite.Interpreter's deprecation note
            interpreter = tf.lite.Interpreter(str(path))

        def run(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, np.uint8)
            inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
            interpreter.resize_tensor_input(inp["index"], x.shape)
            interpreter.allocate_tensors()
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(outp["index"]).copy()

        return run
    raise ExportError(f"{path.name}: load_exported runs .onnx and .tflite files")
