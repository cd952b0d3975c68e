"""Vectorised drawing for the procedural worlds: a batch of canvases, shapes given as per-image
parameter tensors, antialiased coverage, painter's-order compositing with a label map."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .measures import presence


Num = float | Tensor


def _t(v: Num) -> Tensor:
    return v if isinstance(v, Tensor) else torch.tensor(float(v))


@dataclass
class Render:
    """A batch of rendered images in [-1, 1] (B, 3, H, W), their label maps (B, H, W) and any
    per-image facts (``extras``: e.g. smiling, window masks)."""

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    extras: dict[str, Tensor] = field(default_factory=dict)

    def mask(self, name: str) -> Tensor:
        """(B, H, W) boolean mask of one class."""
        return self.labels == self.classes.index(name)

    def has(self, name: str, min_pixels: int = 1) -> Tensor:
        """(B,) whether each image shows at least ``min_pixels`` of the class."""
        return presence(self.labels, self.classes, name, min_pixels)


class Canvas:
    """B RGB canvases of size H×W with a label map; ``paint`` composites a coverage mask."""

    def __init__(self, batch: int, size: int, classes: tuple[str, ...], generator: torch.Generator) -> None:
        self.b, self.size, self.classes, self.g = batch, size, classes, generator
        coords = (torch.arange(size, dtype=torch.float32) + 0.5)
        self.y = coords.view(1, size, 1).expand(1, size, size)
        self.x = coords.view(1, 1, size).expand(1, size, size)
        self.rgb = torch.zeros(batch, 3, size, size)
        self.labels = torch.zeros(batch, size, size, dtype=torch.long)

    # -- random parameters, one per image ---------------------------------------------------

    def uniform(self, lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(self.b, 1, 1, generator=self.g)

    def choice(self, probs: list[float]) -> Tensor:
        """(B,) category indices drawn with the given probabilities."""
        return torch.multinomial(torch.tensor(probs, dtype=torch.float32), self.b, replacement=True, generator=self.g)

    def bernoulli(self, p: float) -> Tensor:
        return (torch.rand(self.b, 1, 1, generator=self.g) < p).float()

    def palette(self, colors: list[tuple[float, float, float]], jitter: float = 0.05) -> Tensor:
        """(B, 3, 1, 1) a colour picked per image from a palette, jittered."""
        idx = self.choice([1.0] * len(colors))
        c = torch.tensor(colors)[idx].view(self.b, 3, 1, 1)
        return (c + jitter * (torch.rand(self.b, 3, 1, 1, generator=self.g) - 0.5) * 2).clamp(0, 1)

    # -- coverage masks in [0, 1], (B, H, W) -------------------------------------------------

    def rect(self, x0: Num, y0: Num, x1: Num, y1: Num) -> Tensor:
        x0, y0, x1, y1 = map(_t, (x0, y0, x1, y1))
        cx = (torch.minimum(self.x + 0.5, x1) - torch.maximum(self.x - 0.5, x0)).clamp(0, 1)
        cy = (torch.minimum(self.y + 0.5, y1) - torch.maximum(self.y - 0.5, y0)).clamp(0, 1)
        return cx * cy

    def ellipse(self, cx: Num, cy: Num, rx: Num, ry: Num | None = None) -> Tensor:
        cx, cy, rx = map(_t, (cx, cy, rx))
        ry = rx if ry is None else _t(ry)
        d = torch.sqrt(((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2)
        return ((1 - d) * torch.minimum(rx, ry) + 0.5).clamp(0, 1)

    def triangle(self, cx: Num, base_y: Num, half_width: Num, height: Num) -> Tensor:
        """An isosceles triangle pointing up: apex at (cx, base_y - height)."""
        cx, base_y, half_width, height = map(_t, (cx, base_y, half_width, height))
        t = ((base_y - self.y) / height)  # 0 at the base, 1 at the apex
        inside_w = half_width * (1 - t) - (self.x - cx).abs()
        cov = (inside_w + 0.5).clamp(0, 1)
        return cov * ((base_y - self.y + 0.5).clamp(0, 1)) * ((t < 1).float())

    # -- compositing ------------------------------------------------------------------------

    def paint(self, coverage: Tensor, color: Tensor, label: str | None, alpha: float | Tensor = 1.0,
              label_above: float = 0.5) -> None:
        """Composite ``color`` with ``coverage · alpha``; pixels covered more than
        ``label_above`` take the class ``label``."""
        a = (coverage * alpha).unsqueeze(1) if coverage.ndim == 3 else coverage * alpha
        self.rgb.lerp_(color, a)
        if label is not None:
            self.labels = torch.where(a[:, 0] > label_above, self.classes.index(label), self.labels)

    def render(self, extras: dict[str, Tensor] | None = None) -> Render:
        return Render(self.rgb.clamp(0, 1) * 2 - 1, self.labels, self.classes, extras or {})
