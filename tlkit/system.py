"""The bottom of the house: the user-facing error, atomic file writes, the package's cache
(folder, keys, file hashes, self-healing reads, usage and clearing), download timeouts, the
hardware probe, the devices training runs on and opt-in log quieting. Every layer may import
this module; it imports no other tlkit module.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import re
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator, Sequence

import numpy as np


class TlkitError(Exception):
    """A user-facing error: the message says what went wrong and how to fix it."""


TMP_MARK = ".tlkit-tmp"  # every temporary file of an atomic write carries this in its name
TEMP_MAX_AGE_S = 3600.0  # older temporary files belong to killed writers and are removed


# --------------------------------------------------------------------------- atomic writes

def _tmp_path(path: Path, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_MARK}{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is synced and renamed onto
    ``path``, on any failure it is removed. ``suffix`` keeps writers that look at the file
    name happy (``.npz``, ``.keras``). Readers never see a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path, suffix)
    try:
        yield tmp
        if tmp.is_file():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes(data: bytes, path: str | Path) -> Path:
    """Write bytes atomically (permissions follow the process's umask, like ``open``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    return path


def jsonable(obj: Any) -> Any:
    """Plain JSON types from dicts, lists, tuples, paths and NumPy values."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def write_json(obj: Any, path: str | Path) -> Path:
    """Write JSON atomically: a temporary file in the same folder, then a rename."""
    return write_bytes(json.dumps(jsonable(obj), indent=1, allow_nan=True).encode(), path)


def write_text(text: str, path: str | Path) -> Path:
    """Write text (UTF-8) atomically."""
    return write_bytes(text.encode(), path)


def clean_temp_files(folder: str | Path, older_than_s: float = TEMP_MAX_AGE_S) -> int:
    """Remove temporary files that killed writers left under ``folder``; returns how many.

    Only files older than ``older_than_s`` go, so a writer at work in another process keeps its own.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    now, n = time.time(), 0
    for p in folder.rglob(f"*{TMP_MARK}*"):
        with contextlib.suppress(OSError):
            if p.is_file() and now - p.stat().st_mtime > older_than_s:
                p.unlink()
                n += 1
    return n


# --------------------------------------------------------------------------- caches

CACHE_KINDS = ("datasets", "features")  # the folders under cache_dir()


def cache_dir() -> Path:
    """Where decoded arrays and features are cached (``$TLKIT_CACHE_DIR``)."""
    return Path(os.environ.get("TLKIT_CACHE_DIR", Path.home() / ".cache" / "tlkit"))


def cache_key(*parts: Any, length: int = 16) -> str:
    """A short SHA-1 of ``repr(parts)``: an entry's name from everything that decides it
    (put the cache's format version first, so a new format never reads an old entry)."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:length]


def fingerprint(*arrays: np.ndarray) -> str:
    """A short content hash of arrays, their shapes included (keys cached features)."""
    h = hashlib.sha1()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()[:16]


def _hash_file(path: str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _hash_unchanged(path: str, algorithm: str, size: int, mtime_ns: int, ctime_ns: int,
                    inode: int) -> str:
    return _hash_file(path, algorithm)


def file_digest(path: str | Path, algorithm: str = "sha256", memo: bool = True) -> str:
    """The hex digest of a file's content (``algorithm``: a :mod:`hashlib` name).

    ``memo`` hashes a file once per process while it is unchanged: memoised per (real path,
    size, mtime, ctime, inode), so a file replaced (new inode) or rewritten (new ctime) is
    hashed again, even with its size and mtime kept. Without it every call reads the file,
    which also sees a rewrite within one tick of the file system's clock."""
    real = os.path.realpath(path)
    if not memo:
        return _hash_file(real, algorithm)
    st = os.stat(real)
    return _hash_unchanged(real, algorithm, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def cache_load(path: Path, load: Callable[[Path], Any]) -> Any | None:
    """Read a cache entry, or None when it is missing. A corrupt or truncated entry is
    removed with a one-line warning (and so rebuilt by the caller): a cache is only an
    optimisation and never breaks a run."""
    if not path.exists():
        return None
    try:
        return load(path)
    except Exception as e:  # numpy, zipfile and json raise many types for damaged files
        warnings.warn(f"tlkit: removed unreadable cache entry {path.name} ({type(e).__name__}); "
                      "it is rebuilt", RuntimeWarning, stacklevel=2)
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def cache_store(path: Path, write: Callable[[Path], None], suffix: str = "") -> bool:
    """Write a cache entry atomically with ``write(tmp_path)``; a full or read-only disk
    warns once and degrades to no cache (returns False) instead of failing the run."""
    try:
        with atomic_path(path, suffix) as tmp:
            write(tmp)
        return True
    except OSError as e:
        warnings.warn(f"tlkit: could not write cache entry {path} ({e.strerror or e}); "
                      "running without the cache", RuntimeWarning, stacklevel=2)
        return False


def cache_usage() -> dict[str, dict]:
    """Per cache kind (``datasets``, ``features``): its folder, entries, bytes, and the
    temporary files killed runs left (``temp_files``, ``temp_bytes``)."""
    out = {}
    for kind in CACHE_KINDS:
        folder = cache_dir() / kind
        files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
        temp = [p for p in files if TMP_MARK in p.name]
        kept = [p for p in files if TMP_MARK not in p.name]
        out[kind] = {"folder": str(folder), "entries": len({p.with_suffix("") for p in kept}),
                     "bytes": sum(p.stat().st_size for p in kept), "temp_files": len(temp),
                     "temp_bytes": sum(p.stat().st_size for p in temp)}
    return out


def clear_cache(kinds: Iterable[str] = CACHE_KINDS) -> dict[str, int]:
    """Remove every entry of the given cache kinds; returns the bytes freed per kind.

    Temporary files younger than an hour stay: they may belong to a run writing right now."""
    freed = {}
    for kind in kinds:
        if kind not in CACHE_KINDS:
            raise TlkitError(f"unknown cache kind '{kind}': use {', '.join(CACHE_KINDS)}")
        folder, n, now = cache_dir() / kind, 0, time.time()
        for p in (folder.rglob("*") if folder.is_dir() else ()):
            st = p.stat()
            if p.is_file() and not (TMP_MARK in p.name and now - st.st_mtime < TEMP_MAX_AGE_S):
                p.unlink()
                n += st.st_size
        freed[kind] = n
    return freed


# --------------------------------------------------------------------------- downloads

DOWNLOAD_TIMEOUT_S = 60.0  # default for $TLKIT_DOWNLOAD_TIMEOUT


def download_timeout_s() -> float:
    """Seconds a download may wait for the network (``$TLKIT_DOWNLOAD_TIMEOUT``, default 60)."""
    raw = os.environ.get("TLKIT_DOWNLOAD_TIMEOUT")
    if raw is None:
        return DOWNLOAD_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        warnings.warn(f"tlkit: TLKIT_DOWNLOAD_TIMEOUT={raw!r} is not a positive number of "
                      f"seconds; using {DOWNLOAD_TIMEOUT_S:g}", RuntimeWarning, stacklevel=2)
        return DOWNLOAD_TIMEOUT_S
    return value


@contextlib.contextmanager
def download_timeout(seconds: float | None = None) -> Iterator[float]:
    """Bound every socket wait of a download (``keras.utils.get_file`` has no timeout), so a
    server that accepts and never answers fails like no network at all. Sets the process's
    default socket timeout for the block and restores it after."""
    seconds = download_timeout_s() if seconds is None else seconds
    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield seconds
    finally:
        socket.setdefaulttimeout(saved)


DOWNLOAD_LINE = "Downloading data from "  # how keras.utils.get_file announces a download


class _HeldDownloadLine:
    """A stdout that holds the line announcing a download until the download shows progress
    (more output: it reached the server); every other write passes through."""

    def __init__(self, out):
        self.out, self.held = out, ""

    def write(self, text: str) -> int:
        if (not self.held and text.startswith(DOWNLOAD_LINE)) or (self.held and not self.held.endswith("\n")):
            self.held += text  # the line, up to its end
            return len(text)
        self.release()
        return self.out.write(text)

    def release(self) -> None:
        if self.held:
            self.out.write(self.held)
            self.held = ""

    def flush(self) -> None:
        self.out.flush()

    def __getattr__(self, name: str):
        return getattr(self.out, name)


@contextlib.contextmanager
def announce_only_real_downloads() -> Iterator[None]:
    """Within the block, Keras's "Downloading data from URL" line is printed only for a download
    that happens: as its progress starts, or when the block ends without an error. A download that
    fails (no network, offline) leaves no line; the error says what is missing."""
    held = _HeldDownloadLine(sys.stdout)
    try:
        with contextlib.redirect_stdout(held):
            yield
    except BaseException:
        held.held = ""
        raise
    held.release()


# --------------------------------------------------------------------------- processes

class Terminated(KeyboardInterrupt):
    """The process got SIGTERM: raised where it runs, like Ctrl-C's KeyboardInterrupt, so
    that the same cleanup happens."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block (or the function it decorates) SIGTERM raises :class:`Terminated`,
    so a job that is killed cleans up as after Ctrl-C; the previous handler is restored
    after. Only the main thread can set a handler: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    received: list[int] = []

    def terminate(signum: int, frame) -> None:
        received.append(signum)
        raise Terminated("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except Terminated:
        raise
    except BaseException as e:
        # raised inside C code, the signal's exception can come out as another one
        # (TensorFlow tracing a graph turns it into a SystemError): it is still SIGTERM
        if received:
            raise Terminated("terminated (SIGTERM)") from e
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _proc_stat(pid: int) -> tuple[str, float] | None:
    """(state, start time in seconds since the epoch) of a process, from /proc; None
    where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        stat = Path("/proc/stat").read_text().split()
        boot = float(stat[stat.index("btime") + 1])
    except (OSError, IndexError, ValueError):
        return None
    return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def process_alive(pid: int, since: float | None = None) -> bool:
    """Whether process ``pid`` still runs on this machine. With ``since`` (a ``time.time()``
    that process recorded), a process started later only reuses the number and does not
    count. Where that cannot be told (not POSIX), a process counts as alive."""
    if pid <= 0:
        return False
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another user
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    return state != "Z" and (since is None or started <= since + 2)


# --------------------------------------------------------------------------- hardware

def cpu_model() -> str:
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``avx512_bf16``, ``amx_bf16``...); empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def _capability(value: Any) -> tuple[int, int] | None:
    """An NVIDIA compute capability as (major, minor), from ``(8, 0)`` or ``"8.0"``; None
    for anything else (an AMD architecture name, an unknown GPU)."""
    if isinstance(value, str):
        value = value.split(".")
    try:
        major, minor = (int(v) for v in value)
    except (TypeError, ValueError):
        return None
    return major, minor


def accelerator_info() -> list[dict]:
    """Each GPU/TPU the current Keras backend sees, as ``{"name", "kind", "compute_capability"}``:
    the model's name (``"NVIDIA A100-SXM4-40GB"``), ``"gpu"`` or ``"tpu"``, and (major, minor)
    for an NVIDIA GPU (None where unknown). Empty on a CPU-only machine. The one probe of the
    accelerators: precision (:func:`tlkit.train.choose_precision`), device counts and records
    read it."""
    import keras

    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return [{"name": d.device_kind, "kind": "tpu" if d.platform == "tpu" else "gpu",
                 "compute_capability": _capability(getattr(d, "compute_capability", None))}
                for d in jax.devices() if d.platform != "cpu"]
    if backend == "torch":
        import torch

        return [{"name": torch.cuda.get_device_name(i), "kind": "gpu",
                 "compute_capability": _capability(torch.cuda.get_device_capability(i))}
                for i in range(torch.cuda.device_count())]
    if backend == "tensorflow":
        import tensorflow as tf

        out = []
        for d in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(d)
            out.append({"name": details.get("device_name", d.name), "kind": "gpu",
                        "compute_capability": _capability(details.get("compute_capability"))})
        return out
    return []


def accelerators() -> list[str]:
    """The names of the GPUs/TPUs the current Keras backend sees (empty on a CPU-only machine)."""
    return [d["name"] for d in accelerator_info()]


JAX_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"  # in XLA_FLAGS before JAX starts


def execution() -> dict:
    """How the backend runs models now: ``deterministic`` (deterministic ops in force: the
    same seed gives the same numbers) and ``xla`` (Keras compiles with XLA).

    TensorFlow: deterministic while op determinism is on (:func:`tlkit.train.set_seed`); XLA
    by Keras's ``jit_compile="auto"``, which the course compiles with: on one GPU; off on a
    CPU-only machine, under op determinism (Keras 3.7 on) and under the strategy that
    ``device_scope`` uses on two GPUs or more.
    JAX: always XLA; deterministic on a CPU, and on a GPU with :data:`JAX_DETERMINISM_FLAG`
    in ``XLA_FLAGS``. torch: no XLA; deterministic while ``torch.use_deterministic_algorithms``
    is on.
    """
    import keras

    backend = keras.config.backend()
    if backend == "tensorflow":
        from tensorflow.python.framework import config as tf_config  # as Keras's trainer reads it

        deterministic = bool(tf_config.is_op_determinism_enabled())
        return {"deterministic": deterministic,
                "xla": not deterministic and len(accelerators()) == 1}
    if backend == "jax":
        return {"deterministic": not accelerators()
                or JAX_DETERMINISM_FLAG in os.environ.get("XLA_FLAGS", "").split(),
                "xla": True}
    if backend == "torch":
        import torch

        return {"deterministic": bool(torch.are_deterministic_algorithms_enabled()), "xla": False}
    return {"deterministic": False, "xla": False}


def hardware() -> dict:
    """CPU model, cores, bf16 support, accelerators (by model name) and platform: where a
    result came from."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "cpu_bf16": cpu_bf16(),
            "gpus": accelerators(), "platform": platform.platform()}


def cpu_load() -> float | None:
    """The 1-minute load average over the core count (1.0: every core busy), if known."""
    try:
        return round(os.getloadavg()[0] / (os.cpu_count() or 1), 2)
    except OSError:
        return None


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall clock, CPU seconds every process has used since boot, CPU seconds of this process
    and its finished children), for :func:`others_share`; None where ``/proc/stat`` is not."""
    import resource

    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy
    ticks = [int(v) for v in fields[:8]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    own = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))
    return time.time(), busy, own


