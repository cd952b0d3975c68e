"""The goal on its crop: the smallest window of the layer's input whose output covers the goal
region, widened by the layer's halo (the input locations a border output location reads), so
that each step of an edit costs what the region costs, not what the whole map costs.

The window is found, not assumed: for a layer whose output is an integer multiple ``s`` of its
input's size (a convolution, an upsampling convolution, StyleGAN2's modulated ones), the halo
grows until the crop's output equals the full map's on every goal location (relative error
≤ 1e-6); a layer for which no halo up to ``MAX_HALO`` does (or without a spatial map) keeps the
full map. Tensors among the layer's inputs shaped like its input map are cut to the input
window, those shaped like its output map (StyleGAN2's noise) to the output window; others (the
per-sample styles) are kept."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from .goal import Goal
from .layer import HookedLayer, LayerInputs
from .masks import bounding_box

log = logging.getLogger(__name__)

#: The widest halo tried, in input locations (a 3×3 convolution needs 1; StyleGAN2's upsampling one 2).
MAX_HALO = 4
#: How close the crop's output must be to the full map's on the goal locations.
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Crop:
    """An input window (rows, cols) and the output window it yields (the input's × ``scale``)."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    scale: int
    in_size: tuple[int, int]

    @property
    def out_rows(self) -> slice:
        return slice(self.rows[0] * self.scale, self.rows[1] * self.scale)

    @property
    def out_cols(self) -> slice:
        return slice(self.cols[0] * self.scale, self.cols[1] * self.scale)

    def inputs(self, inputs: LayerInputs) -> LayerInputs:
        """The layer's inputs cut to the window (per-sample, non-spatial inputs kept)."""
        out_size = (self.in_size[0] * self.scale, self.in_size[1] * self.scale)

        def cut(v: Any) -> Any:
            if not isinstance(v, Tensor) or v.ndim != 4:
                return v
            if tuple(v.shape[2:]) == self.in_size:
                return v[:, :, slice(*self.rows), slice(*self.cols)]
            if tuple(v.shape[2:]) == out_size:
                return v[:, :, self.out_rows, self.out_cols]
            return v
        return LayerInputs(tuple(cut(a) for a in inputs.args), {k: cut(v) for k, v in inputs.kwargs.items()})

    def output(self, t: Tensor) -> Tensor:
        """A full output map (target, region) cut to the output window."""
        return t[..., self.out_rows, self.out_cols]

    def describe(self) -> str:
        """Where the window is, in words (for the edit's spec)."""
        return (f"input rows {self.rows[0]}:{self.rows[1]}, cols {self.cols[0]}:{self.cols[1]} of "
                f"{self.in_size[0]}×{self.in_size[1]} ({100 * self.share:.1f}%)")

    @property
    def share(self) -> float:
        """The window's share of the input map."""
        return (self.rows[1] - self.rows[0]) * (self.cols[1] - self.cols[0]) / (self.in_size[0] * self.in_size[1])


def _window(box: tuple[int, int, int, int], scale: int, halo: int, size: tuple[int, int]) -> tuple[tuple, tuple]:
    t, l, b, r = box
    rows = (max(0, t // scale - halo), min(size[0], math.ceil(b / scale) + halo))
    cols = (max(0, l // scale - halo), min(size[1], math.ceil(r / scale) + halo))
    return rows, cols


def find_crop(hooked: HookedLayer, goal: Goal) -> Crop | None:
    """The smallest exact crop of ``goal``'s layer inputs (see the module's note), or None."""
    x = goal.inputs.args[0] if goal.inputs.args else None
    if not isinstance(x, Tensor) or x.ndim != 4 or goal.region.ndim != 4:
        return None
    size = tuple(x.shape[2:])
    out_size = tuple(goal.target.shape[2:])
    scale = out_size[0] // size[0]
    if scale < 1 or out_size != (size[0] * scale, size[1] * scale):
        return None
    box = bounding_box((goal.region > 0).any(0)[0])
    if box is None:
        return None
    weights = goal.region > 0
    with torch.no_grad():
        full = hooked.layer_forward(goal.inputs)
        for halo in range(1, MAX_HALO + 1):
            rows, cols = _window(box, scale, halo, size)
            crop = Crop(rows, cols, scale, size)
            if crop.share >= 1:
                return None
            got = hooked.layer_forward(crop.inputs(goal.inputs))
            want = crop.output(full)
            if got.shape != want.shape:
                return None
            mask = crop.output(weights).expand_as(want)
            err = (got - want)[mask].norm() / want[mask].norm().clamp_min(1e-30)
            if err <= TOLERANCE:
                return crop
    log.info("no exact crop of %s's input was found (halo up to %d): the goal keeps the full map", hooked.name, MAX_HALO)
    return None


def cropped(goal: Goal, crop: Crop) -> Goal:
    """``goal`` with its inputs, targets and region cut to ``crop`` (its keys and latents kept)."""
    return replace(goal, inputs=crop.inputs(goal.inputs), target=crop.output(goal.target),
                   target_linear=None if goal.target_linear is None else crop.output(goal.target_linear),
                   region=crop.output(goal.region))
