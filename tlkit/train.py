"""Training: seeds, device setup, compile, fit, and progressive unfreezing."""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from tlkit.cnn import adapt
from tlkit.data import Dataset, class_weights
from tlkit.models import Classifier, unfreeze
# device_scope lives in system (models build inside it) and stays part of train's API
from tlkit.system import JAX_DETERMINISM_FLAG, accelerator_info, accelerators, cpu_bf16, device_scope


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and the backend, and choose deterministic ops or speed.

    ``deterministic`` (the default: the course wants the same seed to give the same
    metrics): TensorFlow's op determinism, on JAX :data:`~tlkit.system.JAX_DETERMINISM_FLAG`,
    on torch its deterministic algorithms. On a CPU this costs next to nothing. On a GPU it
    costs speed: Keras then compiles TensorFlow models without XLA, and cuDNN and XLA keep
    to deterministic kernels. ``False``: XLA and faster, with numbers that vary in the last
    digits from run to run. Every run record says which (:func:`tlkit.system.execution`).
    """
    backend = keras.config.backend()
    if backend == "tensorflow":
        from tensorflow.python.framework import config as tf_config  # disable is not public

        (tf_config.enable_op_determinism if deterministic else tf_config.disable_op_determinism)()
    elif backend == "jax":
        _jax_determinism(deterministic)
    elif backend == "torch":
        import torch

        if deterministic:  # cuBLAS is deterministic only with a fixed workspace
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    keras.utils.set_random_seed(seed)


def _jax_determinism(deterministic: bool) -> None:
    """Put :data:`~tlkit.system.JAX_DETERMINISM_FLAG` in ``XLA_FLAGS`` or take it out. XLA
    reads its flags once, when JAX starts on a device: later, a GPU keeps what it started
    with, and says so."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    if (JAX_DETERMINISM_FLAG in flags) == deterministic:
        return
    from jax._src import xla_bridge  # no public way to ask whether JAX has started

    if xla_bridge.backends_are_initialized():
        if accelerators():
            warnings.warn(f"tlkit: JAX has started on the GPU, whose ops stay "
                          f"{'non-' if deterministic else ''}deterministic: choose with "
                          "set_seed before the first computation, or set XLA_FLAGS="
                          f"{JAX_DETERMINISM_FLAG} before starting Python",
                          RuntimeWarning, stacklevel=3)
        return
    name = JAX_DETERMINISM_FLAG.split("=")[0]
    flags = [f for f in flags if f.split("=")[0] != name] + ([JAX_DETERMINISM_FLAG] if deterministic else [])
    os.environ["XLA_FLAGS"] = " ".join(flags)


# NVIDIA GPUs compute bfloat16 natively from compute capability 8.0 on (Ampere: A100 8.0,
# L4 8.9; Hopper: H100 9.0); older ones (T4 7.5, V100 7.0) compute float16 natively instead.
BF16_CAPABILITY = (8, 0)
# Models whose training runs faster in mixed bfloat16 on a CPU with native bfloat16
# (AVX512-BF16 or AMX), as `tlkit bench` measures in its kernels part: dense convolutions
# gain, depthwise ones (the MobileNets) do not, and an emulated bfloat16 is much slower.
CPU_BF16_MODELS = ("cnn",)


def choose_precision(devices: Sequence[dict], cpu_bf16: bool, model: str | None = None,
                     backend: str = "tensorflow") -> str:
    """The precision policy for ``devices`` (:func:`tlkit.system.accelerator_info`'s list).

    Accelerators, the same on every backend: mixed bfloat16 where every one computes it
    natively (a TPU; an NVIDIA GPU of compute capability :data:`BF16_CAPABILITY` or more),
    else mixed float16 (Keras adds loss scaling): T4, V100, a GPU of unknown capability.
    No accelerator: float32, except mixed bfloat16 for ``model`` in :data:`CPU_BF16_MODELS`
    on TensorFlow when ``cpu_bf16`` (the CPU computes bfloat16 natively). JAX keeps float32
    on a CPU, where its XLA kernels gain nothing from bfloat16: on a CPU with AVX512-BF16 the
    course CNN trained at about half its float32 speed in mixed bfloat16.
    """
    if devices:
        native = all(d["kind"] == "tpu" or (d["compute_capability"] or (0, 0)) >= BF16_CAPABILITY
                     for d in devices)
        return "mixed_bfloat16" if native else "mixed_float16"
    if model in CPU_BF16_MODELS and cpu_bf16 and backend == "tensorflow":
        return "mixed_bfloat16"
    return "float32"