def others_share(before: tuple[float, float, float] | None,
                 after: tuple[float, float, float] | None) -> float | None:
    """The share of the machine's CPU (0 to 1) that other processes used between two
    :func:`cpu_snapshot` s: 0.5 on 2 cores is one core taken from a measurement."""
    if not before or not after or after[0] <= before[0]:
        return None
    others = (after[1] - before[1]) - (after[2] - before[2])
    return round(min(1.0, max(0.0, others / ((after[0] - before[0]) * (os.cpu_count() or 1)))), 3)


# --------------------------------------------------------------------------- devices

DEVICES_ENV = "TLKIT_DEVICES"


def wanted_devices() -> list[str]:
    """The devices ``$TLKIT_DEVICES`` names for training (``gpu:0,gpu:1``; ``cpu:0,cpu:1``
    splits the CPU into two logical devices, to run multi-device code on a CPU), as
    ``keras.distribution.list_devices()`` names them; empty when it is unset."""
    raw = os.environ.get(DEVICES_ENV, "")
    names = [d.strip().lower() for d in raw.split(",") if d.strip()]
    if len(set(names)) != len(names) or not all(re.fullmatch(r"(cpu|gpu|tpu):\d+", d) for d in names):
        raise TlkitError(f"{DEVICES_ENV}={raw!r} is not a list of distinct devices: write e.g. "
                         f"{DEVICES_ENV}=gpu:0,gpu:1, or cpu:0,cpu:1 to split the CPU in two")
    return names


