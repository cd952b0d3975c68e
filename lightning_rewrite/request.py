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
from .masks import bounding_box, decode_data_url, load_mask, mask_to_data_url, resize_mask

Sample = Union[int, Tensor]
MaskLike = Union[Tensor, str, os.PathLike]
KINDS = ("copy", "erase", "paired")
#: GAN Dissection's unit count for an erase when a file names none (the official ``drank=30``).
DEFAULT_ERASE_UNITS = 30
#: The official reflection experiment: 20 window units of layer4, set to 10 (window) and -5 (none).
POSNEG_LAYER, POSNEG_ON, POSNEG_OFF = "layer4", 10.0, -5.0


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

    def resized(self, size: tuple[int, ...]) -> Tensor:
        """The mask at a layer's resolution: decoded from its data URL as the official code does
        (an 8-bit bilinear resize), else resized at full precision."""
        return _resized(self.mask, self.url, size)


def _resized(mask: Tensor, url: str | None, size: tuple[int, ...]) -> Tensor:
    if url is not None and len(size) == 2:
        return decode_data_url(url, size)
    return resize_mask(mask, size)


@dataclass
class Intervention:
    """The official reflection experiment's cause: ``units`` of ``layer``'s output set to a
    value inside ``mask`` (blended by it), high (``on``, a window added) or low (``off``)."""

    layer: str
    mask: Tensor
    url: str | None
    on: float = POSNEG_ON
    off: float = POSNEG_OFF
    units: list[int] | None = None


