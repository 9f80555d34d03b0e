"""The course: notebook settings per profile, and the papermill runner.

``GPU`` below is the one source of the course settings: each notebook's ``parameters`` cell
is generated from it (:func:`parameters_cell`; after changing the table, ``python -m
tlkit.course --sync-parameters`` rewrites the cells). The table lives here, not in the
notebooks, because the runtime needs it where the notebooks are not shipped (a pip-installed
tlkit in Colab resolves a profile with :func:`resolve`; the bench reads
:func:`profile_settings`). A profile (``smoke`` or ``cpu``) replaces the settings a user has
not changed, so one notebook serves a GPU server, a laptop and CI. ``run_course`` executes
the notebooks in order.

Notebook ``NN`` names its records ``records/NN_*.json``. In a course run folder,
``records/`` only holds records of notebooks whose latest run finished: the runner moves
what a failed notebook wrote to ``failed/<notebook>/``, and a notebook's earlier records
to ``previous/<notebook>/`` when it runs again (or is skipped). One runner works in a run
folder at a time (its lock file, ``course.lock``); a notebook whose runner died while it
ran is marked interrupted by the next runner, and its records moved to ``failed/``.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import secrets
import shutil
import socket
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType

from tlkit import TlkitError
from tlkit.colab import in_colab
from tlkit.markup import md_text
from tlkit.records import environment
from tlkit.system import TMP_MARK, accelerators, process_alive, sigterm_as_interrupt, write_json, write_text

NOTEBOOKS = ["01_cnn_from_scratch", "02_frozen_mobilenetv2", "03_fine_tuning",
             "04_model_comparison", "05_overfitting_gaps",
             "06_from_notebook_to_service", "07_your_own_images"]  # the five steps, then the appendices
DEPENDS = {"01": [], "02": ["01"], "03": ["01", "02"], "04": [], "05": ["01", "02", "03", "04"],
           "06": ["03"], "07": []}
PROFILES = ("smoke", "cpu", "gpu")
NOTEBOOKS_DIR = "notebooks"  # in the repository
BADGE_TEXT = "[![Open In Colab]"  # how the badge line under each notebook's title starts
LOCK = "course.lock"  # in a run folder while a runner works in it

# The course settings, one table: the real course, run on a GPU. Each notebook's parameters
# cell is generated from it (see parameters_cell); notebook 4's models_to_compare is also the
# model list of the bench.
GPU = {
    "01": dict(dataset="cifar10", limit_per_class=None, epochs=40, batch_size=256, lr=4e-3,
               label_smoothing=0.1, early_stopping=10),
    "02": dict(dataset="cifar10", limit_per_class=None, sizes=[32, 96, 160, 224], alpha=1.0,
               weights="imagenet", head_epochs=40, taps=["block_13_expand_relu"], curve_img_size=160,
               curve_counts=[10, 25, 100, 500], curve_min_images=100_000),
    "03": dict(dataset="cifar10", limit_per_class=None, img_size=160, alpha=1.0, weights="imagenet",
               head_epochs=20, finetune_epochs=6, unfreeze_last=40, stages=[20, 60, 120],
               batch_size=128, finetune_lr=1e-4),
    "04": dict(dataset="cifar10", limit_per_class=None, img_size=224,
               models_to_compare=["resnet50", "resnet101", "resnet152", "vgg16", "vgg19", "efficientnetb0",
                       "efficientnetb3", "mobilenetv2", "mobilenetv3large"],
               weights="imagenet", head_epochs=30),
    "05": dict(dataset="cifar10", ablation_img_size=160, ablation_limit_per_class=None,
               ablation_weights="imagenet",
               scratch_limit_per_class=1000, scratch_epochs=30, scratch_batch_size=64, scratch_lr=2e-3,
               head_epochs=30),
    "06": dict(threshold=0.5, export_format="onnx"),
    "07": dict(dataset="flowers", image_size=224, crop="center", limit_per_class=None, alpha=1.0,
               weights="imagenet", head_epochs=30, finetune_epochs=5, unfreeze_last=40, batch_size=64,
               finetune_lr=1e-4, near_duplicate=0.9, target_precision=0.95, other_images="cifar10",
               other_count=300, photo=None),
}
# What a profile changes.
CHANGES = {
    "smoke": {
        "01": dict(dataset="synthetic", epochs=3, batch_size=32, lr=2e-3, early_stopping=None),
        "02": dict(dataset="synthetic", sizes=[32, 64], alpha=0.35, weights="none", head_epochs=5,
                   curve_img_size=32, curve_counts=[5, 20], curve_min_images=200),
        "03": dict(dataset="synthetic", img_size=32, alpha=0.35, weights="none", head_epochs=3,
                   finetune_epochs=1, unfreeze_last=10, stages=[5, 10], batch_size=32),
        "04": dict(dataset="synthetic", img_size=32,
                   models_to_compare=["mobilenetv2", "efficientnetb0"],
                   weights="none", head_epochs=5),
        "05": dict(dataset="synthetic", ablation_img_size=64, ablation_weights="none", scratch_limit_per_class=60,
                   scratch_epochs=3, head_epochs=5),
        "07": dict(dataset="generated", image_size=48, alpha=0.35, weights="none", head_epochs=5,
                   finetune_epochs=1, unfreeze_last=10, batch_size=32, other_images="generated",
                   other_count=24),
    },
    "cpu": {  # all of CIFAR-10's training images; the bench (tlkit bench --suite cpu) uses these too
        "01": dict(epochs=10, batch_size=256, lr=4e-3, label_smoothing=0.2, early_stopping=None),
        "02": dict(sizes=[32, 96, 128, 160], head_epochs=40, curve_img_size=128, curve_min_images=30_000),
        "03": dict(img_size=128, head_epochs=20, finetune_epochs=6, unfreeze_last=64, stages=[20, 64],
                   batch_size=64),
        "04": dict(limit_per_class=150, img_size=96),
        "05": dict(ablation_img_size=160, ablation_limit_per_class=1000, scratch_limit_per_class=200,
                   scratch_epochs=10),
        "07": dict(image_size=128, finetune_epochs=3),  # the shared flowers set's photos are 128 px
    },
}

# The lines every parameters cell has besides its settings: ``profile = None`` first, these last.
RUN_SETTINGS = dict(seed=0, data_dir=None, weights_dir=None, out_dir="runs/interactive")
# What a setting means, written beside it in the parameters cells: "all" notebooks, or one.
NOTES = {
    "all": dict(profile='None: $TLKIT_PROFILE, else "gpu" on a GPU, else "cpu"',
                limit_per_class="e.g. 500 for a quick run",
                alpha="MobileNetV2 width multiplier",
                weights='"imagenet", "none" (random), or a weights file',
                data_dir="local data sets (default: $TLKIT_DATA_DIR)",
                weights_dir="local ImageNet weights (default: $TLKIT_WEIGHTS_DIR)",
                out_dir="run records and figures go here"),
    "01": dict(early_stopping="epochs without a better validation loss; None: off"),
    "02": dict(sizes="input sizes the backbone sees",
               taps="inner layers also read, beside the last (one pass)",
               curve_img_size="label-efficiency curve: the frozen head's input size",
               curve_counts='labelled images per class (the curve adds "all")',
               curve_min_images="each curve point trains on at least this many images"),
    "03": dict(head_epochs="phase 1, on cached features", finetune_epochs="phase 2",
               unfreeze_last="layers of the backbone to unfreeze at once",
               stages="progressive unfreezing: layers unfrozen at each stage",
               finetune_lr="phase 2: about 10x below the head's rate"),
    "04": dict(models_to_compare="each at full width; narrower MobileNet variants are added after them"),
    "05": dict(ablation_img_size="frozen MobileNetV2 features for the head ablations",
               scratch_limit_per_class="the from-scratch augmentation ablation's small set"),
    "06": dict(threshold='the service answers "unknown" below this probability',
               weights_dir="not used here: the model file holds its weights",
               out_dir="the run folder of notebook 3"),
    "07": dict(dataset='your folder (a sub-folder per class) or archive; "flowers"; "generated": drawn shapes '
                       'with planted mistakes',
               image_size="the size the model sees (photos are decoded to it)",
               crop='non-square photos: "center" (keep the middle), "pad" (letterbox) or "squash"',
               finetune_epochs="0: keep the frozen head", other_count="how many of them to check",
               near_duplicate="cosine similarity of frozen features from which two photos are near-duplicates",
               target_precision="the 'unknown' threshold keeps this validation precision",
               other_images="photos of none of the classes: a folder, an archive or a built-in data set",
               photo="a photo to classify at the end; None: upload one in Colab, else a test photo"),
}
CELL_WIDTH = 88  # no line is longer; a longer list goes on to the next line, a longer note above
NOTE_COLUMN = 30  # the notes of short lines start in this column


def _literal(value) -> str:
    """``value`` as a student would write it: ``"text"``, ``4e-3``, ``100_000``, ``[32, 64]``."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:_}"
    if isinstance(value, float) and 0 < abs(value) < 0.01:
        mantissa, exponent = f"{value:e}".split("e")
        text = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return text if float(text) == value else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def _assignment(name: str, value) -> str:
    """``name = value``; a list too long for one line continues under its first item."""
    head = f"{name} = "
    if not isinstance(value, list) or len(head + _literal(value)) <= CELL_WIDTH:
        return head + _literal(value)
    lines, line = [], head + "["
    for i, item in enumerate(value):
        text = _literal(item) + ("]" if i == len(value) - 1 else ",")
        if len(line) + len(text) + 1 > CELL_WIDTH and not line.endswith("["):
            lines.append(line)
            line = " " * len(head + "[") + text
        else:
            line += ("" if line.endswith("[") else " ") + text
    return "\n".join(lines + [line])