def _cpus(devices: Sequence[str]) -> int:
    """How many logical CPU devices ``devices`` needs (``cpu:1`` needs two)."""
    return 1 + max((int(d.split(":")[1]) for d in devices if d.startswith("cpu:")), default=0)


def split_cpu(n: int) -> None:
    """Split the CPU into ``n`` logical devices (``cpu:0`` to ``cpu:<n-1>``), so that
    multi-device code runs on a CPU: TensorFlow's logical device configuration, JAX's host
    device count. Both must be set before the backend starts; :func:`quiet` does it for
    ``$TLKIT_DEVICES``. Nothing to do for ``n`` < 2, on torch, or when already split."""
    if n < 2:
        return
    import keras

    backend = keras.config.backend()
    late = (f"{DEVICES_ENV} asks for {n} CPU devices, but {backend} started before tlkit could "
            f"split the CPU: set {DEVICES_ENV} before Python starts and call tlkit.quiet() first")
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        if len(tf.config.get_logical_device_configuration(cpu) or ()) >= n:
            return
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError as e:  # "Virtual devices cannot be modified after being initialized"
            raise TlkitError(late) from e
    elif backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:  # read when JAX starts
            os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
        import jax

        if len(jax.devices("cpu")) < n:
            raise TlkitError(late)