@dataclass
class Pair:
    """Two samples that differ in one respect, and the region whose values they swap. With an
    ``intervention``, a and b are one sample drawn with the intervention on and off."""

    a: Sample
    b: Sample
    mask: Tensor
    url: str | None = None
    intervention: Intervention | None = None
    record: dict | None = None  # the official per-sample record it was read from (posneg.json)

    def to_json(self) -> list:
        return [_sample_to_json(self.a), _sample_to_json(self.b), self.url or mask_to_data_url(self.mask)]

    def resized(self, size: tuple[int, ...]) -> Tensor:
        return _resized(self.mask, self.url, size)


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
        self.format = "fields"  # or "posneg": the official reflection experiment's file
        self._order: list[str] = []
        self._newline = False
        self._validate()

    def _validate(self) -> None:
        if self.kind == "copy" and self.object is None:
            raise RewriteError("a copy request needs an object (copy) selection")
        if self.kind == "erase":
            if self.paste is None and not self.context:
                raise RewriteError("an erase request needs a paste selection or context (key) selections to erase from")
            if self.units is None:
                raise RewriteError("an erase request needs units: a count to choose (e.g. 30) or a list of channels")
            if isinstance(self.units, int) and self.units < 1:
                raise RewriteError(f"erase units must be ≥ 1, got {self.units}")
        if self.kind == "paired" and not self.pairs:
            raise RewriteError("a paired request needs at least one (a, b, mask) pair")

    def missing(self) -> str | None:
        """What the request lacks before it can be executed (None when complete): the official
        interface saves a copy request before its paste is chosen."""
        if self.kind == "copy" and self.paste is None:
            return (f"the request names an object and {len(self.context)} context selection(s) but no paste: the "
                    "official interface saves it so before Paste is pressed; add a paste selection to execute it")
        missing_units = [i for i, p in enumerate(self.pairs) if p.intervention is not None and not p.intervention.units]
        if missing_units:
            return (f"the reflection pairs set the window units of {self.pairs[missing_units[0]].intervention.layer} "
                    "(the official notebook takes GAN Dissection's top 20 'window' units): give them as edit.units=[...]")
        return None

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

        The official shapes: copy (``object``, ``paste``, ``key``), a copy saved before its paste
        (``object``, ``key``), an erase over selections (``paste`` and/or ``key``: GAN Dissection's
        units, ``units`` or 30 by default), and the reflection experiment's ``posneg.json``
        (per sample: a window intervention and the region whose values swap)."""
        text = os.fspath(source)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise RewriteError(f"edit request file {text!r} does not exist")
            try:
                text = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                raise RewriteError(f"edit request file {path.name} is not a JSON text file") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RewriteError(f"edit request is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise RewriteError("edit request JSON must be an object with 'object', 'paste' and 'key' fields (or posneg records)")
        if data and all(isinstance(k, str) and k.isdigit() and isinstance(v, dict) and "revert" in v
                        for k, v in data.items()):
            req = cls._from_posneg(data, units)
        else:
            req = cls._from_fields(data, kind, units)
        req._newline = text.endswith("\n")
        req._validate()
        return req

    @classmethod
    def _from_fields(cls, data: dict, kind: str | None, units: int | list[int] | None) -> "EditRequest":
        kind = kind or data.get("kind") or ("copy" if "object" in data else "paired" if "pairs" in data else "erase")
        if kind not in KINDS:
            raise RewriteError(f"unknown request kind {kind!r}; choose one of {', '.join(KINDS)}")
        pairs = []
        for i, v in enumerate(data.get("pairs", [])):
            if not (isinstance(v, list) and len(v) == 3):
                raise RewriteError(f"pairs[{i}] must be [sample_a, sample_b, mask data URL]")
            sel = Selection.of(_sample_from_json(v[0], f"pairs[{i}]"), v[2], f"pairs[{i}] mask")
            pairs.append(Pair(sel.sample, _sample_from_json(v[1], f"pairs[{i}]"), sel.mask, sel.url))
        key = data.get("key", [])
        if not isinstance(key, list):
            raise RewriteError("'key' must be a list of [sample, mask data URL] selections")
        units = units if units is not None else data.get("units")
        if kind == "erase" and units is None:
            units = DEFAULT_ERASE_UNITS
        known = {"object", "paste", "key", "pairs", "units", "kind"}
        req = cls.__new__(cls)
        req.kind, req.units, req.pairs, req.format = kind, units, pairs, "fields"
        req.object = _selection_from_json(data["object"], "object") if "object" in data else None
        req.paste = _selection_from_json(data["paste"], "paste") if "paste" in data else None
        req.context = [_selection_from_json(v, f"key[{i}]") for i, v in enumerate(key)]
        req.extra = {k: v for k, v in data.items() if k not in known}
        req._order = list(data.keys())
        return req

    @classmethod
    def _from_posneg(cls, data: dict, units: int | list[int] | None) -> "EditRequest":
        """The reflection experiment's file: each sample drawn with the window intervention on
        and off; the values inside ``revert`` (the counter top) swap between the two."""
        if isinstance(units, int):
            raise RewriteError("the reflection pairs need the window units as a list (edit.units=[...]), not a count")
        pairs = []
        for k, record in data.items():
            what = f"posneg[{k}]"
            try:
                value = float(record.get("value", POSNEG_OFF))
            except (TypeError, ValueError):
                raise RewriteError(f"{what}.value must be a number, got {record.get('value')!r}") from None
            revert = Selection.of(int(k), record.get("revert", ""), f"{what}.revert")
            cause = Selection.of(int(k), record.get("intervention", ""), f"{what}.intervention")
            intervention = Intervention(POSNEG_LAYER, cause.mask, cause.url, POSNEG_ON, value,
                                        [int(u) for u in units] if units is not None else None)
            pairs.append(Pair(int(k), int(k), revert.mask, revert.url, intervention, dict(record)))
        req = cls.__new__(cls)
        req.kind, req.units, req.pairs, req.format = "paired", None, pairs, "posneg"
        req.object, req.paste, req.context, req.extra, req._order = None, None, [], {}, []
        return req

    def to_dict(self) -> dict:
        if self.format == "posneg":
            return {str(p.a): {**(p.record or {}), "intervention": p.intervention.url or mask_to_data_url(p.intervention.mask),
                               "revert": p.url or mask_to_data_url(p.mask)} for p in self.pairs}
        fields: dict[str, Any] = dict(self.extra)
        if self.object is not None:
            fields["object"] = self.object.to_json()
        if self.paste is not None:
            fields["paste"] = self.paste.to_json()
        if self.context or "key" in self._order:
            fields["key"] = [s.to_json() for s in self.context]
        if self.pairs:
            fields["pairs"] = [p.to_json() for p in self.pairs]
        if self.units is not None and ("units" in self._order or not (self.format == "fields" and self.units == DEFAULT_ERASE_UNITS)):
            fields["units"] = self.units
        inferred = "copy" if self.object is not None else "paired" if self.pairs else "erase"
        if self.kind != inferred or "kind" in self._order:
            fields["kind"] = self.kind
        ordered = {k: fields[k] for k in self._order if k in fields}
        ordered.update({k: v for k, v in fields.items() if k not in ordered})
        return ordered

    def to_json(self) -> str:
        """The official layout (``indent=1``, fields in their original order; a trailing newline
        when the file it was read from had one)."""
        return json.dumps(self.to_dict(), indent=1) + ("\n" if self._newline else "")

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
        missing = self.missing()
        if missing:
            raise RewriteError(missing)
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
        weights = torch.stack([s.resized(tuple(keys.shape[2:])) for s in sel]).to(keys.device)
        k, w = flat_keys(keys), weights.reshape(-1)
        keep = w > 0
        if not keep.any():
            raise RewriteError(f"every context mask is empty at the {_res(keys)} key resolution of {hooked.name}; select larger regions")
        return k[keep], w[keep]

    @staticmethod
    def _key_star(keys: Tensor, selections: Sequence[Selection]) -> Tensor:
        """The mean key over the selected regions of ``keys`` (one row per selection)."""
        w = torch.stack([s.resized(tuple(keys.shape[2:])) for s in selections]).to(keys)
        return (flat_keys(keys) * w.reshape(-1, 1)).sum(0) / w.sum().clamp_min(1e-10)

    def _copy_goal(self, hooked: HookedLayer, z_of: Any) -> Goal:
        z_obj, z_paste = z_of(self.object.sample)[None], z_of(self.paste.sample)[None]
        obj_in, paste_in = hooked.inputs(z_obj), hooked.inputs(z_paste)
        obj_v, paste_v = hooked.layer_forward(obj_in), hooked.layer_forward(paste_in)
        size = tuple(paste_v.shape[2:])
        _require_spatial(size, hooked)
        o_mask = self.object.resized(size).to(paste_v)
        obox = bounding_box(o_mask)
        if obox is None:
            raise RewriteError(f"object mask is empty at the {_res(paste_v)} value resolution of {hooked.name}; select a larger region")
        pbox = bounding_box(self.paste.resized(size))
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
                    self._key_star(hooked.keys_from(paste_in), [self.paste]), ck, cw)

    def _erase_goal(self, hooked: HookedLayer, z_of: Any, second_moment: Tensor | None) -> Goal:
        """The layer's output with the erased units' keys zeroed, on the paste's bounding box —
        or, for a file that names only context selections, on each of theirs."""
        goal_sel = [self.paste] if self.paste is not None else self.context
        z = torch.stack([z_of(s.sample) for s in goal_sel])
        inputs = hooked.inputs(z)
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
        region = torch.zeros(len(goal_sel), 1, *size, device=target.device)
        for i, sel in enumerate(goal_sel):
            box = bounding_box(sel.resized(size))
            if box is None:
                raise RewriteError(f"the erase selection of sample {sel.sample} is empty at the {_res(target)} value "
                                   f"resolution of {hooked.name}; select a larger region")
            region[i, :, box[0]:box[2], box[1]:box[3]] = 1
        target_linear = hooked.linear_forward(erased) if hooked.has_linear else None
        return Goal(z, inputs.detach(), target, target_linear, region,
                    self._key_star(hooked.keys_from(inputs), goal_sel), ck, cw, units)

    def _pair_inputs(self, hooked: HookedLayer, z_of: Any) -> tuple[Tensor, LayerInputs]:
        """Latents and layer inputs of every pair's a sides, then its b sides."""
        za = torch.stack([z_of(p.a) for p in self.pairs])
        zb = torch.stack([z_of(p.b) for p in self.pairs])
        z = torch.cat([za, zb])
        if all(p.intervention is None for p in self.pairs):
            return z, hooked.inputs(z)
        if any(p.intervention is None for p in self.pairs):
            raise RewriteError("pairs with and without interventions cannot be mixed in one request")
        from .interventions import UnitIntervention

        sides = []
        for on in (True, False):
            cuts = [p.intervention for p in self.pairs]
            with UnitIntervention(hooked.model, cuts, on):
                sides.append(hooked.inputs(za if on else zb))
        return z, LayerInputs.cat(sides)

    def _paired_goal(self, hooked: HookedLayer, z_of: Any) -> Goal:
        z, inputs = self._pair_inputs(hooked, z_of)
        values = hooked.layer_forward(inputs)
        n = len(self.pairs)
        target = torch.cat([values[n:], values[:n]])
        size = tuple(values.shape[2:])
        masks = torch.stack([p.resized(size) for p in self.pairs]).to(values)
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
        w = torch.stack([p.resized(tuple(keys.shape[2:])) for p in self.pairs]).to(keys).reshape(-1)
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
