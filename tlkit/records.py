"""Run records: one JSON file per run, written atomically, read back as a DataFrame.

A record is the contract between whoever trains (``tlkit train``, the notebooks) and
whoever reports (the book, comparisons): :data:`FIELDS` with their types, a ``kind`` from
:data:`KINDS` (with the fields of :data:`KIND_FIELDS` and :data:`STUDIES` that some kinds
declare), schema version :data:`SCHEMA`. It is checked when written and when read,
and a file that breaks it is an error naming the file, never a silently missing row.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Iterable

from tlkit import TlkitError
from tlkit.system import execution, file_digest, hardware, jsonable, write_json

SCHEMA = 1
# What produced a record: ``tlkit train`` (train) and the course notebooks (the others; ``own``:
# the appendix on a student's own images, whose runs are on other data than the course's).
KINDS = ("train", "scratch", "frozen", "finetune", "comparison", "ablation", "own")
_NUMBER = (int, float)
# Every record's top-level fields and their JSON types; other fields may follow.
FIELDS: dict[str, type | tuple[type, ...]] = {
    "schema": int, "kind": str, "name": str, "created": str, "params": dict, "dataset": dict,
    "model": dict, "weights_source": str, "metrics": dict, "history": dict,
    "wall_seconds": _NUMBER, "images_per_second": _NUMBER, "seed": (int, type(None)),
    "hardware": dict, "backend": str, "versions": dict, "git_commit": (str, type(None))}
# precision, deterministic and xla: how the backend ran (tlkit.system.execution); devices:
# data-parallel training ran on these (empty: one device); an own-images run: its 'unknown'
# threshold (findings.unknown) and data checks (findings.data_checks)
OPTIONAL = {"evaluation": dict, "precision": str, "deterministic": bool, "xla": bool,
            "weights_origin": (str, type(None)), "devices": list, "unknown": dict, "data_checks": dict}
# Fields some kinds declare inside a part, for the reports that read them: a comparison row is
# named by its backbone's base and width (alpha, null for a model without one) and plotted
# against the backbone's size; an own-images run says which stage of the recipe it is (``frozen``:
# the head on frozen features, ``finetune``: fine-tuned).
KIND_FIELDS: dict[str, dict[str, dict[str, type | tuple[type, ...]]]] = {
    "comparison": {"model": {"alpha": (int, float, type(None)), "backbone_params": _NUMBER}},
    "own": {"params": {"stage": str}}}
# What an ablation record studies, told by the params it declares (the first one marks the
# study): a point of notebook 2's label-efficiency curve (per_class null: every image) or one
# value of a notebook-5 knob.
STUDIES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "curve": {"method": str, "per_class": (int, type(None)), "train_images": int},
    "knob": {"knob": str}}
METRICS = ("train_accuracy", "train_loss", "test_accuracy", "test_loss")  # every record has these
# JSON files tlkit writes beside records that are not records: the labels of an exported model.
NOT_RECORDS = ("_labels.json",)
PACKAGES = ("tlkit", "keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch", "numpy",
            "scikit-learn", "scipy", "matplotlib", "papermill")


class RecordError(TlkitError):
    """A run record (or a file where records are read) breaks the record schema."""


def _type_names(t: type | tuple[type, ...]) -> str:
    return " or ".join(x.__name__.replace("NoneType", "null") for x in (t if isinstance(t, tuple) else (t,)))


def _is(value, t: type | tuple[type, ...]) -> bool:
    return isinstance(value, t) and (t is bool or not isinstance(value, bool))  # True is no number


def _field_problems(part: dict, fields: dict[str, type | tuple[type, ...]], name: str = "",
                    required: bool = True) -> list[str]:
    """What ``part`` (``name``: where it sits in a record) lacks of ``fields`` or holds as the
    wrong type."""
    problems = []
    for k, t in fields.items():
        where = f"{name}['{k}']" if name else f"'{k}'"
        if k not in part:
            if required:
                problems.append(f"no {where} field")
        elif not _is(part[k], t):
            problems.append(f"{where} is {type(part[k]).__name__}, not {_type_names(t)}")
    return problems


def _marked(params: dict) -> list[str]:
    """The :data:`STUDIES` whose marking field ``params`` declares."""
    return [s for s, fields in STUDIES.items() if next(iter(fields)) in params]


def study(record: dict) -> str:
    """Which of :data:`STUDIES` a valid ablation record belongs to."""
    return _marked(record["params"])[0]


def record_problems(record) -> list[str]:
    """What makes ``record`` an invalid run record (empty list: valid)."""
    if not isinstance(record, dict):
        return [f"a record is a JSON object, not {type(record).__name__}"]
    if record.get("schema") != SCHEMA:
        return [f"schema {record.get('schema')!r} is not this tlkit's record schema {SCHEMA}"]
    problems = _field_problems(record, FIELDS) + _field_problems(record, OPTIONAL, required=False)
    if problems:
        return problems
    if record["kind"] not in KINDS:
        problems.append(f"kind '{record['kind']}' is not one of {', '.join(KINDS)}")
    for part, fields in KIND_FIELDS.get(record["kind"], {}).items():
        problems += [f"{p} (a {record['kind']} record declares it)"
                     for p in _field_problems(record[part], fields, part)]
    if record["kind"] == "ablation":
        marked = _marked(record["params"])
        if len(marked) == 1:
            problems += [f"{p} (a {marked[0]} ablation declares {', '.join(STUDIES[marked[0]])})"
                         for p in _field_problems(record["params"], STUDIES[marked[0]], "params")]
        else:
            problems.append("an ablation's params declare exactly one of " + ", ".join(
                f"'{next(iter(fields))}' ({s})" for s, fields in STUDIES.items()))
    if not record["name"]:
        problems.append("'name' is empty")
    problems += [f"metrics has no '{k}'" for k in METRICS if k not in record["metrics"]]
    problems += [f"metrics['{k}'] is {type(v).__name__}, not a number"
                 for k, v in record["metrics"].items() if not _is(v, _NUMBER)]
    problems += [f"{part} has no '{key}' string" for part, key in (("dataset", "name"), ("model", "base"))
                 if not _is(record[part].get(key), str)]
    return problems


def check_record(record, where: str | Path) -> None:
    """Raise :class:`RecordError` naming ``where`` if ``record`` is not a valid run record."""
    problems = record_problems(record)
    if problems:
        raise RecordError(f"{where}: not a valid tlkit run record (schema {SCHEMA}): " + "; ".join(problems))


def check_kinds(kinds: Iterable[str]) -> None:
    """Raise :class:`RecordError` for a kind that no record can have (a typo)."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise RecordError(f"unknown record kind(s) {', '.join(map(repr, unknown))}: "
                          f"choose from {', '.join(KINDS)}")


