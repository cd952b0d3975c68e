"""Where a rule's context fires among many samples: each sample's score map dᵀk / dᵀk* (its keys
against the context direction d, relative to the context's mean key k*; the paper's Fig. 2c),
and samples ranked by the peak of that map (the interface's Search)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .goal import context_keys
from .latents import LatentSampler
from .layer import HookedLayer
from .memory import CovarianceSolver, context_directions
from .request import Selection


@dataclass
class ContextQuery:
    """The direction d (N,) the context keys choose (the rank-1 direction of the edit) and their
    mask-weighted mean key k* (N,)."""

    direction: Tensor
    key_star: Tensor
    top_share: float | None = None  # the top singular value's share of the whitened context keys' energy

    @classmethod
    def of(cls, selections: Sequence[Selection], hooked: HookedLayer, latents: LatentSampler,
           second_moment: Tensor) -> "ContextQuery":
        with torch.no_grad():
            keys, weights = context_keys(selections, hooked, latents)
        solver = CovarianceSolver(second_moment.to(keys.device))
        d = context_directions(solver, keys, weights, 1)[:, 0]
        k_star = (keys * weights[:, None]).sum(0) / weights.sum()
        s = torch.linalg.svdvals(weights[:, None].to(solver.c) * solver.whiten(keys))
        return cls(d, k_star.to(d), float(s[0] ** 2 / (s ** 2).sum()))

    def score_map(self, hooked: HookedLayer, z: Tensor) -> Tensor:
        """dᵀk / dᵀk* at every location of each sample (B, *spatial): 1 where a key matches the context's."""
        with torch.no_grad():
            return self.scores(hooked.keys(z.to(hooked.weight.device, hooked.weight.dtype)))

    def scores(self, keys: Tensor) -> Tensor:
        """:meth:`score_map` of keys (B, N, *spatial) already drawn."""
        d = self.direction.to(keys.device)
        return torch.einsum("bn...,n->b...", keys.to(d), d) / (self.key_star.to(d) @ d).clamp_min(1e-12)

    def rank(self, hooked: HookedLayer, latents: LatentSampler, indices: Sequence[int],
             batch_size: int = 100) -> list[tuple[int, float]]:
        """``indices`` sorted by the peak of their score map, strongest first, with that peak."""
        peaks = []
        for start in range(0, len(indices), batch_size):
            chunk = list(indices[start:start + batch_size])
            scores = self.score_map(hooked, latents.take(chunk))
            peaks.append(scores.reshape(len(chunk), -1).amax(1).cpu())
        peak = torch.cat(peaks)
        order = peak.argsort(descending=True, stable=True)
        return [(int(indices[i]), float(peak[i])) for i in order]
