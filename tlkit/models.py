"""Models: one registry from a name to how to build, preprocess and load weights.

``build_classifier("mobilenetv2", 10, input_shape=(32, 32, 3), img_size=160)`` returns
one Keras model made of two halves: uint8 images at native size → float → augmentation
(training only) → the *extractor* (resizing → the backbone's own preprocessing → backbone →
pooling) → the *head* (standardize → dropout → softmax). The frozen-feature cache
(``tlkit.features``) uses the same extractor and trains the same head.
"""
from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
from keras import layers, ops

from tlkit import TlkitError
from tlkit.cnn import baseline_cnn_body, fast_cnn_body
from tlkit.system import announce_only_real_downloads, device_scope, download_timeout


class ModelError(TlkitError):
    """A model could not be built; the message says how to fix it."""


def _outside_scope(model: keras.Model) -> bool:
    """Whether ``model``'s variables were made outside the TensorFlow distribution strategy in
    force (they could not be trained in it); on JAX the distribution is global: nothing to check."""
    if keras.config.backend() != "tensorflow":
        return False
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    return strategy.num_replicas_in_sync > 1 and not all(
        strategy.extended.variable_created_in_scope(w.value) for w in model.weights)


def _in_device_scope(build: Callable) -> Callable:
    """Run a model builder inside :func:`tlkit.system.device_scope`: on several devices
    (GPUs, ``$TLKIT_DEVICES``) its variables are made data-parallel, as training needs."""
    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        with device_scope():
            return build(*args, **kwargs)
    return wrapper


# --------------------------------------------------------------------------- layers

@keras.saving.register_keras_serializable(package="tlkit")
class ToFloat(layers.Layer):
    """Cast uint8 images to float32 (0-255)."""

    def call(self, x):
        return ops.cast(x, "float32")