def parameters_cell(nb: str) -> str:
    """The source of notebook ``nb``'s parameters cell, generated from the table: ``profile``,
    the ``gpu`` settings in table order, then :data:`RUN_SETTINGS`, each with its note
    (beside it, or above a setting that takes several lines or leaves no room for it), no
    line longer than :data:`CELL_WIDTH`."""
    notes = {**NOTES["all"], **NOTES.get(nb, {})}
    lines = []
    for name, value in {"profile": None, **GPU[nb], **RUN_SETTINGS}.items():
        code, note = _assignment(name, value), notes.get(name)
        beside = f"{code.ljust(NOTE_COLUMN - 2)}  # {note}"
        if note and ("\n" in code or len(beside) > CELL_WIDTH):
            code = "\n".join(f"# {line}" for line in textwrap.wrap(note, CELL_WIDTH - 2)) + "\n" + code
        elif note:
            code = beside
        lines.append(code)
    return "\n".join(lines)


def _local_kernel() -> dict:
    """Papermill's kernel talks to the runner over local sockets where the system has them
    (ipykernel warns about unencrypted TCP on every start, even on localhost)."""
    if os.name != "posix":
        return {}
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    class LocalSocketKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

    return {"kernel_manager_class": LocalSocketKernelManager}


def sync_parameters(folder: str | Path | None = None) -> list[str]:
    """Rewrite each course notebook's parameters cell from the table (its id, metadata and
    other cells are kept). Returns the notebooks changed."""
    nbformat = require("nbformat")
    src, changed = source_notebooks(folder), []
    for name in NOTEBOOKS:
        path = src / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        if len(cells) != 1:
            raise TlkitError(f"{path} has {len(cells)} cells tagged 'parameters', not 1: tag one")
        source = parameters_cell(notebook_id(name))
        if cells[0].source != source:
            cells[0].source = source
            nbformat.write(nb, path)
            changed.append(name)
    return changed


