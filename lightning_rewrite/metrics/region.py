"""RegionEfficacy (Table 2): of the pixels labelled as the source class before an edit, the
share labelled as the target class after it, for the same latents."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


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
        src = torch.isin(before, torch.tensor(self.source, device=before.device))
        tgt = torch.isin(after, torch.tensor(self.target, device=after.device))
        self.hits += (src & tgt).sum()
        self.total += src.sum()

    def compute(self) -> Tensor:
        if self.total == 0:
            return torch.tensor(float("nan"))
        return self.hits.float() / self.total.float()
