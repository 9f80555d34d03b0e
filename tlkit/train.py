"""Training: seeds, device setup, compile, fit, and the two-phase transfer recipe."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from tlkit.cnn import adapt
from tlkit.data import Dataset, class_weights
from tlkit.models import Classifier, freeze_backbone, unfreeze
from tlkit.system import accelerators, cpu_bf16, device_scope  # device_scope: also train's API


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and the backend; on TensorFlow also make ops deterministic,
    so the same seed on a CPU gives the same metrics."""
    keras.utils.set_random_seed(seed)
    if deterministic and keras.config.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


# Models whose training runs faster in mixed bfloat16 on a CPU with native bfloat16
# (AVX512-BF16 or AMX), as `tlkit bench` measures in its kernels part: dense convolutions
# gain, depthwise ones (the MobileNets) do not, and an emulated bfloat16 is much slower.
CPU_BF16_MODELS = ("cnn",)


def configure_precision(policy: str = "auto", model: str | None = None) -> str:
    """Set Keras's global precision policy and return it.

    ``auto``: on a GPU, mixed bfloat16 where supported, else mixed float16 (Keras adds loss
    scaling); on a CPU, mixed bfloat16 for ``model`` in :data:`CPU_BF16_MODELS` when the CPU
    computes bfloat16 natively, else float32.
    """
    if policy == "auto":
        policy = "float32"
        if accelerators():
            policy = "mixed_bfloat16" if _supports_bf16() else "mixed_float16"
        elif model in CPU_BF16_MODELS and cpu_bf16() and keras.config.backend() == "tensorflow":
            policy = "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def _supports_bf16() -> bool:
    backend = keras.config.backend()
    try:
        if backend == "torch":
            import torch

            return bool(torch.cuda.is_bf16_supported())
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
            return cc[0] >= 8
    except (ImportError, IndexError, RuntimeError):
        return False
    return True  # JAX on GPU/TPU: bfloat16 is native on current hardware


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


def fit(model: keras.Model | Classifier, x: np.ndarray, y: np.ndarray, *,
        validation: tuple[np.ndarray, np.ndarray] | None = None, num_classes: int | None = None,
        epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, schedule: str = "cosine",
        weight_decay: float = 1e-4, label_smoothing: float = 0.0,
        class_weight: str | dict | None = None, early_stopping: int | None = None,
        tensorboard: str | Path | None = None, verbose: int | str = "auto",
        compile: bool = True) -> TrainResult:
    """Compile and fit on arrays; returns history, wall time and images/s.

    ``class_weight="balanced"`` weighs classes by inverse frequency; ``early_stopping=P``
    stops after P epochs without a better validation loss and restores the best weights.
    """
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


def two_phase(clf: Classifier, ds: Dataset, *, head_epochs: int = 5, finetune_epochs: int = 5,
              lr: float = 1e-3, finetune_lr: float | None = None, unfreeze_last: int | None = 30,
              from_layer: str | None = None, **kwargs) -> TrainResult:
    """Train the head on the frozen backbone, then unfreeze the top and fine-tune at
    ``finetune_lr`` (default ``lr / 10``); BatchNormalization stays in inference mode."""
    freeze_backbone(clf)
    result = TrainResult()
    result.extend(fit_dataset(clf, ds, epochs=head_epochs, lr=lr, **kwargs), "head")
    if finetune_epochs > 0:
        unfreeze(clf, last_n=unfreeze_last, from_layer=from_layer)
        result.extend(fit_dataset(clf, ds, epochs=finetune_epochs,
                                  lr=finetune_lr or lr / 10, **kwargs), "finetune")
    return result


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