def configure_precision(policy: str = "auto", model: str | None = None) -> str:
    """Set Keras's global precision policy and return it; ``auto``: :func:`choose_precision`
    for this machine's devices and backend."""
    if policy == "auto":
        policy = choose_precision(accelerator_info(), cpu_bf16(), model, keras.config.backend())
    keras.mixed_precision.set_global_policy(policy)
    return policy


@dataclass
class TrainResult:
    """What a training run produced besides the weights."""

    history: dict[str, list] = field(default_factory=dict)
    wall_seconds: float = 0.0
    images_seen: int = 0
    devices: list[str] = field(default_factory=list)  # data parallel on these; empty: one device

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def epochs(self) -> int:
        return len(self.history.get("loss", []))

    def extend(self, other: "TrainResult", phase: str) -> "TrainResult":
        """Append another run's history (e.g. phase 2 after phase 1); its ``seconds``
        continue from this run's wall time."""
        n = other.epochs
        for k, v in other.history.items():
            if k == "seconds":
                v = [t + self.wall_seconds for t in v]
            self.history.setdefault(k, []).extend(v)
        self.history.setdefault("phase", []).extend([phase] * n)
        self.wall_seconds += other.wall_seconds
        self.images_seen += other.images_seen
        self.devices = list(dict.fromkeys(self.devices + other.devices))
        return self


def _model_scope(model: keras.Model):
    """The scope ``model`` was built in (TensorFlow: its distribution strategy), where its
    optimizer must be made; elsewhere nothing."""
    if keras.config.backend() == "tensorflow":
        return model.distribute_strategy.scope()
    return contextlib.nullcontext()


def replica_devices(model: keras.Model) -> list[str]:
    """The devices ``model`` trains on data-parallel (``["gpu:0", "gpu:1"]``, named as
    ``keras.distribution.list_devices()`` does); empty on one device."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = model.distribute_strategy
        if strategy.num_replicas_in_sync < 2:
            return []
        specs = [tf.DeviceSpec.from_string(d) for d in strategy.extended.worker_devices]
        return [f"{s.device_type.lower()}:{s.device_index}" for s in specs]
    distribution = keras.distribution.distribution() if backend == "jax" else None
    if distribution is None or distribution.device_mesh.devices.size < 2:
        return []
    return [str(d) for d in distribution.device_mesh.devices.flat]


def compile_model(model: keras.Model, lr: float = 1e-3, *, steps: int | None = None,
                  schedule: str = "cosine", warmup_fraction: float = 0.1,
                  weight_decay: float = 1e-4, label_smoothing: float = 0.0,
                  jit_compile: bool | str = "auto") -> None:
    """Compile with AdamW, a learning-rate schedule over ``steps`` and smoothed labels.

    ``schedule``: ``cosine`` (linear warm-up then cosine decay, one-cycle-like) or
    ``constant``. Call again after every freeze/unfreeze. The optimizer is made in the
    model's own device scope (see :func:`device_scope`).
    """
    rate: float | keras.optimizers.schedules.LearningRateSchedule = lr
    if schedule == "cosine" and steps:
        warm = int(steps * warmup_fraction)
        rate = keras.optimizers.schedules.CosineDecay(
            lr * 0.1 if warm else lr, decay_steps=max(steps - warm, 1),
            warmup_target=lr if warm else None, warmup_steps=warm, alpha=0.01)
    elif schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', not {schedule!r}")
    with _model_scope(model):
        model.compile(optimizer=keras.optimizers.AdamW(rate, weight_decay=weight_decay),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                      metrics=["accuracy"], jit_compile=jit_compile)


class EpochClock(keras.callbacks.Callback):
    """Wall time since training began at the end of each epoch (``times``), so every
    history can be drawn as accuracy against time."""

    def on_train_begin(self, logs=None):
        self.start, self.times = time.perf_counter(), []

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


class TimeBudget(EpochClock):
    """Stop training once the next epoch, as long as the last one, would end past ``seconds``
    of training; with a constant learning rate (a schedule sized in epochs would be cut off
    before it decays)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        last = self.times[-1] - (self.times[-2] if len(self.times) > 1 else 0.0)
        if self.times[-1] + last > self.seconds:
            self.model.stop_training = True