def book_config(root: str | Path = ".") -> dict:
    """The repository root's ``_config.yml`` (the Jupyter Book's; it holds the repository URL)."""
    path = Path(root) / "_config.yml"
    if not path.is_file():
        raise TlkitError(f"{path} not found: give the repository root (it holds _config.yml)")
    return require("yaml").safe_load(path.read_text(encoding="utf-8"))


def colab_link(name: str, config: dict) -> str:
    """Where Colab opens course notebook ``name`` (``01_cnn_from_scratch``), without outputs:
    ``launch_buttons.colab_url`` with ``repository.url`` and ``repository.branch`` of the
    book's config. The notebooks' badges and the book's launch buttons both use it."""
    repo = config.get("repository") or {}
    url, colab = str(repo.get("url", "")).rstrip("/"), (config.get("launch_buttons") or {}).get("colab_url")
    if not url.startswith("https://github.com/") or not colab:
        raise TlkitError("_config.yml needs repository.url (https://github.com/OWNER/REPO: Colab opens "
                         "notebooks from GitHub) and launch_buttons.colab_url")
    return (f"{colab.rstrip('/')}/github/{url.removeprefix('https://github.com/')}/blob/"
            f"{repo.get('branch', 'main')}/{NOTEBOOKS_DIR}/{name}.ipynb")