def _distributed(backend: str) -> bool:
    """Whether a data-parallel scope or distribution is in force already."""
    import keras

    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.has_strategy()
    return backend == "jax" and keras.distribution.distribution() is not None


_STRATEGIES: dict[tuple[str, ...] | None, object] = {}


def device_scope(devices: Sequence[str] | None = None) -> ContextManager:
    """Data parallelism with Keras's own tools over several devices, else nothing.

    ``devices`` names them as ``keras.distribution.list_devices()`` does (``"gpu:0"``; a
    ``"cpu:1"`` splits the CPU into logical devices, see :func:`split_cpu`). By default:
    those of ``$TLKIT_DEVICES``, else every accelerator when there are at least two; inside
    a scope already, the default keeps it, so scopes nest. tlkit builds every model inside it
    (``models.build_classifier``, ``build_extractor``, ``head_model``) and compiles in the
    model's own scope (``train.compile_model``). JAX: ``keras.distribution.DataParallel``
    (set globally). TensorFlow: ``tf.distribute.MirroredStrategy`` (build and compile models
    inside the returned scope). Fewer than two devices, or torch: a scope that does nothing.
    """
    import keras

    backend = keras.config.backend()
    if backend not in ("jax", "tensorflow"):
        return contextlib.nullcontext()  # torch: Keras runs on one GPU; use torchrun for more
    if devices is None:
        if _distributed(backend):
            return contextlib.nullcontext()
        devices = wanted_devices()
        if not devices and len(accelerators()) < 2:
            return contextlib.nullcontext()
    key = tuple(d.lower() for d in devices) or None  # None: every accelerator
    if key is not None and len(key) < 2:
        return contextlib.nullcontext()
    split_cpu(_cpus(key or ()))
    if backend == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel(
            devices=list(key) if key else None))
        return contextlib.nullcontext()
    if key not in _STRATEGIES:
        import tensorflow as tf

        _STRATEGIES[key] = tf.distribute.MirroredStrategy(
            devices=[f"/{d}" for d in key] if key else None)
    return _STRATEGIES[key].scope()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- backends

