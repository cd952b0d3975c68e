"""RegionEfficacy (Table 2): of the pixels labelled as the source class before an edit, the
share labelled as the target class after it, for the same latents."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from .functional import efficacy_of, region_counts


class RegionEfficacy(Metric):
    """``update(labels_before, labels_after)`` with (B, H, W) class maps of unedited and edited
    images of the same latents; ``compute()`` = target pixels among source pixels (NaN if none)."""

    full_state_update = False

    def __init__(self, source: int | list[int], target: int | list[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.source = [source] if isinstance(source, int) else list(source)
        self.target = [target] if isinstance(target, int) else list(target)
        self.add_state("hits", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, before: Tensor, after: Tensor) -> None:
        hits, total = region_counts(before, after, self.source, self.target)
        self.hits += hits
        self.total += total

    def compute(self) -> Tensor:
        return efficacy_of(self.hits, self.total)