def fit(model: keras.Model | Classifier, x: np.ndarray, y: np.ndarray, *,
        validation: tuple[np.ndarray, np.ndarray] | None = None, num_classes: int | None = None,
        epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, schedule: str = "cosine",
        weight_decay: float = 1e-4, label_smoothing: float = 0.0,
        class_weight: str | dict | None = None, early_stopping: int | None = None,
        tensorboard: str | Path | None = None, verbose: int | str = "auto",
        compile: bool = True, time_budget: float | None = None) -> TrainResult:
    """Compile and fit on arrays; returns history, wall time and images/s.

    ``class_weight="balanced"`` weighs classes by inverse frequency; ``early_stopping=P``
    stops after P epochs without a better validation loss and restores the best weights;
    ``time_budget`` (seconds, with ``schedule="constant"``) stops at most ``epochs`` epochs
    where the next one would overrun it (:class:`TimeBudget`).
    """
    if time_budget is not None and schedule != "constant":
        raise ValueError("time_budget needs schedule='constant': a schedule sized in epochs "
                         "would be cut off before it decays")
    model = model.model if isinstance(model, Classifier) else model
    k = num_classes or int(model.output_shape[-1])
    steps = epochs * int(np.ceil(len(x) / batch_size))
    adapt(model, x)  # data-dependent first layers (the fast CNN's patch whitening), once
    if compile:
        compile_model(model, lr, steps=steps, schedule=schedule, weight_decay=weight_decay,
                      label_smoothing=label_smoothing)
    clock = EpochClock()
    callbacks: list[keras.callbacks.Callback] = [clock]
    if early_stopping and validation is not None:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=early_stopping, restore_best_weights=True))
    if time_budget is not None:
        callbacks.append(TimeBudget(time_budget))
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(tensorboard)))
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be 'balanced', a dict or None, not {class_weight!r}")
        class_weight = class_weights(y, k)
    onehot = keras.utils.to_categorical
    val = (validation[0], onehot(validation[1], k)) if validation is not None else None
    start = time.perf_counter()
    hist = model.fit(x, onehot(y, k), validation_data=val, epochs=epochs, batch_size=batch_size,
                     class_weight=class_weight, callbacks=callbacks, verbose=verbose, shuffle=True)
    wall = time.perf_counter() - start
    history = {key: [float(v) for v in vals] for key, vals in hist.history.items()}
    history.pop("learning_rate", None)
    history["seconds"] = clock.times[:len(history.get("loss", []))]
    return TrainResult(history, wall, len(x) * len(history.get("loss", [])), replica_devices(model))


def fit_dataset(clf: Classifier | keras.Model, ds: Dataset, **kwargs) -> TrainResult:
    """:func:`fit` on a :class:`~tlkit.data.Dataset`'s train split, validated on its val split."""
    val = (ds.x_val, ds.y_val) if ds.x_val is not None else None
    return fit(clf, ds.x_train, ds.y_train, validation=val, num_classes=ds.num_classes, **kwargs)


def progressive_unfreeze(clf: Classifier, ds: Dataset, *, stages: tuple[int, ...] = (20, 60, 120),
                         epochs_per_stage: int = 2, lr: float = 1e-4, **kwargs) -> TrainResult:
    """Unfreeze more of the backbone stage by stage (last 20, 60, 120 layers...),
    halving the learning rate at each stage; recompiles every time."""
    result = TrainResult()
    for i, n in enumerate(stages):
        unfreeze(clf, last_n=n)
        result.extend(fit_dataset(clf, ds, epochs=epochs_per_stage, lr=lr / 2**i, **kwargs),
                      f"unfreeze{n}")
    return result
