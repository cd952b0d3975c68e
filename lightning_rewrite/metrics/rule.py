"""RuleCorrelation (Sect. 5.3): the Pearson correlation between a cause and its effect —
window brightness and the brightness of the table's reflection — over samples, or within groups
of samples that differ only in the cause (pairs of the same scene without and with a window). A
model that follows the rule gives a high positive value; an inverted rule flips its sign."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class RuleCorrelation(Metric):
    """``update(cause, effect)`` with (B,) values per sample, or (B, K) for B groups of K samples
    that differ only in the cause: then each group's mean is removed first, so only the change
    within a group counts. Groups (or samples) with a NaN are skipped; streaming sums, so it
    reduces across processes exactly."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("n", "sx", "sy", "sxx", "syy", "sxy"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, cause: Tensor, effect: Tensor) -> None:
        x, y = cause.double(), effect.double()
        if x.ndim == 2:
            keep = ~(x.isnan() | y.isnan()).any(1)
            x, y = x[keep] - x[keep].mean(1, keepdim=True), y[keep] - y[keep].mean(1, keepdim=True)
        x, y = x.flatten(), y.flatten()
        keep = ~(x.isnan() | y.isnan())
        x, y = x[keep], y[keep]
        self.n += len(x)
        self.sx += x.sum()
        self.sy += y.sum()
        self.sxx += (x * x).sum()
        self.syy += (y * y).sum()
        self.sxy += (x * y).sum()

    def compute(self) -> Tensor:
        cov = self.sxy - self.sx * self.sy / self.n
        var = (self.sxx - self.sx ** 2 / self.n) * (self.syy - self.sy ** 2 / self.n)
        return (cov / var.clamp_min(1e-24).sqrt()).float()
