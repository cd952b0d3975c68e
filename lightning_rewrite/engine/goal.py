"""The goal of a rewrite at one layer, built from an EditRequest: the keys K* (the layer's
inputs), the target values V*, the region where the goal applies, and the context keys that
choose the update directions. One small builder per request kind (``GOALS``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..errors import RewriteError
from ..vocabulary import KINDS
from .interventions import UnitIntervention
from .latents import LatentSampler
from .layer import HookedLayer, LayerInputs, flat_keys
from .masks import bounding_box
from .request import EditRequest, Selection

@dataclass
class Goal:
    """A rewrite's objective at one layer, for a batch of B goal samples."""

    latents: Tensor  # (B, ...) latents of the goal samples
    inputs: LayerInputs  # the layer's inputs for them: K* lives here
    target: Tensor  # (B, C, *spatial) V*, values after the nonlinearity
    target_linear: Tensor | None  # the same goal in the linear operation's output space
    region: Tensor  # (B, 1, *spatial) weight of each value location in the loss
    key_star: Tensor  # (N,) mean key of the selected region (the k* of Eq. 15)
    context_keys: Tensor  # (n, N) context keys with positive weight
    context_weights: Tensor  # (n,)
    units: list[int] | None = None  # erased key channels (erase requests)


class GoalBuilder:
    """What every request kind's goal needs: the request's latents on the layer's device, the
    context keys (the selections' keys with positive mask weight) and mean keys."""

    def __init__(self, request: EditRequest, hooked: HookedLayer, latents: LatentSampler) -> None:
        self.request, self.hooked, self.latents = request, hooked, latents

    def z(self, sample: object) -> Tensor:
        return latent_of(sample, self.hooked, self.latents)

    def build(self, second_moment: Tensor | None) -> Goal:
        raise NotImplementedError

    def context_keys(self) -> tuple[Tensor, Tensor]:
        return context_keys(self.request.context_selections(), self.hooked, self.latents)

    @staticmethod
    def key_star(keys: Tensor, selections: Sequence[Selection]) -> Tensor:
        """The mean key over the selected regions of ``keys`` (one row per selection)."""
        w = torch.stack([s.resized(tuple(keys.shape[2:])) for s in selections]).to(keys)
        return (flat_keys(keys) * w.reshape(-1, 1)).sum(0) / w.sum().clamp_min(1e-10)


def latent_of(sample: object, hooked: HookedLayer, latents: LatentSampler) -> Tensor:
    """The latent of a sample index (or an explicit latent), on the layer's device and dtype."""
    w = hooked.weight
    z = latents.take([sample])[0] if isinstance(sample, int) else torch.as_tensor(sample)
    return z.to(w.device, w.dtype)


def context_keys(selections: Sequence[Selection], hooked: HookedLayer, latents: LatentSampler) -> tuple[Tensor, Tensor]:
    """The keys (n, N) under the selections' masks and their mask weights (n,), positive only."""
    keys = hooked.keys(torch.stack([latent_of(s.sample, hooked, latents) for s in selections]))
    weights = torch.stack([s.resized(tuple(keys.shape[2:])) for s in selections]).to(keys.device)
    k, w = flat_keys(keys), weights.reshape(-1)
    keep = w > 0
    if not keep.any():
        raise RewriteError(f"every context mask is empty at the {_res(keys)} key resolution of {hooked.name}; "
                           "select larger regions")
    return k[keep], w[keep]