def colab_badge(name: str, config: dict) -> str:
    """The badge line under a notebook's title: Colab's badge image, linked to :func:`colab_link`."""
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    return f"{BADGE_TEXT}({colab}/assets/colab-badge.svg)]({colab_link(name, config)})"


def sync_badges(folder: str | Path | None = None, root: str | Path | None = None) -> list[str]:
    """Rewrite the Colab badge line in each course notebook's first cell from ``_config.yml``
    in ``root`` (default: the notebooks folder's parent). Returns the notebooks changed."""
    nbformat = require("nbformat")
    src, changed = source_notebooks(folder), []
    config = book_config(src.parent if root is None else root)
    for name in NOTEBOOKS:
        path = src / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        lines = nb.cells[0].source.split("\n") if nb.cells else []
        at = [i for i, line in enumerate(lines) if line.startswith(BADGE_TEXT)]
        if len(at) != 1:
            raise TlkitError(f"{path}'s first cell has {len(at)} Colab badge lines ({BADGE_TEXT}...), "
                             "not 1: put one under its title")
        badge = colab_badge(name, config)
        if lines[at[0]] != badge:
            lines[at[0]] = badge
            nb.cells[0].source = "\n".join(lines)
            nbformat.write(nb, path)
            changed.append(name)
    return changed


def notebook_id(name: str) -> str:
    return name[:2]


def record_notebook(path: str | Path) -> str | None:
    """The notebook id (``"02"``) a record file belongs to by its name, or None."""
    name = Path(path).name
    return name[:2] if name[2:3] == "_" and name[:2] in DEPENDS else None


def require(module: str) -> ModuleType:
    """Import an optional dependency of the course and book, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise TlkitError(f"{module} is needed here and cannot be imported ({e}): "
                         "pip install 'tlkit[course]'") from e


def profile_settings(nb: str, profile: str) -> dict:
    """A notebook's settings under a profile, as the notebook resolves them untouched."""
    if profile not in PROFILES:
        raise TlkitError(f"unknown profile '{profile}': choose one of {', '.join(PROFILES)}")
    return {**GPU[nb], **CHANGES.get(profile, {}).get(nb, {})}


def hardware_profile() -> str:
    """The profile for this machine, said in one line: ``gpu`` where there is a GPU, else ``cpu``."""
    if accelerators():
        print('profile: "gpu" (a GPU is here: the full course); for the smaller settings, set '
              'profile = "cpu" in the parameters cell or TLKIT_PROFILE=cpu')
        return "gpu"
    print('profile: "cpu" (no GPU here: the CPU-sized settings); for the full course, set '
          'profile = "gpu" in the parameters cell or TLKIT_PROFILE=gpu')
    return "cpu"


