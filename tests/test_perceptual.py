"""Perceptual distances for the all_weights baseline: LPIPS when its backbone file is present
(never downloaded), else LPIPS's construction over the world's segmenter features."""

from __future__ import annotations

import pytest

from lightning_rewrite import RewriteError
from lightning_rewrite.engine.perceptual import FeatureDistance, perceptual_distance, perceptual_name
from lightning_rewrite.worlds import get_world


@pytest.fixture(scope="module")
def church_renders():
    return get_world("churches").render(8, seed=3).images


def test_segmenter_features_distance_is_zero_on_equal_images_and_local_to_a_change(church_renders):
    d = FeatureDistance(get_world("churches").load_segmenter())
    x = church_renders
    assert d(x, x).abs().max().item() < 1e-6
    y = x.clone()
    y[:, :, 40:56, 4:20] = 1.0  # a white patch at the bottom left
    m = d(x, y)
    assert m.shape == (8, 1, 64, 64)
    inside, far = m[..., 40:56, 4:20].mean(), m[..., 0:16, 44:64].mean()
    assert inside > 20 * far


def test_the_distance_passes_gradients_to_the_image_not_to_the_segmenter(church_renders):
    segmenter = get_world("churches").load_segmenter()
    d = FeatureDistance(segmenter)
    x = church_renders.clone().requires_grad_(True)
    d(x, church_renders.flip(0)).mean().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is None for p in segmenter.parameters())
    d.train()
    assert not segmenter.training  # batch-norm statistics stay frozen inside a training module


def test_auto_falls_back_to_the_segmenter_without_an_lpips_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    segmenter = get_world("churches").load_segmenter()
    assert perceptual_name(perceptual_distance("auto", segmenter)) == "segmenter features"
    assert perceptual_distance("auto", None) is None and perceptual_distance("none", segmenter) is None
    with pytest.raises(RewriteError, match=r"hub/checkpoints/alexnet-owt-7be5be79.pth"):
        perceptual_distance("lpips", segmenter)
    with pytest.raises(RewriteError, match="choose one of auto, lpips, segmenter, none"):
        perceptual_distance("vgg16", segmenter)
