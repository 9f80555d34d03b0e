"""Model files: a ``.keras`` archive that carries its class names, saved atomically and
loaded safely (Keras's ``safe_mode``: no arbitrary code from a model file).

The class names (and a little provenance) travel inside the archive as ``tlkit.json``,
so a model file never depends on the record beside it.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Sequence

from tlkit import TlkitError
from tlkit.system import atomic_path

META_NAME = "tlkit.json"
#: The largest ``tlkit.json`` read: 10,000 class names of 100 characters fit.
MAX_META_BYTES = 2 * 2**20


class ModelFileError(TlkitError):
    """A model file is missing, not a Keras archive, or disagrees with its labels."""


def save_model(model, path: str | Path, class_names: Sequence[str], **meta) -> Path:
    """Save ``model`` to ``path`` (``.keras``) with its class names, atomically."""
    path = Path(path)
    n_out = int(model.output_shape[-1])
    if len(class_names) != n_out:
        raise ModelFileError(f"{len(class_names)} class names for a model with {n_out} outputs")
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(META_NAME, json.dumps({"class_names": list(class_names), **meta}))
    return path


def read_meta(path: str | Path) -> dict:
    """The ``tlkit.json`` of a model file: ``class_names`` and provenance (at most
    :data:`MAX_META_BYTES` of it is read)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}: pass a _model.keras written by 'tlkit train'")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a Keras model file (.keras is a zip archive); pass "
                             "the _model.keras written by 'tlkit train'")
    with zipfile.ZipFile(path) as zf:
        if META_NAME not in zf.namelist():
            raise ModelFileError(f"{path} carries no class names ({META_NAME}): it was not saved by "
                                 "tlkit; pass class_names=[...] or re-save it with "
                                 "tlkit.modelfile.save_model")
        with zf.open(META_NAME) as f:
            data = f.read(MAX_META_BYTES + 1)  # never more, whatever the archive declares
        if len(data) > MAX_META_BYTES:
            raise ModelFileError(f"{path}: {META_NAME} is over the limit of {MAX_META_BYTES:,} bytes "
                                 "(class names and provenance take a few KB): not a model file "
                                 "written by tlkit")
        try:
            meta = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{path}: {META_NAME} is damaged ({e})") from e
    names = meta.get("class_names")
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise ModelFileError(f"{path}: {META_NAME} has no list of class names")
    return meta


def load_model(path: str | Path, class_names: Sequence[str] | None = None):
    """Load a model file with ``safe_mode=True``; returns (model, class names, meta).

    The class names come from the file itself unless given; either way their number must
    match the model's outputs.
    """
    import keras

    import tlkit.cnn  # noqa: F401  (each tlkit layer registers where it is defined, in cnn
    import tlkit.models  # noqa: F401  or models; neither loads data or training code)

    path = Path(path)
    if class_names is None:
        meta = read_meta(path)  # also checks that the file is a zip archive
    elif not path.is_file() or not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a Keras model file (.keras is a zip archive)")
    else:
        meta = {"class_names": list(class_names)}
    try:
        model = keras.models.load_model(path, safe_mode=True, compile=False)
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise ModelFileError(f"cannot load {path} as a Keras model: {str(e)[:200]}") from e
    names = list(meta["class_names"])
    n_out = int(model.output_shape[-1])
    if len(names) != n_out:
        raise ModelFileError(f"{path}: {len(names)} class names for a model with {n_out} outputs")
    return model, names, meta