def resolve(nb: str, namespace: dict) -> dict:
    """Apply the profile to a notebook's parameters, in ``namespace`` (its globals).

    The profile is ``namespace["profile"]``, else ``$TLKIT_PROFILE``, else the hardware's
    (:func:`hardware_profile`). Values a user changed from the parameters cell's defaults
    (e.g. with papermill ``-p``) are kept. Returns the settings in effect and prints them.
    """
    profile = namespace.get("profile") or os.environ.get("TLKIT_PROFILE") or hardware_profile()
    if profile not in PROFILES:
        raise TlkitError(f"unknown profile '{profile}': choose one of {', '.join(PROFILES)}")
    namespace["profile"] = profile
    for key, value in CHANGES.get(profile, {}).get(nb, {}).items():
        if namespace.get(key) == GPU[nb][key]:
            namespace[key] = value
    settings = {k: namespace[k] for k in GPU[nb]}
    settings["profile"] = profile
    for k in RUN_SETTINGS:
        if k in namespace:
            settings[k] = namespace[k]
    print("settings: " + ", ".join(f"{k}={v!r}" for k, v in settings.items()))
    return settings


def run_first(notebooks: list[str], out_dir: str | Path, profile: str, purpose: str) -> str:
    """How to run the earlier notebooks (ids) whose records this one needs ``purpose``: in Colab,
    each from its badge with Drive on; elsewhere into the same ``out_dir``."""
    names = [n for n in NOTEBOOKS if notebook_id(n) in notebooks]
    numbers = [str(int(notebook_id(n))) for n in names]
    which = f"notebook {numbers[0]}" if len(numbers) == 1 else \
        f"notebooks {', '.join(numbers[:-1])} and {numbers[-1]}"
    files = ", ".join(f"{n}.ipynb" for n in names)
    if in_colab():
        badge = "the Colab badge at its top" if len(names) == 1 else "the Colab badge at the top of each"
        return (f"Run {which} first {purpose}: open {files} from {badge}, set use_drive = True in its "
                "Drive cell and run all cells; then run this notebook again with use_drive = True "
                "(a Colab session keeps no files).")
    return (f"Run {which} first {purpose}, into out_dir={str(out_dir)!r}: open {files} in Jupyter and run "
            f"all cells, or run: tlkit course run --profile {profile} --only {' '.join(map(notebook_id, names))} "
            f"--out {out_dir} (it needs pip install 'tlkit[course]').")


def output_dirs(out_dir: str | Path) -> tuple[Path, Path]:
    """(records folder, figures folder) of a course run, created."""
    out = Path(out_dir)
    (out / "records").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    return out / "records", out / "figures"


def source_notebooks(folder: str | Path | None = None) -> Path:
    """The folder of the course notebooks (``notebooks/`` of the repository)."""
    candidates = [Path(folder)] if folder else [Path.cwd() / NOTEBOOKS_DIR,
                                                Path(__file__).resolve().parents[1] / NOTEBOOKS_DIR]
    for c in candidates:
        if (c / f"{NOTEBOOKS[0]}.ipynb").is_file():
            return c
    raise TlkitError("course notebooks not found: run from the repository root or pass --notebooks DIR")


def _failure(exc: Exception) -> dict:
    return {"cell": getattr(exc, "exec_count", None), "cell_index": getattr(exc, "cell_index", None),
            "error": f"{getattr(exc, 'ename', type(exc).__name__)}: "
                     f"{getattr(exc, 'evalue', str(exc))}"[:500]}


def load_summary(folder: str | Path) -> dict | None:
    """A course run's ``summary.json``, or None when there is none."""
    p = Path(folder) / "summary.json"
    if not p.is_file():
        return None
    try:
        summary = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TlkitError(f"{p} is not a course summary ({e}): delete it (the next course run "
                         "writes a new one)") from e
    if not isinstance(summary, dict) or not isinstance(summary.get("notebooks"), list):
        raise TlkitError(f"{p} is not a course summary (no 'notebooks' list): delete it")
    return summary


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _files(folder: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


def _move(files: list[Path], root: Path, dest: Path) -> None:
    """Move ``files`` (under ``root``) into ``dest``, which they replace."""
    if dest.exists():
        shutil.rmtree(dest)
    for f in files:
        target = dest / f.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, target)


