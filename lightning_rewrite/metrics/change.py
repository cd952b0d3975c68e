"""Undesired change (Tables 1–2): how much an edit moved the image outside the region it was
meant to change — L1 per pixel, and spatial LPIPS (the perceptual distance the paper reports)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from ..errors import RewriteError
from ..engine.perceptual import lpips_network


def outside(region: Tensor, dilate: int = 2) -> Tensor:
    """(B, 1, H, W) weight 1 outside ``region`` (B, H, W) grown by ``dilate`` pixels, else 0."""
    grown = F.max_pool2d(region.float()[:, None], 2 * dilate + 1, stride=1, padding=dilate) if dilate else region.float()[:, None]
    return 1 - grown


class _Masked(Metric):
    """Mean of a per-pixel distance map over the pixels outside each image's region."""

    full_state_update = False

    def __init__(self, dilate: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dilate = dilate
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("weight", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def distance(self, before: Tensor, after: Tensor) -> Tensor:  # (B, 1, H, W)
        raise NotImplementedError

    def update(self, before: Tensor, after: Tensor, region: Tensor) -> None:
        """``before``/``after``: (B, 3, H, W) images in [-1, 1]; ``region``: (B, H, W) the edit's target."""
        w = outside(region.to(before.device), self.dilate)
        d = self.distance(before, after)
        if d.shape[-2:] != w.shape[-2:]:
            d = F.interpolate(d, size=w.shape[-2:], mode="bilinear", align_corners=False)
        self.total += (d * w).sum().double()
        self.weight += w.sum().double()

    def compute(self) -> Tensor:
        return (self.total / self.weight.clamp_min(1)).float()


class MaskedL1(_Masked):
    """Mean absolute change per pixel (channels averaged, images in [-1, 1]) outside the region."""

    def distance(self, before: Tensor, after: Tensor) -> Tensor:
        return (after - before).abs().mean(1, keepdim=True)


class MaskedLPIPS(_Masked):
    """Spatial LPIPS (``lpips`` package, ``spatial=True``) between unedited and edited images,
    averaged outside the region. Needs the standard backbone weights in $TORCH_HOME; nothing is
    downloaded: when the file is missing the error names it."""

    def __init__(self, net: str = "alex", dilate: int = 2, **kwargs) -> None:
        super().__init__(dilate=dilate, **kwargs)
        try:
            self.lpips = lpips_network(net)
        except RewriteError as e:
            raise RewriteError(f"{e}, or use MaskedL1") from None

    def distance(self, before: Tensor, after: Tensor) -> Tensor:
        with torch.no_grad():
            return self.lpips(before.clamp(-1, 1), after.clamp(-1, 1))