@keras.saving.register_keras_serializable(package="tlkit")
class Preprocess(layers.Layer):
    """A backbone's input preprocessing on 0-255 RGB floats.

    Modes: ``tf`` (to [-1, 1]), ``caffe`` (BGR minus ImageNet means), ``unit``
    (to [0, 1]) and ``none`` (the backbone preprocesses itself).
    """

    MEANS_BGR = (103.939, 116.779, 123.68)

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("tf", "caffe", "unit", "none"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(self.MEANS_BGR, dtype=x.dtype)
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


# --------------------------------------------------------------------------- registry

def _mnv2_files(alpha: float, size: int) -> list[str]:
    sizes = sorted((96, 128, 160, 192, 224), key=lambda s: (s != size, abs(s - size)))
    return [f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{s}_no_top.h5" for s in sizes]


def _mnv1_files(alpha: float, size: int) -> list[str]:
    a = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]
    sizes = sorted((128, 160, 192, 224), key=lambda s: (s != size, abs(s - size)))
    return [f"mobilenet_{a}_{s}_tf_no_top.h5" for s in sizes]


KERAS_TABLE = ("Keras Applications table, https://keras.io/api/applications/ ('Top-1 Accuracy', "
               "'Parameters'; ImageNet validation, single centre crop, 1000-class top included)")


@dataclass(frozen=True)
class Published:
    """Published ImageNet facts of one model at one width, with their source.

    ``top1`` is the ImageNet top-1 accuracy (a fraction) at input ``size``; ``params_m``
    the parameter count in millions as published (with the 1000-class top); ``None``
    where the source gives no figure.
    """

    top1: float | None
    params_m: float | None
    size: int
    source: str
    alpha: float | None = None


@dataclass(frozen=True)
class ModelConfig:
    """A backbone's settings with the registry's defaults filled in, once (like timm's
    ``pretrained_cfg``): width multiplier (``None`` for a model without widths), input size
    and preprocessing mode. Made by :meth:`ModelSpec.config`."""

    name: str
    alpha: float | None
    img_size: int
    preprocess: str


@dataclass(frozen=True)
class ModelSpec:
    """How to build one backbone: Keras constructor, input size, preprocessing, weights."""

    name: str
    build: Callable[..., keras.Model]
    default_size: int
    preprocess: str
    weight_files: Callable[[float | None, int], list[str]] | None = None
    alphas: tuple[float, ...] = ()
    pooling: bool = True
    paper: str = ""
    min_size: int = 32
    published: tuple[Published, ...] = ()

    @property
    def pretrained(self) -> bool:
        return self.weight_files is not None

    def config(self, alpha: float | None = None, img_size: int | None = None) -> ModelConfig:
        """The settings of this backbone at ``alpha`` (default: full width, 1.0, for a model
        with widths) and ``img_size`` (default: its own input size); others are refused."""
        size = self.default_size if img_size is None else img_size
        if size < self.min_size:
            raise ModelError(f"{self.name} needs images of at least {self.min_size} px, not {size}")
        if alpha is not None and alpha not in self.alphas:
            raise ModelError(f"{self.name} takes alpha in {self.alphas or 'nothing'}, not {alpha}")
        if alpha is None and self.alphas:
            alpha = 1.0
        return ModelConfig(self.name, alpha, size, self.preprocess)

    def facts(self, alpha: float | None = None) -> Published | None:
        """The published ImageNet facts at width ``alpha`` (default: the full width), if any."""
        alpha = self.config(alpha).alpha
        return next((p for p in self.published if p.alpha == alpha), None)


def _app(ctor_name: str, **fixed) -> Callable[..., keras.Model]:
    def build(input_shape, weights=None, alpha=None):
        ctor = getattr(keras.applications, ctor_name)
        kwargs = dict(include_top=False, weights=weights, input_shape=input_shape, **fixed)
        if alpha is not None:
            kwargs["alpha"] = alpha
        return ctor(**kwargs)
    return build


def _fixed(names: list[str]) -> Callable[[float | None, int], list[str]]:
    return lambda alpha, size: list(names)


KERAS_V3 = ("Keras MobileNetV3Large documentation, https://www.tensorflow.org/api_docs/python/tf/keras/"
            "applications/MobileNetV3Large (table row mobilenet_v3_large_1.0_224: Top1 Accuracy, "
            "Parameters(M)); Howard et al. 2019, arXiv:1905.02244 (the TF-slim table lists 75.2%)")
KERAS_MNV2 = (KERAS_TABLE + "; the TF-slim table lists 71.8% and 3.47M for mobilenet_v2_1.0_224, the "
              "checkpoint the offline file in shared/weights was converted from")
TF_SLIM_V2 = ("TF-slim MobileNetV2 checkpoint table, https://github.com/tensorflow/models/blob/master/"
              "research/slim/nets/mobilenet/README.md (mobilenet_v2_0.35_224: Top 1 Accuracy, "
              "Parameters (M)); Sandler et al. 2018, arXiv:1801.04381")
TF_SLIM_V1 = ("TF-slim MobileNet v1 table, https://github.com/tensorflow/models/blob/master/research/"
              "slim/nets/mobilenet_v1.md (MobileNet_v1_0.25_224, 2018-02-22 checkpoints: Top-1 "
              "Accuracy, Million Parameters, with top); Keras's file was saved with Keras 2.0.4 (2017), "
              "so it comes from an earlier release of these checkpoints, whose top-1 may differ "
              "slightly")

REGISTRY: dict[str, ModelSpec] = {
    s.name: s for s in [
        ModelSpec("cnn", lambda input_shape, weights=None, alpha=None: fast_cnn_body(input_shape),
                  32, "unit", pooling=False, paper="this course, after airbench"),
        ModelSpec("baseline_cnn", lambda input_shape, weights=None, alpha=None:
                  baseline_cnn_body(input_shape), 32, "unit", pooling=False,
                  paper="seed-style student baseline"),
        ModelSpec("resnet50", _app("ResNet50"), 224, "caffe",
                  _fixed(["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"]), paper="he2016deep",
                  published=(Published(0.749, 25.6, 224, KERAS_TABLE),)),
        ModelSpec("resnet101", _app("ResNet101"), 224, "caffe",
                  _fixed(["resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5"]), paper="he2016deep",
                  published=(Published(0.764, 44.7, 224, KERAS_TABLE),)),
        ModelSpec("resnet152", _app("ResNet152"), 224, "caffe",
                  _fixed(["resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5"]), paper="he2016deep",
                  published=(Published(0.766, 60.4, 224, KERAS_TABLE),)),
        ModelSpec("vgg16", _app("VGG16"), 224, "caffe",
                  _fixed(["vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"]), paper="simonyan2015very",
                  published=(Published(0.713, 138.4, 224, KERAS_TABLE),)),
        ModelSpec("vgg19", _app("VGG19"), 224, "caffe",
                  _fixed(["vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"]), paper="simonyan2015very",
                  published=(Published(0.713, 143.7, 224, KERAS_TABLE),)),
        ModelSpec("efficientnetb0", _app("EfficientNetB0"), 224, "none",
                  _fixed(["efficientnetb0_notop.h5"]), paper="tan2019efficientnet",
                  published=(Published(0.771, 5.3, 224, KERAS_TABLE),)),
        ModelSpec("efficientnetb3", _app("EfficientNetB3"), 300, "none",
                  _fixed(["efficientnetb3_notop.h5"]), paper="tan2019efficientnet",
                  published=(Published(0.816, 12.3, 300, KERAS_TABLE),)),
        ModelSpec("mobilenetv2", _app("MobileNetV2"), 224, "tf", _mnv2_files,
                  alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4), paper="sandler2018mobilenetv2",
                  published=(Published(0.713, 3.5, 224, KERAS_MNV2, 1.0),
                             Published(0.603, 1.66, 224, TF_SLIM_V2, 0.35))),
        ModelSpec("mobilenetv3large", _app("MobileNetV3Large", include_preprocessing=True), 224,
                  "none", lambda alpha, size: [
                      f"weights_mobilenet_v3_large_224_{alpha or 1.0}_float_no_top_v2.h5"],
                  alphas=(0.75, 1.0), paper="howard2019searching",
                  published=(Published(0.756, 5.4, 224, KERAS_V3, 1.0),)),
        ModelSpec("mobilenet", _app("MobileNet"), 224, "tf", _mnv1_files,
                  alphas=(0.25, 0.5, 0.75, 1.0), paper="howard2017mobilenets",
                  published=(Published(0.704, 4.3, 224, KERAS_TABLE, 1.0),
                             Published(0.498, 0.47, 224, TF_SLIM_V1, 0.25))),
    ]
}


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; an unknown name lists the valid ones."""
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        raise ModelError(f"unknown model '{name}'; valid names: {', '.join(REGISTRY)}") from None


# --------------------------------------------------------------------------- weights

def weights_dirs(weights_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for ImageNet weight files: the argument, $TLKIT_WEIGHTS_DIR, Keras's cache."""
    keras_home = os.environ.get("KERAS_HOME", str(Path.home() / ".keras"))
    dirs = [weights_dir, os.environ.get("TLKIT_WEIGHTS_DIR"), Path(keras_home) / "models"]
    return [Path(d).expanduser() for d in dirs if d]