class CopyGoal(GoalBuilder):
    """The object's values pasted, centred, on the paste's bounding box (the paper's Fig. 3)."""

    def build(self, second_moment: Tensor | None) -> Goal:
        request, hooked = self.request, self.hooked
        z_obj, z_paste = self.z(request.object.sample)[None], self.z(request.paste.sample)[None]
        obj_in, paste_in = hooked.inputs(z_obj), hooked.inputs(z_paste)
        obj_v, paste_v = hooked.layer_forward(obj_in), hooked.layer_forward(paste_in)
        size = tuple(paste_v.shape[2:])
        _require_spatial(size, hooked)
        o_mask = request.object.resized(size).to(paste_v)
        obox = bounding_box(o_mask)
        if obox is None:
            raise RewriteError(f"object mask is empty at the {_res(paste_v)} value resolution of {hooked.name}; "
                               "select a larger region")
        pbox = bounding_box(request.paste.resized(size))
        if pbox is None:
            raise RewriteError(f"paste mask is empty at the {_res(paste_v)} value resolution of {hooked.name}; "
                               "select a larger region")
        center = ((pbox[0] + pbox[2]) // 2, (pbox[1] + pbox[3]) // 2)
        t, l, b, r = obox
        area = o_mask[t:b, l:r]
        target, bounds = paste_at_center(paste_v, obj_v[:, :, t:b, l:r], center, area)
        target_linear = None
        if hooked.has_linear:
            obj_l, paste_l = hooked.linear_forward(obj_in), hooked.linear_forward(paste_in)
            target_linear, _ = paste_at_center(paste_l, obj_l[:, :, t:b, l:r], center, area)
        region = torch.zeros(1, 1, *size, device=paste_v.device)
        region[..., bounds[0]:bounds[2], bounds[1]:bounds[3]] = 1
        ck, cw = self.context_keys()
        return Goal(z_paste, paste_in.detach(), target, target_linear, region,
                    self.key_star(hooked.keys_from(paste_in), [request.paste]), ck, cw)


class EraseGoal(GoalBuilder):
    """The layer's output with the erased units' keys zeroed, on the paste's bounding box, or,
    for a file that names only context selections, on each of theirs."""

    def build(self, second_moment: Tensor | None) -> Goal:
        request, hooked = self.request, self.hooked
        goal_sel = [request.paste] if request.paste is not None else request.context
        z = torch.stack([self.z(s.sample) for s in goal_sel])
        inputs = hooked.inputs(z)
        ck, cw = self.context_keys()
        units = self.units(ck, cw, second_moment)
        erased = hooked.zero_key_units(inputs, units)
        target = hooked.layer_forward(erased)
        size = tuple(target.shape[2:])
        _require_spatial(size, hooked)
        region = torch.zeros(len(goal_sel), 1, *size, device=target.device)
        for i, sel in enumerate(goal_sel):
            box = bounding_box(sel.resized(size))
            if box is None:
                raise RewriteError(f"the erase selection of sample {sel.sample} is empty at the {_res(target)} value "
                                   f"resolution of {hooked.name}; select a larger region")
            region[i, :, box[0]:box[2], box[1]:box[3]] = 1
        target_linear = hooked.linear_forward(erased) if hooked.has_linear else None
        return Goal(z, inputs.detach(), target, target_linear, region,
                    self.key_star(hooked.keys_from(inputs), goal_sel), ck, cw, units)

    def units(self, ck: Tensor, cw: Tensor, second_moment: Tensor | None) -> list[int]:
        """The request's units, or GAN Dissection's choice of that many from the context."""
        hooked, units = self.hooked, self.request.units
        if isinstance(units, int):
            if second_moment is None:
                raise RewriteError("choosing erase units by count needs the key statistics (add KeyCovariance)")
            return dissect_units(ck, cw, torch.diagonal(second_moment).to(ck), units)
        units = [int(u) for u in units]
        bad = [u for u in units if not 0 <= u < hooked.key_dim]
        if bad:
            raise RewriteError(f"erase units {bad} are out of range: layer {hooked.name} has key channels "
                               f"0..{hooked.key_dim - 1}")
        return units


class PairedGoal(GoalBuilder):
    """Each pair's values swapped inside its mask (the paper's reflection rule, Sect. 5.3)."""

    def inputs(self) -> tuple[Tensor, LayerInputs]:
        """Latents and layer inputs of every pair's a sides, then its b sides."""
        pairs, hooked = self.request.pairs, self.hooked
        za = torch.stack([self.z(p.a) for p in pairs])
        zb = torch.stack([self.z(p.b) for p in pairs])
        z = torch.cat([za, zb])
        if all(p.intervention is None for p in pairs):
            return z, hooked.inputs(z)
        if any(p.intervention is None for p in pairs):
            raise RewriteError("pairs with and without interventions cannot be mixed in one request")
        sides = []
        for on in (True, False):
            with UnitIntervention(hooked.model, [p.intervention for p in pairs], on):
                sides.append(hooked.inputs(za if on else zb))
        return z, LayerInputs.cat(sides)

    def build(self, second_moment: Tensor | None) -> Goal:
        pairs, hooked = self.request.pairs, self.hooked
        z, inputs = self.inputs()
        values = hooked.layer_forward(inputs)
        n = len(pairs)
        target = torch.cat([values[n:], values[:n]])
        size = tuple(values.shape[2:])
        masks = torch.stack([p.resized(size) for p in pairs]).to(values)
        region = torch.cat([masks, masks])[:, None]
        if not (region > 0).any():
            raise RewriteError(f"every pair mask is empty at the {_res(values)} value resolution of {hooked.name}")
        target_linear = None
        if hooked.has_linear:
            lin = hooked.linear_forward(inputs)
            target_linear = torch.cat([lin[n:], lin[:n]])
        ck, cw = self.context_keys() if self.request.context else self.differences(inputs)
        key_star = (ck * cw[:, None]).sum(0) / cw.sum()
        return Goal(z, inputs.detach(), target, target_linear, region, key_star, ck, cw)

    def differences(self, inputs: LayerInputs) -> tuple[Tensor, Tensor]:
        """A swap must change W(k_a − k_b) (to −(v_a − v_b)) and keep W(k_a + k_b): its
        directions come from the pairs' key differences at the masked places, not from the
        keys the two scenes share (those would move both tables alike)."""
        keys = self.hooked.keys_from(inputs)
        n = len(self.request.pairs)
        diff = flat_keys(keys[:n] - keys[n:])
        w = torch.stack([p.resized(tuple(keys.shape[2:])) for p in self.request.pairs]).to(keys).reshape(-1)
        keep = w > 0
        return diff[keep], w[keep]


#: The goal each request kind builds.
GOALS: dict[str, type[GoalBuilder]] = dict(zip(KINDS, (CopyGoal, EraseGoal, PairedGoal)))


def goal_of(request: EditRequest, hooked: HookedLayer, latents: LatentSampler,
            second_moment: Tensor | None = None) -> Goal:
    """K*, V*, the region and the context keys of ``request`` at ``hooked``'s layer.
    ``second_moment`` (E[kkᵀ]) is needed only to choose erase units by count."""
    missing = request.missing()
    if missing:
        raise RewriteError(missing)
    with torch.no_grad():
        return GOALS[request.kind](request, hooked, latents).build(second_moment)


def _res(t: Tensor) -> str:
    return "×".join(str(s) for s in t.shape[2:]) or "1"


def _require_spatial(size: tuple[int, ...], hooked: HookedLayer) -> None:
    if len(size) != 2:
        raise RewriteError(f"copy and erase requests need a layer with 2-D feature maps; {hooked.name} outputs shape {size}")


def paste_at_center(
    values: Tensor, clip: Tensor, center: tuple[int, int], area: Tensor | None = None
) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Paste ``clip`` into ``values`` centred at ``center`` (kept inside the map), alpha-
    blended by ``area``; returns the new map and the pasted box (top, left, bottom, right)."""
    out = values.clone()
    ch, cw = clip.shape[2:]
    h, w = values.shape[2:]
    t = max(0, min(h - ch, center[0] - ch // 2))
    l = max(0, min(w - cw, center[1] - cw // 2))  # noqa: E741
    b, r = t + ch, l + cw
    if area is None:
        out[:, :, t:b, l:r] = clip
    else:
        a = area.to(values)[None, None]
        out[:, :, t:b, l:r] = (1 - a) * out[:, :, t:b, l:r] + a * clip
    return out, (t, l, b, r)


def dissect_units(keys: Tensor, weights: Tensor, unit_second_moment: Tensor, count: int) -> list[int]:
    """GAN Dissection's choice: the ``count`` key channels whose squared activation,
    relative to its overall mean square, is largest inside the selected regions."""
    if count > keys.shape[1]:
        raise RewriteError(f"cannot choose {count} units from a layer with {keys.shape[1]} key channels")
    score = (keys.pow(2) / unit_second_moment.clamp_min(1e-20)[None] * weights[:, None]).sum(0) / weights.sum()
    return score.argsort(descending=True)[:count].tolist()
