"""Real files from ../shared (real ImageNet weights, real flowers); skipped where absent.

A fresh clone has no ../shared, so every test here skips cleanly without it.
"""
from __future__ import annotations

import pytest

from conftest import SHARED
from tlkit.cli import main

WEIGHTS = SHARED / "weights"
FLOWERS = SHARED / "data" / "flowers5-small.tar.gz"
FILES = {
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5": ("mobilenetv2", 1.0),
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5": ("mobilenetv2", 0.35),
    "mobilenet_2_5_224_tf_no_top.h5": ("mobilenet", 0.25),
}


def need(path):
    if not path.exists():
        pytest.skip(f"{path} is absent (a fresh clone has no ../shared)")


def test_info_lists_shared_weights(capsys, no_local_keras):
    need(WEIGHTS)
    assert main(["info", "--weights-dir", str(WEIGHTS)]) == 0
    out = capsys.readouterr().out
    for name, (model, alpha) in FILES.items():
        assert f"{model} alpha {alpha}: {(WEIGHTS / name).resolve()}" in out


@pytest.mark.parametrize("name", list(FILES))
def test_shared_weights_load(name, no_local_keras):
    """Each file loads into its Keras model through the ordinary imagenet path."""
    need(WEIGHTS / name)
    from tlkit.models import build_backbone

    model, alpha = FILES[name]
    backbone, source = build_backbone(model, 96, "imagenet", alpha, WEIGHTS)
    assert source == f"imagenet:{(WEIGHTS / name).resolve()}"
    assert backbone.count_params() > 200_000


def test_shared_cifar10_is_found(no_local_keras):
    need(SHARED / "data" / "cifar10-jpg.tar.gz")
    from tlkit.data import find_local

    assert find_local("cifar10", SHARED / "data") == SHARED / "data" / "cifar10-jpg.tar.gz"
    assert find_local("cifar100", SHARED / "data") is None
    assert find_local("flowers", SHARED / "data") == FLOWERS


def test_imagenet_mobilenetv2_linear_probe_on_flowers(no_local_keras):
    """Real transfer: frozen MobileNetV2 1.0 ImageNet features and a linear head trained
    on 30 flowers a class beat 0.4 accuracy (twice chance; about 0.57 measured) on 5 classes (chance 0.2) at 96 px.

    Scored on 30 held-out flowers a class (150 images), so the estimate is not a coin flip.
    """
    need(WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
    need(FLOWERS)
    from tlkit.data import load_dataset
    from tlkit.evaluate import evaluate
    from tlkit.features import extract_features, fit_head
    from tlkit.train import set_seed

    ds = load_dataset(FLOWERS, limit_per_class=60, test_fraction=0.5, val_fraction=0,
                      image_size=128, seed=0)
    assert ds.num_classes == 5 and ds.counts() == {"train": [30] * 5, "test": [30] * 5}
    set_seed(0)
    feats = extract_features("mobilenetv2", ds, img_size=96, weights="imagenet",
                             weights_dir=WEIGHTS, flip_train=True)
    assert feats.weights_source.startswith("imagenet:")
    assert feats.weights_source.endswith("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
    head, _ = fit_head(feats, ds, epochs=30, lr=1e-3, batch_size=32, early_stopping=None)
    result = evaluate(head, ds, inputs=feats.splits)
    assert result["train"]["accuracy"] > 0.9
    assert result["test"]["accuracy"] > 0.4, result["test"]["accuracy"]
