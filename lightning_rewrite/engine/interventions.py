"""Pairs of samples that differ in one thing, made two ways.

A latent direction that turns a class on or off (the mean latent of samples that show it minus
that of samples that do not, in StyleGAN's W space when the generator has one, else in z):
setting each latent's coordinate along it to the two groups' mean levels gives two images of the
same scene, without and with the class — how Sect. 5.3 adds windows to a kitchen to see whether
reflections follow. Or, as the official reflection experiment does, a unit intervention: a few
units of an early layer set high or low inside a painted region (``UnitIntervention``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .latents import LatentSampler
from ..errors import RewriteError


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


class UnitIntervention:
    """While active, ``layer``'s output has ``units`` set to ``on`` (or ``off``) inside each
    sample's mask, blended by it: ``x[:, units] = value·area + x[:, units]·(1 − area)``, as the
    official reflection notebook's window edit. One intervention per batch row, all at one layer."""

    def __init__(self, generator: nn.Module, interventions: Sequence[Any], on: bool) -> None:
        from .layer import HookedLayer

        layers = {i.layer for i in interventions}
        if len(layers) != 1:
            raise RewriteError(f"the interventions of one request must share a layer, got {sorted(layers)}")
        self.hooked = HookedLayer(generator, layers.pop())
        self.interventions, self.on = list(interventions), on
        self._handle = None

    def _edit(self, _module: nn.Module, _args: tuple, x: Tensor) -> Tensor:
        if x.shape[0] != len(self.interventions):
            raise RewriteError(f"{len(self.interventions)} interventions for a batch of {x.shape[0]}")
        x = x.clone()
        for row, cut in enumerate(self.interventions):
            units = torch.as_tensor(cut.units, dtype=torch.long, device=x.device)
            if int(units.max()) >= x.shape[1] or int(units.min()) < 0:
                raise RewriteError(f"intervention units must lie in 0..{x.shape[1] - 1} ({self.hooked.name} has "
                                   f"{x.shape[1]} channels), got {cut.units}")
            area = self._area(cut, tuple(x.shape[2:])).to(x)
            value = cut.on if self.on else cut.off
            x[row, units] = value * area + x[row, units] * (1 - area)
        return x

    @staticmethod
    def _area(cut: Any, size: tuple[int, ...]) -> Tensor:
        from .masks import decode_data_url, resize_mask

        return decode_data_url(cut.url, size) if cut.url is not None else resize_mask(cut.mask, size)

    def __enter__(self) -> "UnitIntervention":
        self._handle = self.hooked.value_module.register_forward_hook(self._edit)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