def run_prefix(base: str, dataset: str, img_size: int, batch_size: int, epochs: int, *,
               lr: float, seed: int, weights: str, alpha: float | None = None,
               limit_per_class: int | None = None, finetune_epochs: int | None = None,
               crop: str = "squash") -> str:
    """The name of a CLI run's folder and files, one per setting that changes the result:
    ``<base>__<dataset>__img<S>__bs<B>__ep<N>__lr<LR>__seed<K>__w<weights>`` then
    ``__a<alpha>``, ``__lim<L>``, ``__ft<M>`` (fine-tuned M epochs) and ``__crop<C>`` (not
    squash) when set.
    The caller passes filesystem-safe ``dataset`` and ``weights`` parts."""
    parts = [base, dataset, f"img{img_size}", f"bs{batch_size}", f"ep{epochs}", f"lr{lr:g}",
             f"seed{seed}", f"w{weights}"]
    if alpha is not None:
        parts.append(f"a{alpha:g}")
    if limit_per_class is not None:
        parts.append(f"lim{limit_per_class}")
    if finetune_epochs is not None:
        parts.append(f"ft{finetune_epochs}")
    if crop != "squash":
        parts.append(f"crop{crop}")
    return "__".join(parts)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """The commit of the repository holding tlkit (or the working directory), if any."""
    for where in (Path(__file__).resolve().parent, Path.cwd()):
        try:
            out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                                 text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def environment() -> dict:
    """Hardware, backend, how it ran (precision, deterministic, xla), versions and commit:
    where a result came from."""
    import keras

    return {"hardware": hardware(),
            "backend": keras.config.backend(), "precision": keras.mixed_precision.global_policy().name,
            **execution(), "versions": versions(), "git_commit": git_commit()}


def make_record(*, kind: str, name: str, params: dict, dataset: dict, model: dict, metrics: dict,
                history: dict | None = None, wall_seconds: float = 0.0,
                images_per_second: float = 0.0, seed: int | None = None,
                evaluation: dict | None = None, extra: dict | None = None) -> dict:
    """Assemble one run record (see the README for the fields)."""
    env = environment()
    rec = {"schema": SCHEMA, "kind": kind, "name": name,
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "params": params, "dataset": dataset, "model": model,
           "weights_source": model.get("weights_source", "random"),
           "weights_origin": weights_origin(model.get("weights_source", "random")),
           "metrics": metrics, "history": history or {}, "wall_seconds": wall_seconds,
           "images_per_second": images_per_second, "seed": seed, **env}
    if evaluation is not None:
        rec["evaluation"] = evaluation
    if extra:
        rec.update(extra)
    return jsonable(rec)