def find_weights(name: str, alpha: float | None = None, img_size: int | None = None,
                 weights_dir: str | Path | None = None) -> Path | None:
    """A local ImageNet weights file for a model under Keras's own file name, if any."""
    spec = get_spec(name)
    if not spec.pretrained:
        return None
    cfg = spec.config(alpha, img_size)
    for d in weights_dirs(weights_dir):
        for fname in spec.weight_files(cfg.alpha, cfg.img_size):
            if (d / fname).is_file():
                return (d / fname).resolve()
    return None


def resolve_weights(name: str, weights: str | Path | None, alpha: float | None = None,
                    img_size: int | None = None, weights_dir: str | Path | None = None
                    ) -> tuple[str | None, str]:
    """Turn ``imagenet`` / ``none`` / a path into (argument for Keras, weights source).

    ``imagenet`` is looked up locally first (see :func:`weights_dirs`); only when no file
    is found does Keras download it (source ``imagenet:download``).
    """
    spec = get_spec(name)
    w = "auto" if weights is None else str(weights)
    if w == "auto":
        w = "imagenet" if spec.pretrained else "none"
    if w.lower() in ("none", "random", "scratch"):
        return None, "random"
    if w.lower() == "imagenet":
        if not spec.pretrained:
            raise ModelError(f"'{name}' is trained from scratch and has no ImageNet weights; "
                             "use --weights none")
        local = find_weights(name, alpha, img_size, weights_dir)
        return (str(local), f"imagenet:{local}") if local else ("imagenet", "imagenet:download")
    path = Path(w).expanduser()
    if not path.is_file():
        raise ModelError(f"weights '{w}' are neither imagenet, none, nor an existing file")
    return str(path.resolve()), f"file:{path.resolve()}"


