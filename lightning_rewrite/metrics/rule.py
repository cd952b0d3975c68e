"""RuleCorrelation (Sect. 5.3): the Pearson correlation between a cause and its effect —
window brightness and the brightness of the table's reflection — over samples, or within groups
of samples that differ only in the cause (pairs of the same scene without and with a window). A
model that follows the rule gives a high positive value; an inverted rule flips its sign."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from .functional import correlation_of, correlation_sums


class RuleCorrelation(Metric):
    """``update(cause, effect)`` with (B,) values per sample, or (B, K) for B groups of K samples
    that differ only in the cause: then each group's mean is removed first, so only the change
    within a group counts. Groups (or samples) with a NaN are skipped; streaming sums, so it
    reduces across processes exactly."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("sums", default=torch.zeros(6, dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def n(self) -> Tensor:
        """How many (cause, effect) values (or group members) were counted."""
        return self.sums[0]

    def update(self, cause: Tensor, effect: Tensor) -> None:
        self.sums += correlation_sums(cause, effect).to(self.sums)

    def compute(self) -> Tensor:
        return correlation_of(self.sums)