JAX_RATIO = 1.5  # JAX's CPU time within this factor of TensorFlow's: no advice to switch


def backend_advice(slowdown: float | None) -> str | None:
    """What the course tells CPU users about the backend, given JAX's measured slowdown on a
    CPU: None when JAX is within :data:`JAX_RATIO` of TensorFlow (or nothing was measured)."""
    if not slowdown or slowdown <= JAX_RATIO:
        return None
    return (f"on a CPU, use the TensorFlow backend: the reference bench measured JAX up to "
            f"{slowdown:.1f}x slower there (XLA's CPU convolutions against TensorFlow's oneDNN "
            "kernels); JAX pays off on a GPU or TPU")


# --------------------------------------------------------------------------- logs

NOISE = ("oneDNN custom operations are on", "All log messages before absl::InitializeLog",
         "Unable to register cu", "computation placer already registered",
         "This TensorFlow binary is optimized")


def quiet() -> None:
    """Silence TensorFlow's start-up and log lines for this process; oneDNN stays on.

    Opt-in, for applications (the CLI and the notebooks' setup cell call it): importing
    tlkit itself changes no environment variable, logger or umask. TensorFlow prints its
    oneDNN notice from C++ before its log level applies, so TensorFlow is loaded here with
    the process's stderr captured, and only lines that are not start-up notices go through.
    As the backend starts here, the CPU is split first when ``$TLKIT_DEVICES`` asks for
    logical CPU devices (:func:`split_cpu`).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    cpus = _cpus(wanted_devices())
    import importlib.util

    if (os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or "tensorflow" in sys.modules
            or importlib.util.find_spec("tensorflow") is None):
        split_cpu(cpus)
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as buf:
        saved = os.dup(2)
        os.dup2(buf.fileno(), 2)
        try:
            import tensorflow as tf

            split_cpu(cpus)
            tf.constant(1.0) + 1.0  # the second notice comes with the first op
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        buf.seek(0)
        lines = buf.read().decode(errors="replace").splitlines()
    for line in lines:
        if line.strip() and not any(n in line for n in NOISE):
            print(line, file=sys.stderr)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