def build_backbone(name: str, img_size: int | None = None, weights: str | Path | None = None,
                   alpha: float | None = None, weights_dir: str | Path | None = None
                   ) -> tuple[keras.Model, str]:
    """Build a registry backbone (no top) at ``img_size``; returns (model, weights source)."""
    spec = get_spec(name)
    cfg = spec.config(alpha, img_size)
    alpha, size = cfg.alpha, cfg.img_size
    arg, source = resolve_weights(name, weights, alpha, size, weights_dir)
    try:
        # any size is deliberate here (Keras warns for non-224); a download that hangs times out,
        # and one that fails (offline) prints no "Downloading data from" line
        with warnings.catch_warnings(), download_timeout(), announce_only_real_downloads():
            warnings.filterwarnings("ignore", message=".*input_shape.*", category=UserWarning)
            backbone = spec.build((size, size, 3), weights=arg, alpha=alpha)
        if arg is not None and not spec.pretrained:  # a from-scratch body given a weights file
            backbone.load_weights(arg)
    except Exception as e:  # Keras raises plain Exception for failed downloads
        if source == "imagenet:download":
            dirs = ", ".join(str(d) for d in weights_dirs(weights_dir))
            files = ", ".join(spec.weight_files(alpha, size)[:1])
            raise ModelError(f"no local ImageNet weights for {name} (looked for {files} in {dirs}) "
                             "and the download failed: pass --weights-dir DIR with that file, "
                             "or --weights none to train from scratch") from e
        if source.startswith(("imagenet:", "file:")):
            raise ModelError(f"could not load weights {arg} into {name}: {e}") from e
        raise
    backbone.name = "backbone"
    return backbone, source


# --------------------------------------------------------------------------- classifier

AUGMENTATIONS = {  # name → a layer factory; the layer is named "augment_<name>"
    "flip": lambda name: layers.RandomFlip("horizontal", name=name),
    "translate": lambda name: layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", name=name),
    "rotate": lambda name: layers.RandomRotation(0.05, fill_mode="reflect", name=name),
    "zoom": lambda name: layers.RandomZoom(0.1, fill_mode="reflect", name=name),
    "contrast": lambda name: layers.RandomContrast(0.1, name=name),
}
DEFAULT_AUGMENT = ("flip", "translate")