def _summary(profile: str, out: Path, latest: dict[str, dict], params: dict, env: dict) -> dict:
    entries = [latest[notebook_id(n)] for n in NOTEBOOKS if notebook_id(n) in latest]
    return {"profile": profile, "out": str(out),
            "seconds": round(sum(e.get("seconds", 0.0) for e in entries), 1), "notebooks": entries,
            "failed": [notebook_id(e["notebook"]) for e in entries if e["status"] != "ok"],
            "created": _now(), "data_dir": params.get("data_dir"),
            "weights_dir": params.get("weights_dir"), **env}


def _write_summary(summary: dict, out: Path) -> None:
    write_json(summary, out / "summary.json")
    write_text(summary_markdown(summary), out / "summary.md")


def _read_lock(path: Path) -> dict | None:
    """The runner a lock file names (pid, host, started, since, token), None without one."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TlkitError(f"{path} is not a course lock ({e}): delete it if no course run uses "
                         f"{path.parent}") from e
    if not (isinstance(holder, dict) and isinstance(holder.get("pid"), int)
            and isinstance(holder.get("since"), (int, float)) and {"host", "started", "token"} <= set(holder)):
        raise TlkitError(f"{path} is not a course lock: delete it if no course run uses {path.parent}")
    return holder


def _take_lock(out: Path, log) -> dict:
    """Make this process the one runner of ``out``; returns its lock (to release it).

    The lock file appears whole (a hard link to a file already written) or not at all, and
    names its runner: a second runner is refused; the lock of a runner no longer alive on
    this machine is reported and taken over."""
    path = out / LOCK
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
            "since": time.time(), "token": secrets.token_hex(8)}
    tmp = write_json(mine, out / f".{LOCK}.{mine['token']}{TMP_MARK}")
    try:
        while True:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
                return mine
            holder = _read_lock(path)
            if holder is None:  # released in between: try again
                continue
            who = f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
            if holder["host"] != mine["host"]:
                raise TlkitError(f"{out} is in use by a course run on another machine ({who}): "
                                 f"pass another --out, or delete {path} if that run is over")
            if process_alive(holder["pid"], holder["since"]):
                raise TlkitError(f"{out} is in use by another course run ({who}): wait for it "
                                 "to finish, or pass another --out")
            log(f"note: {path} was left by a course run that is gone ({who}); taking over",
                flush=True)
            _remove_stale_lock(path, holder)
    finally:
        tmp.unlink()


def _remove_stale_lock(path: Path, holder: dict) -> None:
    """Remove the lock of ``holder``, a dead runner; a runner taking it over at the same
    moment may already have: then its new lock stays."""
    aside = path.with_name(f".{LOCK}.stale.{secrets.token_hex(4)}{TMP_MARK}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if json.loads(aside.read_text(encoding="utf-8")).get("token") != holder["token"]:
        with contextlib.suppress(FileExistsError):  # a third runner holds it now
            os.link(aside, path)
    aside.unlink()


def _release_lock(out: Path, mine: dict) -> None:
    path = out / LOCK
    with contextlib.suppress(TlkitError):  # a damaged lock is not this runner's
        if (_read_lock(path) or {}).get("token") == mine["token"]:
            path.unlink()


def _recover(out: Path, summary: dict, log) -> None:
    """Mark the notebooks that a runner which died left 'running' in ``summary`` as
    interrupted, and move the records they wrote (``records/NN_*``) to ``failed/``: only
    records of notebooks that finished stay in ``records/``."""
    stale = [e for e in summary["notebooks"] if e.get("status") == "running"]
    for entry in stale:
        name = entry["notebook"]
        written = sorted(p for p in (out / "records").glob(f"{notebook_id(name)}_*") if p.is_file())
        entry.update(status="interrupted", finished=_now(),
                     reason="its runner stopped while it ran (killed or crashed)")
        if written:
            _move(written, out / "records", out / "failed" / name)
            entry["records"] = str((out / "failed" / name).relative_to(out))
        log(f"note: {name} was left running by a course run that is gone: marked interrupted"
            + (f", its records moved to {entry['records']}" if written else ""), flush=True)
    if stale:
        _write_summary(summary, out)


@sigterm_as_interrupt()
def run_course(profile: str = "smoke", *, data_dir: str | None = None, weights_dir: str | None = None,
               out: str | Path | None = None, notebooks: str | Path | None = None,
               only: list[str] | None = None, resume: bool = False, log=print) -> dict:
    """Execute the notebooks in order with papermill; a failure skips its dependants.

    Writes the executed notebooks, ``records/``, ``figures/``, ``summary.json`` and
    ``summary.md`` into ``out`` (default ``runs/<profile>``); the summary is rewritten after
    each notebook and keeps the latest status of every notebook, also those that ``only``
    leaves out. ``resume`` keeps the notebooks already ok in ``out``. A second runner on the
    same ``out`` is refused while this one works; SIGTERM stops it like Ctrl-C. Returns the
    summary.
    """
    pm = require("papermill")
    if profile not in PROFILES:
        raise TlkitError(f"unknown profile '{profile}': choose one of {', '.join(PROFILES)}")
    ids = [notebook_id(n) for n in NOTEBOOKS]
    unknown = sorted(set(only or []) - set(ids))
    if unknown:
        raise TlkitError(f"unknown notebook(s) {', '.join(unknown)} for --only: choose from {', '.join(ids)}")
    src = source_notebooks(notebooks)
    out = Path(out or Path("runs") / profile).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = _take_lock(out, log)
    except OSError as e:
        raise TlkitError(f"--out {out} is not a writable folder ({e.strerror or e}): pass "
                         "another --out") from e
    try:
        return _run(pm, profile, src, out, data_dir, weights_dir, only, resume, log)
    finally:
        _release_lock(out, lock)


def _run(pm: ModuleType, profile: str, src: Path, out: Path, data_dir: str | None,
         weights_dir: str | None, only: list[str] | None, resume: bool, log) -> dict:
    """The body of :func:`run_course`, run while it holds ``out``'s lock."""
    records_dir, _ = output_dirs(out)
    previous = load_summary(out)
    if previous:
        _recover(out, previous, log)
    if previous and previous.get("profile") != profile and (only or resume):
        raise TlkitError(f"{out} holds a '{previous.get('profile')}' profile run: pass --profile "
                         f"{previous.get('profile')}, or another --out for the '{profile}' profile")
    latest = {notebook_id(r["notebook"]): r for r in previous["notebooks"]} if (
        previous and previous.get("profile") == profile) else {}
    params = {"profile": profile, "out_dir": str(out)}
    if data_dir:
        params["data_dir"] = str(Path(data_dir).resolve())
    if weights_dir:
        params["weights_dir"] = str(Path(weights_dir).resolve())
    selected = [n for n in NOTEBOOKS if not only or notebook_id(n) in only]
    # A non-interactive backend in the kernel would silently drop every figure from the
    # executed notebooks (and so from the book): the kernel must use its inline backend.
    if os.environ.pop("MPLBACKEND", None):
        log("note: MPLBACKEND is ignored for the notebooks (they need the inline backend)")
    env = environment()
    start_all = time.perf_counter()
    for i, name in enumerate(selected, 1):
        nb = notebook_id(name)
        prefix = f"[{i}/{len(selected)}] {name}"
        if resume and latest.get(nb, {}).get("status") == "ok" and (out / f"{name}.ipynb").is_file():
            log(f"{prefix}: ok in an earlier run, kept (--resume)", flush=True)
            continue
        earlier = sorted(p for p in records_dir.glob(f"{nb}_*") if p.is_file())
        if earlier:  # this run replaces them; kept aside until it succeeds
            _move(earlier, records_dir, out / "previous" / name)
        blocked = [d for d in DEPENDS[nb] if latest.get(d, {}).get("status") not in (None, "ok")]
        if blocked:
            latest[nb] = {"notebook": name, "status": "skipped", "seconds": 0.0, "finished": _now(),
                          "reason": "depends on notebook(s) not ok: "
                                    + ", ".join(f"{d} ({latest[d]['status']})" for d in blocked)}
            _write_summary(_summary(profile, out, latest, params, env), out)
            log(f"{prefix}: skipped ({latest[nb]['reason']})", flush=True)
            continue
        log(f"{prefix}: running ...", flush=True)
        latest[nb] = {"notebook": name, "status": "running", "seconds": 0.0, "started": _now()}
        _write_summary(_summary(profile, out, latest, params, env), out)
        before = _files(records_dir)
        start = time.perf_counter()
        interrupted: KeyboardInterrupt | None = None
        try:
            pm.execute_notebook(str(src / f"{name}.ipynb"), str(out / f"{name}.ipynb"),
                                parameters=params, kernel_name="python3", cwd=str(out),
                                progress_bar=sys.stdout.isatty(), log_output=False,
                                **_local_kernel())
            r = {"notebook": name, "status": "ok"}
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (system.Terminated)
            interrupted = e
            r = {"notebook": name, "status": "interrupted"}
        except Exception as e:  # papermill raises its own and nbclient errors; each is reported
            r = {"notebook": name, "status": "failed", **_failure(e)}
        r.update(seconds=round(time.perf_counter() - start, 1), finished=_now(), git_commit=env.get("git_commit"))
        written = sorted(p for p, stat in _files(records_dir).items() if before.get(p) != stat)
        if r["status"] == "ok":
            for aside in (out / "previous" / name, out / "failed" / name):
                if aside.exists():
                    shutil.rmtree(aside)
            stray = [p.name for p in written if record_notebook(p) != nb]
            if stray:
                log(f"note: {name} wrote records not named {nb}_*.json ({', '.join(stray)}): "
                    "the runner cannot tell which notebook they belong to", flush=True)
        else:
            _move(written, records_dir, out / "failed" / name)
            if written:
                r["records"] = str((out / "failed" / name).relative_to(out))
        latest[nb] = r
        _write_summary(_summary(profile, out, latest, params, env), out)
        detail = {"ok": "ok", "interrupted": "interrupted"}.get(
            r["status"], f"FAILED in cell {r.get('cell')}: {r.get('error')}")
        log(f"{prefix}: {detail} ({r['seconds']:.0f} s)", flush=True)
        if interrupted:
            raise interrupted
    summary = _summary(profile, out, latest, params, env)
    _write_summary(summary, out)
    n = len(summary["notebooks"])
    log(f"course ({profile}): {n - len(summary['failed'])}/{n} notebooks ok "
        f"(this run {time.perf_counter() - start_all:.0f} s) -> {out}", flush=True)
    return summary