def write_record(record: dict, path: str | Path) -> Path:
    """Check a run record against the schema, then write it atomically."""
    record = jsonable(record)
    check_record(record, f"refusing to write {path}")
    return write_json(record, path)


def record_files(folder: str | Path) -> list[Path]:
    """The ``*.json`` files under ``folder``, leaving out hidden folders and files
    (Jupyter's ``.ipynb_checkpoints`` copies, temporary files of atomic writes) and
    the :data:`NOT_RECORDS` side files."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise RecordError(f"records folder {folder} {what}: pass the folder that holds the run records")
    return sorted(p for p in folder.rglob("*.json") if not p.name.endswith(NOT_RECORDS)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_record(path: str | Path) -> dict:
    """One run record file, checked against the schema, with its ``path`` added."""
    p = Path(path)
    if p.is_dir():
        raise RecordError(f"{p} is a folder, not a record file: rename it (records folders hold only "
                          "run records)")
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise RecordError(f"{p} is not UTF-8 text ({e.reason} at byte {e.start}): delete it or move it "
                          "out of the records folder") from e
    except json.JSONDecodeError as e:
        raise RecordError(f"{p} is not valid JSON ({e}); delete or rewrite it") from e
    except OSError as e:
        raise RecordError(f"{p} cannot be read: {e.strerror}") from e
    check_record(rec, f"{p} (records folders hold only run records: move it out)")
    rec["path"] = str(p)
    return rec


def read_records(folders: str | Path | Iterable[str | Path]) -> list[dict]:
    """Every run record under the given folder(s), each once, with its path.

    A missing folder, or a ``*.json`` file there that is not a valid record, is a
    :class:`RecordError` naming it."""
    if isinstance(folders, (str, Path)):
        folders = [folders]
    seen: set[Path] = set()
    out = []
    for folder in folders:
        for p in record_files(folder):
            if p.resolve() not in seen:
                seen.add(p.resolve())
                out.append(read_record(p))
    return out


def load_records(folders: str | Path | Iterable[str | Path]):
    """Run records as a pandas DataFrame: one row per run, nested fields flattened
    with dots (``metrics.test_accuracy``, ``params.epochs``, ``model.base``...)."""
    import pandas as pd

    rows = []
    for rec in read_records(folders):
        slim = {k: v for k, v in rec.items() if k not in ("history", "evaluation")}
        rows.append(slim)
    if not rows:
        return pd.DataFrame()
    return pd.json_normalize(rows, sep=".")


def label(record: dict) -> str:
    """Where a result came from, for captions: profile, device, date, backend."""
    hw = record.get("hardware", {})
    device = (hw.get("gpus") or [hw.get("cpu", "?")])[0]
    profile = record.get("params", {}).get("profile", "-")
    return f"{profile} profile, {device}, {str(record.get('created', ''))[:10]}, {record.get('backend')}"


def save_run(path: str | Path, *, kind: str, name: str, params: dict, dataset, model: dict,
             evaluation: dict, result=None, wall_seconds: float | None = None,
             images_per_second: float | None = None, seed: int | None = None,
             extra: dict | None = None) -> dict:
    """Make and write the record of one run (a notebook's training or probe); returns it.

    ``dataset`` is a :class:`tlkit.data.Dataset`; ``result`` a :class:`tlkit.train.TrainResult`.
    """
    history = result.history if result is not None else {}
    wall = wall_seconds if wall_seconds is not None else (result.wall_seconds if result else 0.0)
    ips = images_per_second if images_per_second is not None else (
        result.images_per_second if result else 0.0)
    devices = {"devices": result.devices} if result is not None else {}
    rec = make_record(kind=kind, name=name, params=params, dataset=dataset.info(), model=model,
                      metrics=evaluation["summary"], history=history, wall_seconds=round(wall, 2),
                      images_per_second=round(ips, 1), seed=seed,
                      evaluation={k: v for k, v in evaluation.items() if k != "summary"},
                      extra={**devices, **(extra or {})})
    write_record(rec, path)
    return rec


def save_point(point, path: str | Path, *, name: str, params: dict, seed: int | None = None,
               kind: str = "ablation") -> dict:
    """Write the run record of one label-efficiency point (a :class:`tlkit.label_efficiency.Point`):
    ``params`` plus the point's own; returns it.

    The default kind is ``ablation``: a point is a run with fewer labels, not one of the
    main runs of its notebook."""
    return save_run(path, kind=kind, name=name, params={**params, **point.params()}, dataset=point.ds,
                    model=point.model, evaluation=point.evaluation, result=point.result, seed=seed)


class Recorder:
    """A notebook's record keeping: its records folder, its settings (``params``, e.g.
    ``course.resolve``'s) and its data set are given once, so that keeping the record of a
    run is one short call, :meth:`save` (or :meth:`save_point`)."""

    def __init__(self, folder: str | Path, params: dict, dataset=None):
        self.folder, self.params, self.dataset = Path(folder), dict(params), dataset

    def path(self, file: str) -> Path:
        """Where record ``file`` (a name without ``.json``) is kept."""
        return self.folder / f"{file}.json"

    def save(self, file: str, name: str, *, kind: str, run=None, model=None, evaluation: dict | None = None,
             result=None, params: dict | None = None, dataset=None, **fields) -> dict:
        """Write the record of one run to ``folder/<file>.json`` with :func:`save_run`; returns it.

        ``run`` is a probe (:class:`tlkit.features.ProbeRun`: its model, evaluation, training,
        wall time and extraction speed); else ``model`` (a :class:`tlkit.models.Classifier` or
        a dict), ``evaluation`` and ``result`` say what was trained and how it scored.
        ``params`` are added to the notebook's settings, ``dataset`` replaces its data set, and
        ``fields`` are more arguments of :func:`save_run` (``wall_seconds``, ``extra``, ...)."""
        parts = run.record_fields() if run is not None else {}
        if model is not None:
            parts["model"] = model if isinstance(model, dict) else model.info()
        parts.update({k: v for k, v in (("evaluation", evaluation), ("result", result)) if v is not None})
        if "model" not in parts or "evaluation" not in parts:
            raise RecordError(f"{file}: give run=, or model= and evaluation=, to keep a record")
        data = dataset if dataset is not None else self.dataset
        if data is None:
            raise RecordError(f"{file}: no data set: give Recorder(..., dataset) or dataset=")
        fields.setdefault("seed", self.params.get("seed"))
        return save_run(self.path(file), kind=kind, name=name, params={**self.params, **(params or {})},
                        dataset=data, **parts, **fields)

    def save_point(self, point, file: str, name: str, *, params: dict | None = None, **kw) -> dict:
        """:func:`save_point` of a label-efficiency point to ``folder/<file>.json``."""
        kw.setdefault("seed", self.params.get("seed"))
        return save_point(point, self.path(file), name=name, params={**self.params, **(params or {})}, **kw)


# Local ImageNet weight files that are not the file Keras downloads, by SHA-256: the label a
# table gives them (see ../shared/README.md for how the file was made).
CONVERTED_WEIGHTS = {
    "71e4c4ec4aa24c9c951b9265d6de42e1336dcf614c2214fa6a989208615e232c": "converted TF-slim checkpoint",
}


def weights_origin(source: str) -> str | None:
    """Where ImageNet weights came from: a converted checkpoint, a Keras file or a Keras
    download (None for other sources). Read from the file itself, when the record is made."""
    if source == "imagenet:download":
        return "Keras download"
    path = Path(source.split(":", 1)[-1]) if source.startswith("imagenet:") else None
    if path is None or not path.is_file():
        return None
    return CONVERTED_WEIGHTS.get(file_digest(path), "Keras file")


# What a row's model learnt, in words (:func:`trained_label`) when its backbone started random.
SCRATCH = "trained from scratch (whole network)"
RANDOM_HEAD = "head on frozen random features"
RANDOM_FINETUNED = "random weights, fine-tuned"


def weights_label(source: str, origin: str | None = None) -> str:
    """Where a backbone's starting weights came from: ImageNet (and from where), a weights
    file, or random."""
    if source.startswith("imagenet"):
        return f"ImageNet weights ({origin})" if origin else "ImageNet weights"
    return "weights file" if source.startswith("file:") else "random weights"


def backbone_trained(record: dict) -> bool | None:
    """Whether a record's backbone learnt (False: frozen under a trained head), from what the
    record declares: ``model.frozen``, ``model.backbone_trainable_params``, else the trainable
    count beyond the head (``trainable_params`` − (``params`` − ``backbone_params``), for
    records made before the backbone's own count), else what its kind, stage or curve method
    always does. None when the record does not say."""
    m, p, kind = record.get("model", {}), record.get("params", {}), record.get("kind")
    if "frozen" in m:
        return not m["frozen"]
    if "backbone_trainable_params" in m:
        return m["backbone_trainable_params"] > 0
    if all(isinstance(m.get(k), (int, float)) for k in ("trainable_params", "params", "backbone_params")):
        return m["trainable_params"] - (m["params"] - m["backbone_params"]) > 0
    if kind == "own" and p.get("stage") in ("frozen", "finetune"):
        return p["stage"] == "finetune"
    if kind == "ablation" and p.get("method") in ("frozen", "scratch"):
        return p["method"] == "scratch"
    return {"frozen": False, "comparison": False, "scratch": True, "finetune": True}.get(kind)


def _fine_tuning(record: dict) -> bool:
    """Whether a record ran the course's fine-tuning recipe (a head first, then the backbone's
    top), as against training the whole network from its first step."""
    p = record.get("params", {})
    return (record.get("kind") == "finetune" or p.get("finetune") is True
            or (record.get("kind") == "own" and p.get("stage") == "finetune"))


def trained_label(record: dict) -> str:
    """What a record's model is, in words, from what was trained: the whole network from
    scratch, a head on frozen random features (never to be read as transfer), pretrained
    weights frozen under a head or fine-tuned. The one label of a run in tables, banners and
    the results page."""
    weights = weights_label(record.get("weights_source", "random"), record.get("weights_origin"))
    trained = backbone_trained(record)
    if weights != "random weights":
        return weights if trained is None else f"{weights}, {'fine-tuned' if trained else 'frozen'}"
    if trained is None and record.get("kind") == "train":
        trained = True  # tlkit train freezes pretrained backbones only
    if trained is None:
        return weights
    if not trained:
        return RANDOM_HEAD
    return RANDOM_FINETUNED if _fine_tuning(record) else SCRATCH


def split_images(record: dict, split: str = "test") -> int | None:
    """How many images a record's accuracy on ``split`` was measured on: its evaluation's
    count, else the split's size in its data set (None: neither is recorded)."""
    n = record.get("evaluation", {}).get(split, {}).get("n")
    if n is not None:
        return int(n)
    counts = record.get("dataset", {}).get("counts", {}).get(split)
    return int(sum(counts)) if counts else None


def to_frame(recs: Iterable[dict], kinds: list[str] | None = None):
    """Records as a tidy DataFrame for tables and plots: one row per run with ``run``,
    ``kind``, ``model``, ``weights``, ``img_size``, where features were read (``read_from``:
    inner layers + the last) and how a head on them was fitted (``head``: ``linear``, else
    ``adamw`` or None), sizes (``train_images``, ``test_images``), speeds and every metric."""
    import pandas as pd

    if kinds:
        check_kinds(kinds)
    rows = []
    for r in recs:
        if kinds and r.get("kind") not in kinds:
            continue
        m = r.get("model", {})
        rows.append({"run": r.get("name"), "kind": r.get("kind"), "model": m.get("base"),
                     "weights": trained_label(r),
                     "weights_source": r.get("weights_source"),
                     "img_size": m.get("img_size") or r.get("params", {}).get("img_size"),
                     "read_from": " + ".join([*(m.get("taps") or []), "last layer"]),
                     "head": m.get("head"),
                     "backbone_params": m.get("backbone_params"),
                     "num_classes": len(r.get("dataset", {}).get("class_names", [])) or None,
                     "train_images": r.get("train_images") or sum(
                         r.get("dataset", {}).get("counts", {}).get("train", []) or [0]) or None,
                     "test_images": split_images(r, "test"),
                     "wall_seconds": r.get("wall_seconds"), "images_per_second": r.get("images_per_second"),
                     "profile": r.get("params", {}).get("profile"), "backend": r.get("backend"),
                     "created": r.get("created"), **r.get("metrics", {})})
    return pd.DataFrame(rows)


def metrics_table(recs: Iterable[dict]):
    """Accuracy and loss per split of each run: a small DataFrame, to three decimals."""
    import pandas as pd

    rows = []
    for r in recs:
        m = r["metrics"]
        for split in ("train", "val", "test"):
            if f"{split}_accuracy" in m:
                rows.append({"run": r["name"], "split": split, "accuracy": m[f"{split}_accuracy"],
                             "loss": m[f"{split}_loss"]})
    return pd.DataFrame(rows).pivot(index="run", columns="split", values=["accuracy", "loss"]).round(3)
