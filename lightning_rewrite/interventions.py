"""Pairs of samples that differ in one thing: a latent direction that turns a class on or off
(the mean latent of samples that show it minus that of samples that do not, in StyleGAN's W
space when the generator has one, else in z). Setting each latent's coordinate along it to the
two groups' mean levels gives two images of the same scene, without and with the class — how
Sect. 5.3 adds windows to a kitchen to see whether reflections follow."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .data import LatentSampler
from .errors import RewriteError


def has_w_space(generator: nn.Module) -> bool:
    """Whether the generator maps z to a style latent w it can be driven by (StyleGAN2)."""
    return isinstance(getattr(generator, "style", None), nn.Module) and hasattr(generator, "latent_avg")


@dataclass
class LatentToggle:
    """``direction`` (unit), and the mean coordinates along it of samples ``off`` and ``on``."""

    direction: Tensor
    off: float
    on: float
    space: str  # "w" or "z"

    @classmethod
    def fit(cls, generator: nn.Module, segmenter: nn.Module, class_id: int, latents: LatentSampler,
            indices: range, min_pixels: int = 10, batch_size: int = 100) -> "LatentToggle":
        """From the generator's samples ``indices``, read by ``segmenter``: which show ``class_id``."""
        space = "w" if has_w_space(generator) else "z"
        device = next(generator.parameters()).device
        codes, images = [], []
        with torch.no_grad():
            z = latents.take(list(indices)).to(device)
            for i in range(0, len(z), batch_size):
                if space == "w":
                    code = generator.style(z[i:i + batch_size])
                    images.append(generator(code, input_is_latent=True).clamp(-1, 1).cpu())
                else:
                    code = z[i:i + batch_size]
                    images.append(generator(code).clamp(-1, 1).cpu())
                codes.append(code.flatten(1).cpu())
        codes = torch.cat(codes)
        shown = (segmenter.labels(torch.cat(images)) == class_id).flatten(1).sum(1) >= min_pixels
        if shown.all() or not shown.any():
            raise RewriteError(f"cannot find a direction for class {class_id}: {int(shown.sum())} of {len(shown)} "
                               "samples show it; it must be in some samples and absent from others")
        d = codes[shown].mean(0) - codes[~shown].mean(0)
        d = d / d.norm()
        return cls(d, float((codes[~shown] @ d).mean()), float((codes[shown] @ d).mean()), space)


class Toggled(nn.Module):
    """``generator`` with every latent moved along the toggle to its ``off`` or ``on`` level."""

    def __init__(self, generator: nn.Module, toggle: LatentToggle, on: bool) -> None:
        super().__init__()
        self.generator, self.toggle, self.on = generator, toggle, on

    def forward(self, z: Tensor) -> Tensor:
        t = self.toggle
        d = t.direction.to(z)
        level = t.on if self.on else t.off
        if t.space == "w":
            w = self.generator.style(z)
            return self.generator(w + (level - w @ d)[:, None] * d, input_is_latent=True)
        flat = z.flatten(1)
        return self.generator((flat + (level - flat @ d)[:, None] * d).view_as(z))
