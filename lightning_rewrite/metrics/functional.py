"""The plain functions behind the Metric classes (their functional twins, as torchmetrics
pairs them), which the worlds' measures call too: one formula each."""

from __future__ import annotations

import torch
from torch import Tensor


def region_counts(before: Tensor, after: Tensor, source: list[int], target: list[int]) -> tuple[Tensor, Tensor]:
    """(pixels labelled a source class before that are a target class after, source pixels before)."""
    src = torch.isin(before, torch.tensor(source, device=before.device))
    tgt = torch.isin(after, torch.tensor(target, device=after.device))
    return (src & tgt).sum(), src.sum()


def efficacy_of(hits: Tensor, total: Tensor) -> Tensor:
    """hits / total, NaN when there is no source pixel."""
    return torch.tensor(float("nan")) if total == 0 else hits.float() / total.float()


def region_efficacy(before: Tensor, after: Tensor, source: int | list[int], target: int | list[int]) -> Tensor:
    """Table 2's efficacy: of the pixels labelled ``source`` before an edit, the share labelled
    ``target`` after it (class indices; NaN if no source pixel)."""
    as_list = lambda c: [c] if isinstance(c, int) else list(c)  # noqa: E731
    return efficacy_of(*region_counts(before, after, as_list(source), as_list(target)))


def correlation_sums(cause: Tensor, effect: Tensor) -> Tensor:
    """(n, Σx, Σy, Σx², Σy², Σxy) in float64 over the pairs without a NaN; (B, K) inputs are
    B groups of K samples, each group's mean removed first (only change within a group counts)."""
    x, y = cause.double(), effect.double()
    if x.ndim == 2:
        keep = ~(x.isnan() | y.isnan()).any(1)
        x, y = x[keep] - x[keep].mean(1, keepdim=True), y[keep] - y[keep].mean(1, keepdim=True)
    x, y = x.flatten(), y.flatten()
    keep = ~(x.isnan() | y.isnan())
    x, y = x[keep], y[keep]
    return torch.stack([torch.tensor(float(len(x)), dtype=torch.float64, device=x.device),
                        x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()])


def correlation_of(sums: Tensor) -> Tensor:
    """Pearson's r from :func:`correlation_sums` (summed over batches or processes)."""
    n, sx, sy, sxx, syy, sxy = sums
    cov = sxy - sx * sy / n
    var = (sxx - sx ** 2 / n) * (syy - sy ** 2 / n)
    return (cov / var.clamp_min(1e-24).sqrt()).float()


def rule_correlation(cause: Tensor, effect: Tensor) -> Tensor:
    """Sect. 5.3's rule strength: Pearson's r of cause and effect (see :func:`correlation_sums`)."""
    return correlation_of(correlation_sums(cause, effect))