@keras.saving.register_keras_serializable(package="tlkit")
class Standardize(layers.Layer):
    """(x − mean) / std with fixed statistics of the training features, in float32.

    Random backbones give features of wildly different scales (1e-11 for a random
    MobileNetV2); standardizing makes one learning rate work for every backbone.
    """

    def __init__(self, mean, std, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.mean_values = [float(v) for v in np.asarray(mean).ravel()]
        self.std_values = [float(v) for v in np.asarray(std).ravel()]

    def build(self, input_shape):
        self.mean = self.add_weight(shape=(len(self.mean_values),), trainable=False, name="mean",
                                    initializer=keras.initializers.Constant(self.mean_values))
        self.std = self.add_weight(shape=(len(self.std_values),), trainable=False, name="std",
                                   initializer=keras.initializers.Constant(self.std_values))

    def call(self, x):
        return (x - self.mean) / self.std

    def get_config(self):
        return {**super().get_config(), "mean": self.mean_values, "std": self.std_values}


@_in_device_scope
def build_extractor(base: str, input_shape: tuple[int, int, int] = (32, 32, 3),
                    img_size: int | None = None, weights: str | Path | None = None,
                    alpha: float | None = None, weights_dir: str | Path | None = None,
                    taps: Sequence[str] = ()) -> tuple[keras.Model, str]:
    """The classifier's first half: 0-255 RGB images (uint8 arrays are cast exactly) →
    resize → the backbone's preprocessing → backbone → pooled features.

    ``taps`` names inner backbone layers whose pooled outputs come first in the features,
    before the last layer's (e.g. ``block_13_expand_relu`` of MobileNetV2: less ImageNet-
    specific than the last layer, and free, since the same forward pass computes it).
    Returns (extractor, weights source). The backbone is the extractor's layer ``backbone``;
    a pretrained one is called with ``training=False`` (BatchNormalization in inference mode).
    """
    spec = get_spec(base)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ModelError(f"input_shape must be (height, width, 3) for RGB images, not {input_shape}")
    cfg = spec.config(alpha, img_size)
    size = cfg.img_size
    backbone, source = build_backbone(base, size, weights, cfg.alpha, weights_dir)
    taps = list(taps)
    if taps:
        backbone = _tapped(backbone, spec, taps)
    inputs = keras.Input(input_shape, dtype="float32", name="image")
    x = inputs
    if tuple(input_shape[:2]) != (size, size):
        x = layers.Resizing(size, size, name="resize")(x)
    x = Preprocess(cfg.preprocess, name="preprocess")(x)
    x = backbone(x, training=False) if source != "random" else backbone(x)
    if taps:
        pooled = [layers.GlobalAveragePooling2D(name=f"pool_{t}")(o) for t, o in zip(taps, x[:-1])]
        x = layers.Concatenate(name="features")([*pooled, layers.GlobalAveragePooling2D(name="pool")(x[-1])])
    elif spec.pooling:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="extractor"), source


def _tapped(backbone: keras.Model, spec: ModelSpec, taps: list[str]) -> keras.Model:
    """The backbone with the outputs of layers ``taps`` beside its own last output (the same
    layers and weights)."""
    if not spec.pooling:
        raise ModelError(f"{spec.name} has no pooled features to add taps to")
    names = [lyr.name for lyr in backbone.layers]
    missing = [t for t in taps if t not in names]
    if missing:
        inner = [n for n in names if n.endswith("_relu")][-6:] or names[-6:]
        raise ModelError(f"{spec.name} has no layer '{missing[0]}' to read features from; "
                         f"e.g. {', '.join(inner)}")
    if len(set(taps)) < len(taps):
        raise ModelError(f"taps {taps} name a layer twice")
    outputs = [backbone.get_layer(t).output for t in taps] + [backbone.output]
    return keras.Model(backbone.input, outputs, name="backbone")


@_in_device_scope
def head_model(dim: int, num_classes: int, dropout: float = 0.2, mean: np.ndarray | None = None,
               std: np.ndarray | None = None) -> keras.Model:
    """The classifier's second half: pooled features → (standardize) → dropout → softmax.

    ``mean`` and ``std`` (both or neither) are the training features' statistics.
    """
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, not {num_classes}")
    inputs = keras.Input((dim,), name="features")
    x = inputs
    if mean is not None and std is not None:
        x = Standardize(mean, std, name="standardize")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="classes")(x)
    return keras.Model(inputs, outputs, name="head")


@dataclass
class Classifier:
    """A built classifier, ``model(image) = head(extractor(augment(image)))``, and its parts.

    Augmentation acts in training only; ``extractor`` and ``head`` are the same layers the
    model uses, so a head trained on the extractor's cached features is the model's head.
    """

    model: keras.Model
    extractor: keras.Model
    head: keras.Model
    base: str
    weights_source: str
    img_size: int
    num_classes: int
    alpha: float | None = None
    augment: tuple[str, ...] = field(default_factory=tuple)
    taps: tuple[str, ...] = ()

    @property
    def backbone(self) -> keras.Model:
        return self.extractor.get_layer("backbone")

    @property
    def transfer(self) -> bool:
        """True when the backbone starts from pretrained weights."""
        return self.weights_source != "random"

    def info(self) -> dict:
        """What a run record stores about the model."""
        return {"base": self.base, "alpha": self.alpha, "img_size": self.img_size,
                "num_classes": self.num_classes, "augment": list(self.augment), "taps": list(self.taps),
                "weights_source": self.weights_source, "params": self.model.count_params(),
                "backbone_params": self.backbone.count_params(),
                "backbone_trainable_params": count_trainable(self.backbone),
                "trainable_params": count_trainable(self.model)}


