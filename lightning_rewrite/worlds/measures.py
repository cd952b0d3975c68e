"""What a world's samples show, read from label maps: the share of images with each rule, and
the kitchens' window→reflection rule as a correlation."""

from __future__ import annotations

import torch
from torch import Tensor

from ..metrics import functional
from ..vocabulary import MIN_PIXELS


def presence(labels: Tensor, classes: tuple[str, ...], name: str, min_pixels: int = MIN_PIXELS) -> Tensor:
    """(B,) whether each label map shows ``name``."""
    return (labels == classes.index(name)).flatten(1).sum(1) >= min_pixels


def shares(labels: Tensor, classes: tuple[str, ...], names: tuple[str, ...]) -> dict[str, float]:
    """Share of images showing each class in ``names``."""
    return {n: round(float(presence(labels, classes, n).float().mean()), 4) for n in names}


def reflection_brightness(images: Tensor, labels: Tensor, classes: tuple[str, ...]) -> Tensor:
    """(B,) the 95th-percentile grey level of the table surface (table or reflection pixels):
    high where the window's reflection lies on it, the table's own shade where none does."""
    gray = images.mean(1)
    surface = (labels == classes.index("table")) | (labels == classes.index("reflection"))
    out = torch.full((len(images),), float("nan"))
    for i in range(len(images)):
        values = gray[i][surface[i]]
        if values.numel():
            out[i] = torch.quantile(values, 0.95)
    return out


def window_pair_brightness(images: tuple[Tensor, Tensor], labels: tuple[Tensor, Tensor],
                           classes: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    """For pairs of the same scene (without, with a window): (B, 2) window brightness — the mean
    grey level, in each image, over the pixels labelled window in either — and (B, 2)
    reflection brightness."""
    window = (labels[0] == classes.index("window")) | (labels[1] == classes.index("window"))
    area = window.flatten(1).sum(1).clamp_min(1)
    cause = torch.stack([(im.mean(1) * window).flatten(1).sum(1) / area for im in images], 1)
    cause[window.flatten(1).sum(1) == 0] = float("nan")
    effect = torch.stack([reflection_brightness(im, lab, classes) for im, lab in zip(images, labels)], 1)
    return cause, effect


def rule_correlation(images: Tensor, labels: Tensor, classes: tuple[str, ...]) -> float:
    """Pearson correlation, over images, of window area and reflection brightness."""
    area = (labels == classes.index("window")).flatten(1).sum(1).float()
    return float(functional.rule_correlation(area, reflection_brightness(images, labels, classes)))


def region_efficacy(before: Tensor, after: Tensor, classes: tuple[str, ...], source: str, target: str) -> float:
    """Of the pixels labelled ``source`` before an edit, the share labelled ``target`` after it."""
    return float(functional.region_efficacy(before, after, classes.index(source), classes.index(target)))
