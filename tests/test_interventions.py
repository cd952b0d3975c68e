"""Pairs of one scene without and with a class: a latent direction found from which samples
show the class (any generator, in z; StyleGAN2 in W)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_rewrite import RewriteError
from lightning_rewrite.engine.latents import LatentSampler
from lightning_rewrite.engine.interventions import LatentToggle, Toggled


class SquareWhenFirstCoordinateIsPositive(nn.Module):
    """A toy generator: a bright square when z₀ > 0, its brightness set by z₁; dark otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        img = -torch.ones(len(z), 3, 16, 16)
        on = (z[:, 0] > 0).float()[:, None, None]
        img[:, :, 4:12, 4:12] = (on * (0.5 + 0.1 * z[:, 1:2, None].tanh()) - (1 - on))[:, None] * self.scale
        return img


class Bright:
    """A stand-in segmenter: class 1 where the image is bright."""

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        return (images.mean(1) > 0).long()


def test_a_z_space_toggle_turns_the_class_off_and_on_in_every_sample():
    g = SquareWhenFirstCoordinateIsPositive()
    latents = LatentSampler(dim=8)
    toggle = LatentToggle.fit(g, Bright(), 1, latents, range(400))
    assert toggle.space == "z" and toggle.direction[0] > 0.9 and toggle.off < 0 < toggle.on
    z = latents.take(range(1000, 1100))
    off, on = Toggled(g, toggle, False)(z), Toggled(g, toggle, True)(z)
    shown = lambda images: (Bright().labels(images).flatten(1).sum(1) >= 10).float().mean().item()
    assert shown(off) == 0 and shown(on) == 1


def test_a_class_every_sample_shows_has_no_direction():
    with pytest.raises(RewriteError, match="400 of 400 samples show it"):
        LatentToggle.fit(SquareWhenFirstCoordinateIsPositive(), Bright(), 0, LatentSampler(dim=8), range(400))