@_in_device_scope
def build_classifier(base: str, num_classes: int, *, input_shape: tuple[int, int, int] = (32, 32, 3),
                     img_size: int | None = None, weights: str | Path | None = None,
                     alpha: float | None = None, weights_dir: str | Path | None = None,
                     augment: bool | Sequence[str] | None = None, dropout: float = 0.2,
                     freeze: bool | None = None, head: keras.Model | None = None,
                     taps: Sequence[str] = ()) -> Classifier:
    """Build the course's classifier around a registry backbone.

    uint8 images → float → augmentation (training only) → :func:`build_extractor` →
    :func:`head_model` (or ``head``, e.g. one trained on cached features by
    ``features.fit_head``: it is used as it is). ``weights`` is ``imagenet``, ``none`` or a
    file path (default: imagenet for pretrained backbones, none for the from-scratch CNNs).
    ``freeze`` defaults to True for a pretrained backbone; ``taps``: inner layers whose
    pooled features join the last layer's (:func:`build_extractor`).
    """
    spec = get_spec(base)
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, not {num_classes}")
    aug = tuple(DEFAULT_AUGMENT if augment is True else (augment or ()))
    unknown = [a for a in aug if a not in AUGMENTATIONS]
    if unknown:
        raise ModelError(f"unknown augmentation(s) {unknown}; choose from {list(AUGMENTATIONS)}")
    cfg = spec.config(alpha, img_size)
    alpha, size = cfg.alpha, cfg.img_size
    extractor, source = build_extractor(base, input_shape, size, weights, alpha, weights_dir, taps)
    dim = int(extractor.output_shape[-1])
    if head is None:
        head = head_model(dim, num_classes, dropout)
    elif tuple(head.input_shape[1:]) != (dim,) or head.output_shape[-1] != num_classes:
        raise ModelError(f"the head maps {tuple(head.input_shape[1:])} features to "
                         f"{head.output_shape[-1]} classes; {base} at {size} px gives ({dim},) "
                         f"features and the data has {num_classes} classes")
    elif _outside_scope(head):
        raise ModelError("the head was made outside the device scope that trains on several devices: "
                         "make it (or copy it, keras.models.clone_model) inside "
                         "`with train.device_scope():`")

    inputs = keras.Input(input_shape, dtype="uint8", name="image")
    x = ToFloat(name="to_float")(inputs)
    for a in aug:
        layer = AUGMENTATIONS[a](f"augment_{a}")
        # Keras marks translate and zoom un-jittable for TensorFlow's image ops; on JAX they are
        # jax.numpy, and a train step that is not jitted runs op by op (on several devices, its
        # collectives stall)
        layer.supports_jit = layer.supports_jit or keras.config.backend() == "jax"
        x = layer(x)
    model = keras.Model(inputs, head(extractor(x)), name=f"{base}_classifier")
    clf = Classifier(model, extractor, head, spec.name, source, size, num_classes, alpha, aug, tuple(taps))
    if freeze if freeze is not None else clf.transfer:
        freeze_backbone(clf)
    return clf


