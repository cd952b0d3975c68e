"""EditRequest: what the user asks for (copy / paste / context, erase, or paired swap), and
its files. :mod:`.goal` turns it into the goal of a rewrite at one layer.

Reads and writes the official interface's JSON edit files losslessly:
``{"object": [i, url], "paste": [i, url], "key": [[i, url], ...], "query": ...}``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Sequence, Union

import torch
from torch import Tensor

from ..atomic import write_text
from ..errors import RewriteError
from ..paths import existing_file
from ..vocabulary import KINDS
from .masks import decode_data_url, load_mask, mask_to_data_url, resize_mask

Sample = Union[int, Tensor]
MaskLike = Union[Tensor, str, os.PathLike]
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
        format: str = "fields",  # noqa: A002 - or "posneg": the official reflection experiment's file
        order: Sequence[str] = (),
        newline: bool = False,
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
        self.format = format
        self._order = list(order)  # a file's field order, kept when it is written back
        self._newline = newline  # whether the file ended with a newline
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
            path = existing_file(text, "edit request file", "an official edit JSON file or one a fit run wrote (request.json)")
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
            return cls._from_posneg(data, units, text.endswith("\n"))
        return cls._from_fields(data, kind, units, text.endswith("\n"))

    @classmethod
    def _from_fields(cls, data: dict, kind: str | None, units: int | list[int] | None, newline: bool) -> "EditRequest":
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
        return cls(kind, _selection_from_json(data["object"], "object") if "object" in data else None,
                   _selection_from_json(data["paste"], "paste") if "paste" in data else None,
                   [_selection_from_json(v, f"key[{i}]") for i, v in enumerate(key)], pairs, units,
                   {k: v for k, v in data.items() if k not in known}, "fields", list(data.keys()), newline)

    @classmethod
    def _from_posneg(cls, data: dict, units: int | list[int] | None, newline: bool) -> "EditRequest":
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
        return cls("paired", pairs=pairs, format="posneg", newline=newline)

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

    def context_selections(self) -> list[Selection]:
        """The selections whose keys say where the rule applies (and choose the edit's directions):
        the context, else the paste, else both sides of each pair."""
        if self.context:
            return self.context
        if self.paste is not None:
            return [self.paste]
        return [Selection(s, p.mask, p.url) for p in self.pairs for s in (p.a, p.b)]

    def samples(self) -> list[Sample]:
        """Every sample the request names (for range checks and drawing)."""
        sel = [s for s in (self.object, self.paste) if s is not None] + self.context
        return [s.sample for s in sel] + [x for p in self.pairs for x in (p.a, p.b)]
