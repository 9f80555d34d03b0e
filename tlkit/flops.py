"""FLOPs of a Keras model's forward pass, counted from its layer shapes (backend-neutral)."""
from __future__ import annotations

import numpy as np


def forward_flops(model) -> int:
    """Multiply-adds ×2 of the convolutions and dense layers in one forward pass of one image.

    Counted from layer shapes (backend-neutral); normalisation and activations are left out.
    """
    from keras import layers as L

    total = 0
    for layer in _leaves(model):
        try:
            out = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if isinstance(layer, L.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            total += kh * kw * int(np.prod(out[1:]))
        elif isinstance(layer, L.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1] // getattr(layer, "groups", 1)
            total += kh * kw * cin * int(np.prod(out[1:]))
        elif isinstance(layer, L.Dense):
            total += layer.input.shape[-1] * int(np.prod(out[1:]))
    return 2 * int(total)


def _leaves(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaves(layer)
        else:
            yield layer
