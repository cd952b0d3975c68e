"""RuleCorrelation (Sect. 5.3): the Pearson correlation between a cause and its effect over
samples — window brightness and the brightness of the table's reflection. A model that follows
the rule gives a high positive value; an inverted rule flips its sign."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class RuleCorrelation(Metric):
    """``update(cause, effect)`` with (B,) values per sample (NaNs are skipped); streaming sums,
    so it reduces across processes exactly."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("n", "sx", "sy", "sxx", "syy", "sxy"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, cause: Tensor, effect: Tensor) -> None:
        x, y = cause.double().flatten(), effect.double().flatten()
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
