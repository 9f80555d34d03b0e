"""The course's from-scratch CNNs: a fast airbench-style net and the earlier students' baseline.

The fast net follows the fast CIFAR-10 recipes (Page's ResNet-9 notes, Jordan's airbench):
a first layer fixed to whiten 2x2 patches of the training images, three blocks of
conv → max-pool → batch norm → GELU → conv → batch norm → GELU, global max pooling, and,
at test time, the average of the predictions for an image and its mirror image.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="tlkit")
class PatchWhitening(layers.Layer):
    """A fixed convolution that whitens ``size`` x ``size`` patches (ZCA-like, by PCA).

    ``adapt(images)`` sets the filters from the training images: each eigenvector of the
    patch covariance, scaled by 1/sqrt(eigenvalue), once as it is and once negated, so the
    next layer sees decorrelated inputs of equal variance. Until adapted the layer holds a
    plain random projection. Only the bias trains.
    """

    def __init__(self, size: int = 2, eps: float = 5e-4, **kwargs):
        super().__init__(**kwargs)
        self.size, self.eps = size, eps

    def build(self, input_shape):
        c = int(input_shape[-1])
        n = self.size * self.size * c
        self.kernel = self.add_weight(shape=(self.size, self.size, c, 2 * n), trainable=False,
                                      initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(2 * n,), initializer="zeros", name="bias")
        self.adapted = self.add_weight(shape=(), trainable=False, initializer="zeros",
                                       name="adapted")

    def adapt(self, images: np.ndarray) -> None:
        """Set the filters from float images (N, H, W, C) as this layer receives them."""
        x = np.asarray(images, np.float64)
        k, c = self.size, x.shape[-1]
        patches = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
        patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * c)
        cov = np.cov(patches, rowvar=False)
        eigval, eigvec = np.linalg.eigh(cov)
        filters = eigvec / np.sqrt(eigval + self.eps)  # columns: one filter each
        kernel = np.concatenate([filters, -filters], axis=1).reshape(k, k, c, -1)
        self.kernel.assign(kernel.astype("float32"))
        self.adapted.assign(1.0)

    def call(self, x):
        y = ops.conv(x, ops.cast(self.kernel, x.dtype), padding="valid")
        return y + ops.cast(self.bias, x.dtype)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "eps": self.eps}


def fast_cnn_body(input_shape: tuple, widths: Sequence[int] = (64, 128, 128),
                  name: str = "cnn") -> keras.Model:
    """The airbench-style course CNN: whitening, three conv blocks, global max pooling.

    Widths (64, 128, 128) cost about 0.1 GFLOP per 32-px image forward, so a 2-core CPU
    trains it on all of CIFAR-10 several times over in a quarter of an hour.
    """
    inputs = keras.Input(input_shape)
    x = PatchWhitening(name="whiten")(inputs)
    x = layers.Activation("gelu")(x)
    for i, w in enumerate(widths):
        x = layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv1")(x)
        x = layers.MaxPooling2D(name=f"block{i + 1}_pool")(x)
        x = layers.BatchNormalization(momentum=0.8, name=f"block{i + 1}_bn1")(x)
        x = layers.Activation("gelu")(x)
        x = layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv2")(x)
        x = layers.BatchNormalization(momentum=0.8, name=f"block{i + 1}_bn2")(x)
        x = layers.Activation("gelu")(x)
    x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=name)


def baseline_cnn_body(input_shape: tuple, name: str = "baseline_cnn") -> keras.Model:
    """The seed-style baseline of earlier student projects: two conv blocks (32, 64), Dense 512."""
    inputs = keras.Input(input_shape)
    x = inputs
    for f in (32, 64):
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu")(x)
    return keras.Model(inputs, x, name=name)


def _whitening_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, PatchWhitening):
            yield model, layer
        elif isinstance(layer, keras.Model):
            yield from _whitening_layers(layer)


def adapt(model: keras.Model, x: np.ndarray, max_images: int = 5000, seed: int = 0) -> bool:
    """Fit every not yet adapted :class:`PatchWhitening` layer of ``model`` to images ``x``
    (uint8, as the model takes them); returns True when a layer was adapted.

    The layer sees the images after the classifier's own preprocessing, so a sample is run
    through the model up to the backbone's input (the ``preprocess`` layer) first.
    :func:`tlkit.train.fit` calls this before it trains.
    """
    todo = [(owner, layer) for owner, layer in _whitening_layers(model)
            if float(ops.convert_to_numpy(layer.adapted)) == 0.0]
    if not todo:
        return False
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), min(max_images, len(x)), replace=False)]
    try:
        # a classifier holds its preprocessing in its "extractor" half (models.build_extractor)
        owner = next((lyr for lyr in model.layers if lyr.name == "extractor"), model)
        pre = keras.Model(owner.inputs, owner.get_layer("preprocess").output)
        sample = np.asarray(pre.predict(sample, batch_size=500, verbose=0))
    except ValueError:  # the bare body: it takes the images as they are
        sample = sample.astype("float32")
    for _, layer in todo:
        layer.adapt(sample)
    return True


@keras.saving.register_keras_serializable(package="tlkit")
class HorizontalFlip(layers.Layer):
    """Mirror images left to right (a fixed, not random, flip)."""

    def call(self, x):
        return ops.flip(x, axis=2)


def with_flip_tta(model: keras.Model) -> keras.Model:
    """A model that averages ``model``'s predictions for each image and its mirror image."""
    inputs = keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype)
    mirrored = HorizontalFlip(name="mirror")(inputs)
    outputs = layers.Average(name="tta")([model(inputs), model(mirrored)])
    return keras.Model(inputs, outputs, name=f"{model.name}_tta")
