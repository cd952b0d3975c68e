"""Rates over images (Tables 1 and 3): the share a classifier calls positive (smiling), and the
share showing visible watermark, in the centre and in the bottom band separately."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ClassifierRate(Metric):
    """``update(positive)`` with a (B,) boolean per image (e.g. a smile classifier's verdict)."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("positive", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, positive: Tensor) -> None:
        self.positive += positive.bool().sum()
        self.total += positive.numel()

    def compute(self) -> Tensor:
        return self.positive.float() / self.total.clamp_min(1).float()


class Count(Metric):
    """``update(marked)``: how many entries of a boolean tensor are set (pixels of a class),
    summed exactly (int64) over batches and processes."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, marked: Tensor) -> None:
        self.count += marked.bool().sum()

    def compute(self) -> Tensor:
        return self.count


class WatermarkRate(Metric):
    """``update(labels)`` with (B, H, W) segmenter labels; an image shows a watermark in a zone
    when at least ``min_pixels`` of it are labelled ``watermark``. Zones are fractions of the
    height: centre rows [0.38, 0.62), bottom band rows [0.84, 1). ``compute()`` gives
    ``{"center": rate, "bottom": rate, "any": rate}``."""

    full_state_update = False
    ZONES = {"center": (0.38, 0.62), "bottom": (0.84, 1.0)}

    def __init__(self, watermark: int, min_pixels: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.watermark, self.min_pixels = watermark, min_pixels
        for zone in (*self.ZONES, "any"):
            self.add_state(zone, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, labels: Tensor) -> None:
        marked = labels == self.watermark
        h = labels.shape[-2]
        seen = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
        for zone, (top, bottom) in self.ZONES.items():
            shows = marked[:, int(top * h):int(bottom * h)].flatten(1).sum(1) >= self.min_pixels
            setattr(self, zone, getattr(self, zone) + shows.sum())
            seen |= shows
        self.any += seen.sum()
        self.total += len(labels)

    def compute(self) -> dict[str, Tensor]:
        n = self.total.clamp_min(1).float()
        return {zone: getattr(self, zone).float() / n for zone in (*self.ZONES, "any")}