def _float32_policies(config):
    """A serialized model with every mixed precision policy (``mixed_float16``,
    ``mixed_bfloat16``) replaced by ``float32``."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and config["config"]["name"].startswith("mixed_"):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: _float32_policies(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_policies(v) for v in config]
    return config


def float32_model(model: keras.Model) -> keras.Model:
    """``model`` computing in float32 with the same weights: a model built under a mixed
    precision policy keeps it in every layer (a copy is rebuilt from its config); a float32
    model is returned as it is. Its variables are float32 in either case."""
    config = keras.saving.serialize_keras_object(model)
    float32 = _float32_policies(config)
    if float32 == config:
        return model
    copy = keras.saving.deserialize_keras_object(float32)
    copy.set_weights(model.get_weights())
    return copy


def inference_model(model: keras.Model) -> keras.Model:
    """A classifier as exporters need it, with the same weights: computing in float32
    (:func:`float32_model`; tf2onnx cannot convert bfloat16) and without its training-only
    augmentation layers (random layers do not convert): image → float → extractor → head.
    Other float32 models are returned as they are."""
    model = float32_model(model)
    names = [lyr.name for lyr in model.layers]
    if not ("extractor" in names and "head" in names and any(n.startswith("augment_") for n in names)):
        return model
    inputs = keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype, name="image")
    x = model.get_layer("extractor")(model.get_layer("to_float")(inputs))
    return keras.Model(inputs, model.get_layer("head")(x), name=model.name)


# --------------------------------------------------------------------------- freezing

def count_trainable(model: keras.Model) -> int:
    return int(sum(int(ops.size(w)) for w in model.trainable_weights))


def param_report(model: keras.Model) -> str:
    """One line: trainable and non-trainable parameter counts."""
    t = count_trainable(model)
    return f"{model.name}: {t:,} trainable / {model.count_params() - t:,} non-trainable parameters"


def freeze_backbone(clf: Classifier) -> None:
    """Freeze the whole backbone (recompile the model afterwards)."""
    clf.backbone.trainable = False


def unfreeze(clf: Classifier, last_n: int | None = None, from_layer: str | None = None) -> int:
    """Unfreeze the last ``last_n`` backbone layers, or all from the first layer whose name
    starts with ``from_layer``; BatchNormalization layers stay frozen. Returns how many
    layers are now trainable. Recompile the model afterwards.
    """
    lyrs = clf.backbone.layers
    if from_layer is not None:
        starts = [i for i, lyr in enumerate(lyrs) if lyr.name.startswith(from_layer)]
        if not starts:
            raise ModelError(f"{clf.base} has no layer named '{from_layer}*'; e.g. "
                             f"{', '.join(l.name for l in lyrs[-40::10])}")
        cut = starts[0]
    elif last_n is not None:
        cut = max(len(lyrs) - last_n, 0)
    else:
        cut = 0
    clf.backbone.trainable = True
    n = 0
    for i, lyr in enumerate(lyrs):
        lyr.trainable = i >= cut and not isinstance(lyr, layers.BatchNormalization)
        n += lyr.trainable and bool(lyr.weights)
    return n


def known_weight_files() -> dict[str, tuple[str, float | None]]:
    """Every ImageNet weights file name Keras uses for a registry model → (model, alpha)."""
    out: dict[str, tuple[str, float | None]] = {}
    for spec in REGISTRY.values():
        if not spec.pretrained:
            continue
        for alpha in spec.alphas or (None,):
            for size in (96, 128, 160, 192, 224):
                try:
                    names = spec.weight_files(alpha, size)
                except KeyError:
                    continue
                for fname in names:
                    out.setdefault(fname, (spec.name, alpha))
    return out


def local_weights(weights_dir: str | Path | None = None) -> list[dict]:
    """The ImageNet weight files found locally, with the model each one belongs to."""
    known = known_weight_files()
    found = []
    for d in weights_dirs(weights_dir):
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.name in known:
                    model, alpha = known[p.name]
                    found.append({"model": model, "alpha": alpha, "path": str(p.resolve()),
                                  "mb": round(p.stat().st_size / 2**20, 1)})
    return found


def weights_unavailable(name: str, weights: str | Path | None, alpha: float | None = None,
                        img_size: int | None = None, weights_dir: str | Path | None = None) -> bool:
    """True when ImageNet weights are asked for and no local file holds them, so only a
    download could bring them: a failed build then means 'not available offline'."""
    return resolve_weights(name, weights, alpha, img_size, weights_dir)[1] == "imagenet:download"
