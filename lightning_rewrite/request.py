"""EditRequest: what the user asks for (copy / paste / context, erase, or paired swap),
turned into the goal of a rewrite at one layer: keys K*, target values V*, the region
where the goal applies, and the context keys that choose the update directions.

Reads and writes the official interface's JSON edit files losslessly:
``{"object": [i, url], "paste": [i, url], "key": [[i, url], ...], "query": ...}``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import torch
from torch import Tensor

from .atomic import write_text
from .data import LatentSampler
from .errors import RewriteError
from .layer import HookedLayer, LayerInputs, flat_keys
from .masks import bounding_box, load_mask, mask_to_data_url, resize_mask

Sample = Union[int, Tensor]
MaskLike = Union[Tensor, str, os.PathLike]
KINDS = ("copy", "erase", "paired")


@dataclass
class Selection:
    """A sample (index into the seeded latent set, or an explicit latent) and a mask at
    image resolution. ``url`` keeps the data URL a mask was read from, so files round-trip."""

    sample: Sample
    mask: Tensor
    url: str | None = None

    @classmethod
    def of(cls, sample: Sample, mask: MaskLike, what: str = "mask") -> "Selection":
        if isinstance(sample, bool) or not isinstance(sample, (int, Tensor)):
            raise RewriteError(f"{what}: a sample is an integer index or a latent tensor, got {sample!r}")
        url = mask if isinstance(mask, str) and mask.startswith("data:") else None
        return cls(sample, load_mask(mask, what), url)

    def to_json(self) -> list:
        return [_sample_to_json(self.sample), self.url or mask_to_data_url(self.mask)]


@dataclass
class Pair:
    """Two samples that differ in one respect, and the region whose values they swap."""

    a: Sample
    b: Sample
    mask: Tensor
    url: str | None = None

    def to_json(self) -> list:
        return [_sample_to_json(self.a), _sample_to_json(self.b), self.url or mask_to_data_url(self.mask)]


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


def _sample_to_json(sample: Sample) -> Any:
    return sample if isinstance(sample, int) else {"z": torch.as_tensor(sample).flatten().tolist()}


def _sample_from_json(value: Any, what: str) -> Sample:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, dict) and "z" in value:
        return torch.tensor(value["z"], dtype=torch.float32)
    raise RewriteError(f"{what}: a sample is an integer index or {{\"z\": [...]}}, got {value!r}")


def _selection_from_json(value: Any, what: str) -> Selection:
    if not (isinstance(value, list) and len(value) == 2):
        raise RewriteError(f"{what} must be [sample, mask data URL], got {str(value)[:60]}")
    return Selection.of(_sample_from_json(value[0], what), value[1], what)


class EditRequest:
    """Copy (sample + mask), paste (sample + mask) and context (several sample + mask);
    or an erase (paste + context + units) or a paired swap (pairs + context)."""

    def __init__(
        self,
        kind: str = "copy",
        object: Selection | None = None,  # noqa: A002 - the official field name
        paste: Selection | None = None,
        context: Sequence[Selection] = (),
        pairs: Sequence[Pair] = (),
        units: int | list[int] | None = None,
        extra: dict | None = None,
    ) -> None:
        if kind not in KINDS:
            raise RewriteError(f"unknown request kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        self.object = object
        self.paste = paste
        self.context = list(context)
        self.pairs = list(pairs)
        self.units = units
        self.extra = dict(extra or {})
        self._order: list[str] = []
        self._validate()

    def _validate(self) -> None:
        if self.kind == "copy" and (self.object is None or self.paste is None):
            raise RewriteError("a copy request needs both an object (copy) and a paste selection")
        if self.kind == "erase":
            if self.paste is None:
                raise RewriteError("an erase request needs a paste selection (the sample to erase from)")
            if self.units is None:
                raise RewriteError("an erase request needs units: a count to choose (e.g. 30) or a list of channels")
            if isinstance(self.units, int) and self.units < 1:
                raise RewriteError(f"erase units must be ≥ 1, got {self.units}")
        if self.kind == "paired" and not self.pairs:
            raise RewriteError("a paired request needs at least one (a, b, mask) pair")

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def copy(cls, object: tuple[Sample, MaskLike], paste: tuple[Sample, MaskLike],  # noqa: A002
             context: Sequence[tuple[Sample, MaskLike]] = ()) -> "EditRequest":
        """Copy the object under one mask, paste it centred on another, generalise to the context."""
        return cls("copy", Selection.of(*object, what="object"), Selection.of(*paste, what="paste"),
                   [Selection.of(s, m, "context") for s, m in context])

    @classmethod
    def erase(cls, paste: tuple[Sample, MaskLike], units: int | list[int],
              context: Sequence[tuple[Sample, MaskLike]] = ()) -> "EditRequest":
        """Make the layer output at ``paste`` what it is with ``units`` key channels zeroed."""
        return cls("erase", paste=Selection.of(*paste, what="paste"),
                   context=[Selection.of(s, m, "context") for s, m in context], units=units)

    @classmethod
    def paired(cls, pairs: Sequence[tuple[Sample, Sample, MaskLike]],
               context: Sequence[tuple[Sample, MaskLike]] = ()) -> "EditRequest":
        """Swap the values of each pair (a, b) inside its mask: a's keys get b's values and back."""
        parsed = []
        for a, b, m in pairs:
            sel = Selection.of(a, m, "pair mask")
            parsed.append(Pair(a, b, sel.mask, sel.url))
        return cls("paired", pairs=parsed, context=[Selection.of(s, m, "context") for s, m in context])

    # -- JSON -----------------------------------------------------------------------------

    @classmethod
    def from_json(cls, source: str | os.PathLike, kind: str | None = None,
                  units: int | list[int] | None = None) -> "EditRequest":
        """Read an official edit file (or our superset of it) from a path or a JSON string.

        Official erase files carry no unit count: pass ``units`` (the paper: 30 or 60)."""
        text = os.fspath(source)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise RewriteError(f"edit request file {text!r} does not exist")
            text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RewriteError(f"edit request is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise RewriteError("edit request JSON must be an object with 'paste' (and 'object', 'key') fields")
        kind = kind or data.get("kind") or ("copy" if "object" in data else "paired" if "pairs" in data else "erase")
        known = {"object", "paste", "key", "pairs", "units", "kind"}
        req = cls.__new__(cls)
        req.kind = kind
        req.object = _selection_from_json(data["object"], "object") if "object" in data else None
        req.paste = _selection_from_json(data["paste"], "paste") if "paste" in data else None
        req.context = [_selection_from_json(v, f"key[{i}]") for i, v in enumerate(data.get("key", []))]
        req.pairs = []
        for i, v in enumerate(data.get("pairs", [])):
            if not (isinstance(v, list) and len(v) == 3):
                raise RewriteError(f"pairs[{i}] must be [sample_a, sample_b, mask data URL]")
            req.pairs.append(Pair(_sample_from_json(v[0], f"pairs[{i}]"), _sample_from_json(v[1], f"pairs[{i}]"),
                                  load_mask(v[2], f"pairs[{i}] mask"), v[2]))
        req.units = units if units is not None else data.get("units")
        req.extra = {k: v for k, v in data.items() if k not in known}
        req._order = list(data.keys())
        if req.kind not in KINDS:
            raise RewriteError(f"unknown request kind {req.kind!r}; choose one of {', '.join(KINDS)}")
        req._validate()
        return req

    def to_dict(self) -> dict:
        fields: dict[str, Any] = dict(self.extra)
        if self.object is not None:
            fields["object"] = self.object.to_json()
        if self.paste is not None:
            fields["paste"] = self.paste.to_json()
        if self.context or "key" in self._order:
            fields["key"] = [s.to_json() for s in self.context]
        if self.pairs:
            fields["pairs"] = [p.to_json() for p in self.pairs]
        if self.units is not None:
            fields["units"] = self.units
        inferred = "copy" if self.object is not None else "paired" if self.pairs else "erase"
        if self.kind != inferred or "kind" in self._order:
            fields["kind"] = self.kind
        ordered = {k: fields[k] for k in self._order if k in fields}
        ordered.update({k: v for k, v in fields.items() if k not in ordered})
        return ordered

    def to_json(self) -> str:
        """The official layout (``indent=1``, fields in their original order)."""
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path: str | os.PathLike) -> None:
        write_text(path, self.to_json())

    def samples(self) -> list[Sample]:
        """Every sample the request names (for range checks and drawing)."""
        sel = [s for s in (self.object, self.paste) if s is not None] + self.context
        return [s.sample for s in sel] + [x for p in self.pairs for x in (p.a, p.b)]

    # -- the goal at a layer -----------------------------------------------------------------

    def goal(self, hooked: HookedLayer, latents: LatentSampler, second_moment: Tensor | None = None) -> Goal:
        """K*, V*, the region and the context keys of this request at ``hooked``'s layer.

        ``second_moment`` (E[kkᵀ]) is needed only to choose erase units by count.
        """
        device, dtype = hooked.weight.device, hooked.weight.dtype
        z_of = lambda s: (latents.take([s])[0] if isinstance(s, int) else torch.as_tensor(s)).to(device, dtype)  # noqa: E731
        with torch.no_grad():
            if self.kind == "copy":
                goal = self._copy_goal(hooked, z_of)
            elif self.kind == "erase":
                goal = self._erase_goal(hooked, z_of, second_moment)
            else:
                goal = self._paired_goal(hooked, z_of)
        return goal

    def _context(self) -> list[Selection]:
        if self.context:
            return self.context
        if self.kind == "paired":
            return [Selection(s, p.mask, p.url) for p in self.pairs for s in (p.a, p.b)]
        return [self.paste]

    def _context_keys(self, hooked: HookedLayer, z_of: Any) -> tuple[Tensor, Tensor]:
        sel = self._context()
        keys = hooked.keys(torch.stack([z_of(s.sample) for s in sel]))
        weights = torch.stack([resize_mask(s.mask, tuple(keys.shape[2:])) for s in sel]).to(keys.device)
        k, w = flat_keys(keys), weights.reshape(-1)
        keep = w > 0
        if not keep.any():
            raise RewriteError(f"every context mask is empty at the {_res(keys)} key resolution of {hooked.name}; select larger regions")
        return k[keep], w[keep]

    @staticmethod
    def _key_star(keys: Tensor, mask: Tensor) -> Tensor:
        w = resize_mask(mask, tuple(keys.shape[2:])).to(keys)
        return (flat_keys(keys) * w.reshape(-1, 1)).sum(0) / w.sum().clamp_min(1e-10)

    def _copy_goal(self, hooked: HookedLayer, z_of: Any) -> Goal:
        z_obj, z_paste = z_of(self.object.sample)[None], z_of(self.paste.sample)[None]
        obj_in, paste_in = hooked.inputs(z_obj), hooked.inputs(z_paste)
        obj_v, paste_v = hooked.layer_forward(obj_in), hooked.layer_forward(paste_in)
        size = tuple(paste_v.shape[2:])
        _require_spatial(size, hooked)
        o_mask = resize_mask(self.object.mask, size).to(paste_v)
        obox = bounding_box(o_mask)
        if obox is None:
            raise RewriteError(f"object mask is empty at the {_res(paste_v)} value resolution of {hooked.name}; select a larger region")
        p_mask = resize_mask(self.paste.mask, size)
        pbox = bounding_box(p_mask)
        if pbox is None:
            raise RewriteError(f"paste mask is empty at the {_res(paste_v)} value resolution of {hooked.name}; select a larger region")
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
        ck, cw = self._context_keys(hooked, z_of)
        return Goal(z_paste, paste_in.detach(), target, target_linear, region,
                    self._key_star(hooked.keys_from(paste_in), self.paste.mask), ck, cw)

    def _erase_goal(self, hooked: HookedLayer, z_of: Any, second_moment: Tensor | None) -> Goal:
        z_paste = z_of(self.paste.sample)[None]
        inputs = hooked.inputs(z_paste)
        ck, cw = self._context_keys(hooked, z_of)
        if isinstance(self.units, int):
            if second_moment is None:
                raise RewriteError("choosing erase units by count needs the key statistics (add KeyCovariance)")
            units = dissect_units(ck, cw, torch.diagonal(second_moment).to(ck), self.units)
        else:
            units = [int(u) for u in self.units]
            bad = [u for u in units if not 0 <= u < hooked.key_dim]
            if bad:
                raise RewriteError(f"erase units {bad} are out of range: layer {hooked.name} has key channels 0..{hooked.key_dim - 1}")
        erased = hooked.zero_key_units(inputs, units)
        target = hooked.layer_forward(erased)
        size = tuple(target.shape[2:])
        _require_spatial(size, hooked)
        box = bounding_box(resize_mask(self.paste.mask, size))
        if box is None:
            raise RewriteError(f"paste mask is empty at the {_res(target)} value resolution of {hooked.name}; select a larger region")
        region = torch.zeros(1, 1, *size, device=target.device)
        region[..., box[0]:box[2], box[1]:box[3]] = 1
        target_linear = hooked.linear_forward(erased) if hooked.has_linear else None
        return Goal(z_paste, inputs.detach(), target, target_linear, region,
                    self._key_star(hooked.keys_from(inputs), self.paste.mask), ck, cw, units)

    def _paired_goal(self, hooked: HookedLayer, z_of: Any) -> Goal:
        za = torch.stack([z_of(p.a) for p in self.pairs])
        zb = torch.stack([z_of(p.b) for p in self.pairs])
        z = torch.cat([za, zb])
        inputs = hooked.inputs(z)
        values = hooked.layer_forward(inputs)
        n = len(self.pairs)
        target = torch.cat([values[n:], values[:n]])
        size = tuple(values.shape[2:])
        masks = torch.stack([resize_mask(p.mask, size) for p in self.pairs]).to(values)
        region = torch.cat([masks, masks])[:, None]
        if not (region > 0).any():
            raise RewriteError(f"every pair mask is empty at the {_res(values)} value resolution of {hooked.name}")
        target_linear = None
        if hooked.has_linear:
            lin = hooked.linear_forward(inputs)
            target_linear = torch.cat([lin[n:], lin[:n]])
        ck, cw = self._context_keys(hooked, z_of) if self.context else self._pair_differences(hooked, inputs)
        key_star = (ck * cw[:, None]).sum(0) / cw.sum()
        return Goal(z, inputs.detach(), target, target_linear, region, key_star, ck, cw)

    def _pair_differences(self, hooked: HookedLayer, inputs: LayerInputs) -> tuple[Tensor, Tensor]:
        """A swap must change W(k_a − k_b) (to −(v_a − v_b)) and keep W(k_a + k_b): its
        directions come from the pairs' key differences at the masked places, not from the
        keys the two scenes share (those would move both tables alike)."""
        keys = hooked.keys_from(inputs)
        n = len(self.pairs)
        diff = flat_keys(keys[:n] - keys[n:])
        w = torch.stack([resize_mask(p.mask, tuple(keys.shape[2:])) for p in self.pairs]).to(keys).reshape(-1)
        keep = w > 0
        return diff[keep], w[keep]


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
