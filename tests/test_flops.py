"""tlkit.flops.forward_flops against hand counts and published figures (FLOPs = 2 × multiply-adds)."""
from __future__ import annotations

import keras
import pytest

from tlkit.flops import forward_flops
from tlkit.models import build_classifier


def _model(input_shape, *layers):
    inputs = keras.Input(input_shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


@pytest.mark.backends
def test_dense():
    # 20 inputs x 10 units; the bias add is not a multiply-add
    assert forward_flops(_model((20,), keras.layers.Dense(10))) == 2 * 20 * 10


@pytest.mark.backends
def test_conv2d_same_and_strided():
    # 3x3 kernel x 4 input channels per output value; 16x16x8 outputs
    assert forward_flops(_model((16, 16, 4), keras.layers.Conv2D(8, 3, padding="same"))) == \
        2 * 3 * 3 * 4 * 16 * 16 * 8
    # stride 2, valid padding: (16 - 3) // 2 + 1 = 7 outputs a side
    assert forward_flops(_model((16, 16, 4), keras.layers.Conv2D(8, 3, strides=2))) == \
        2 * 3 * 3 * 4 * 7 * 7 * 8
    # grouped: each output channel sees 4 / 2 input channels
    assert forward_flops(_model((16, 16, 4), keras.layers.Conv2D(8, 1, groups=2))) == \
        2 * 1 * 1 * 2 * 16 * 16 * 8


@pytest.mark.backends
def test_depthwise_conv2d():
    # each of the 4 x 2 output channels: a 3x3 kernel on one input channel
    assert forward_flops(_model((16, 16, 4), keras.layers.DepthwiseConv2D(3, padding="same",
                                                                         depth_multiplier=2))) == \
        2 * 3 * 3 * 16 * 16 * 4 * 2


def test_layers_without_multiply_adds_count_nothing():
    m = _model((8, 8, 3), keras.layers.BatchNormalization(), keras.layers.ReLU(),
               keras.layers.MaxPooling2D(), keras.layers.GlobalAveragePooling2D())
    assert forward_flops(m) == 0


@pytest.mark.parametrize("ctor, kwargs, published_macs", [
    # He et al. 2016 (table 1): 3.8e9 multiply-adds for ResNet-50 (Keras's v1 net: 3.86e9;
    # the 4.1e9 often quoted is torchvision's v1.5, stride on the 3x3 conv), FC included
    ("ResNet50", {}, 3.8e9),
    # Sandler et al. 2018 (table 3): MobileNetV2 1.0 at 224 px, 300M multiply-adds
    ("MobileNetV2", {"alpha": 1.0}, 300e6),
])
def test_keras_applications_match_published_counts(ctor, kwargs, published_macs):
    model = getattr(keras.applications, ctor)(weights=None, input_shape=(224, 224, 3), **kwargs)
    assert forward_flops(model) == pytest.approx(2 * published_macs, rel=0.10)


@pytest.mark.backends
def test_classifier_counts_backbone_and_head():
    """Nested models (extractor, backbone, head) are walked: the classifier costs its
    backbone plus the head's dense layer."""
    clf = build_classifier("mobilenetv2", 5, input_shape=(32, 32, 3), img_size=96, alpha=0.35,
                           weights="none")
    backbone = forward_flops(clf.backbone)
    assert backbone > 0
    assert forward_flops(clf.model) == backbone + 2 * 1280 * 5