def summary_markdown(summary: dict) -> str:
    """The run summary as a markdown table; its text (an error message too) shows literally."""
    hw = summary["hardware"]
    lines = [f"# Course run: {md_text(summary['profile'])} profile", "",
             f"{md_text(summary['created'])} · {md_text(hw['cpu'])} · "
             f"GPUs: {md_text(', '.join(hw['gpus']) or 'none')} · backend {md_text(summary['backend'])}",
             "", "| notebook | status | seconds | failing cell |", "|---|---|---|---|"]
    for r in summary["notebooks"]:
        cell = f"cell {r.get('cell')}: {r.get('error')}" if r["status"] == "failed" else r.get("reason", "")
        lines.append("| " + " | ".join(md_text(v) for v in (r["notebook"], r["status"], r.get("seconds", 0.0), cell))
                     + " |")
    lines.append(f"| total | | {md_text(summary['seconds'])} | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m tlkit.course --sync-parameters --sync-badges [NOTEBOOKS_DIR]
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tlkit.course",
                                     description="Rewrite the notebooks' generated cells.")
    parser.add_argument("--sync-parameters", action="store_true",
                        help="the parameters cells, from the table in tlkit/course.py")
    parser.add_argument("--sync-badges", action="store_true",
                        help="the Colab badge under each title, from _config.yml's repository")
    parser.add_argument("notebooks", nargs="?", help="the notebooks folder (default: notebooks/)")
    args = parser.parse_args()
    if not (args.sync_parameters or args.sync_badges):
        parser.error("give --sync-parameters, --sync-badges or both")
    for flag, sync in ((args.sync_parameters, sync_parameters), (args.sync_badges, sync_badges)):
        if flag:
            print(f"{sync.__name__}: rewrote {', '.join(sync(args.notebooks)) or 'none (all up to date)'}")
