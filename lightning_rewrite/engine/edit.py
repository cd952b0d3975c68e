"""Edit files: what a rewrite changed, saved apart from the model so edits can be shared,
stacked in order, and reverted exactly.

One edit is a safetensors file (``edit.safetensors``): the factored change of each changed
weight — D and Λ for ``rank_s`` (ΔW = Λ Dᵀ), the edited weight for the full-rank methods
(ΔW = edited − original) — and the original weights, so that apply and revert are bitwise. Its JSON spec (request, recipe, settings, base
model fingerprint, loss, times) is in the file's metadata and beside it as ``edit.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import safetensors.torch
from safetensors.torch import save_file
from torch import Tensor, nn

from . import memory
from ..atomic import atomic_path, write_text
from ..errors import RewriteError
from ..paths import existing_file
from .fingerprint import module_fingerprint

FORMAT = "lightning-rewrite-edit/1"


@dataclass
class WeightChange:
    """The change of one parameter: ΔW = Λ Dᵀ along ``key_axis`` (low rank), or the ``edited``
    weight itself (full rank: ΔW = edited − original)."""

    name: str  # the parameter's name in the generator's state dict
    original: Tensor
    key_axis: int = 1
    directions: Tensor | None = None  # D (N, S)
    lam: Tensor | None = None  # Λ (M, S)
    edited: Tensor | None = None

    def new_weight(self, w0: Tensor) -> Tensor:
        """The weight after the edit, given the weight before it (exactly ``edited`` on the base)."""
        if self.lam is not None:
            return memory.low_rank_weight(w0, self.lam.to(w0), self.directions.to(w0), self.key_axis)
        if torch.equal(w0.cpu(), self.original):
            return self.edited.to(w0)
        return w0 + (self.edited - self.original).to(w0)

    @property
    def delta(self) -> Tensor:
        """ΔW in the weight's shape."""
        if self.lam is not None:
            return memory.low_rank_weight(torch.zeros_like(self.original), self.lam, self.directions, self.key_axis)
        return self.edited - self.original

    @property
    def rank(self) -> int | None:
        return None if self.lam is None else int(self.lam.shape[1])


@dataclass
class Edit:
    """A saved rewrite: weight changes plus the spec that says what was asked and how."""

    changes: list[WeightChange]
    base_fingerprint: str
    result_fingerprint: str
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def layer(self) -> str:
        return self.spec.get("layer") or self.changes[0].name.rsplit(".", 1)[0]

    def made_on(self) -> str:
        """The model the edit was made on, in words (its world or checkpoint, and edits before it)."""
        model = self.spec.get("model") or {}
        if model.get("checkpoint"):
            what = f"checkpoint {Path(str(model['checkpoint'])).name}"
        elif model.get("world"):
            what = f"the {model['world']} generator"
        else:
            what = "a model"
        before = [e for e in model.get("edits_before") or [] if e]
        return what + (f" after the edit(s) {', '.join(before)}" if before else "")

    def describe(self) -> str:
        """One line for picture titles: method, rank and layer."""
        rank = self.spec.get("rank")
        return f"{self.spec.get('method', 'edit')}{f' rank {rank}' if rank else ''} at {self.layer}"

    # -- files ------------------------------------------------------------------------------

    def _tensors(self) -> dict[str, Tensor]:
        out = {}
        for i, c in enumerate(self.changes):
            out[f"{i}.original"] = c.original
            for key, value in (("directions", c.directions), ("lambda", c.lam), ("edited", c.edited)):
                if value is not None:
                    out[f"{i}.{key}"] = value
        return {k: v.detach().contiguous().cpu() for k, v in out.items()}

    def header(self) -> dict[str, Any]:
        """The JSON spec, with the format, fingerprints and the changed weights listed."""
        weights = [{"name": c.name, "key_axis": c.key_axis, "shape": list(c.original.shape),
                    "form": "low_rank" if c.lam is not None else "full", "rank": c.rank} for c in self.changes]
        return {"format": FORMAT, "base_fingerprint": self.base_fingerprint,
                "result_fingerprint": self.result_fingerprint, "weights": weights, **self.spec}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (safetensors, spec in its metadata) and the spec as ``path``'s .json."""
        path = Path(path)
        header = self.header()
        with atomic_path(path) as tmp:
            save_file(self._tensors(), str(tmp), metadata={"spec": json.dumps(header)})
        write_text(path.with_suffix(".json"), json.dumps(header, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Edit":
        """Read an edit file (``.safetensors``; its ``.json`` sibling names the same edit)."""
        p = Path(path)
        if p.suffix == ".json":
            p = p.with_suffix(".safetensors")
        p = existing_file(p, "edit file", "the edit.safetensors a fit run wrote")
        return cls.from_bytes(p.read_bytes(), p.name)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "the edit file") -> "Edit":
        """Read an edit file's bytes (an upload, or a file's content): safetensors, never pickle."""
        if not data:
            raise RewriteError(f"edit file {name} is empty (0 bytes); give the edit.safetensors a fit run wrote")
        try:
            tensors = safetensors.torch.load(data)  # safetensors: raw tensor bytes and a JSON header, no unpickling
            size = int.from_bytes(data[:8], "little")
            header = json.loads(json.loads(data[8:8 + size]).get("__metadata__", {}).get("spec", "{}"))
        except Exception as e:  # noqa: BLE001 - any unreadable file is one line
            raise RewriteError(f"{name} is not a readable edit file: it is truncated or not a safetensors file "
                               f"({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            found = header.get("format") if isinstance(header, dict) else None
            raise RewriteError(f"{name} is not a lightning-rewrite edit file (format {found!r}, expected {FORMAT!r})")
        changes = []
        for i, w in enumerate(header["weights"]):
            changes.append(WeightChange(w["name"], tensors[f"{i}.original"], w["key_axis"], tensors.get(f"{i}.directions"),
                                        tensors.get(f"{i}.lambda"), tensors.get(f"{i}.edited")))
        spec = {k: v for k, v in header.items() if k not in ("format", "base_fingerprint", "result_fingerprint", "weights")}
        return cls(changes, header["base_fingerprint"], header["result_fingerprint"], spec)

    # -- applying ---------------------------------------------------------------------------

    def _params(self, model: nn.Module) -> list[nn.Parameter]:
        params = dict(model.named_parameters())
        out = []
        for c in self.changes:
            if c.name not in params:
                raise RewriteError(f"edit changes {c.name!r}, which this model lacks; it was made for another architecture")
            if tuple(params[c.name].shape) != tuple(c.original.shape):
                raise RewriteError(f"edit changes {c.name!r} of shape {tuple(c.original.shape)}, this model's is "
                                   f"{tuple(params[c.name].shape)}")
            out.append(params[c.name])
        return out

    def apply(self, model: nn.Module, force: bool = False) -> nn.Module:
        """Write the edit into ``model`` in place. Refused when the model is not the edit's base
        (by fingerprint) unless ``force``."""
        params = self._params(model)
        if not force:
            found = module_fingerprint(model)
            if found != self.base_fingerprint:
                raise RewriteError(f"this edit of {self.layer} was made on {self.made_on()} ({self.base_fingerprint}); "
                                   f"this model ({found}) is another one or already edited: give the model it was made "
                                   "on, apply stacked edits in the order they were made, or pass force (model.force=true)")
        with torch.no_grad():
            for p, c in zip(params, self.changes):
                p.copy_(c.new_weight(p.detach()))
        return model

    def revert(self, model: nn.Module, force: bool = False) -> nn.Module:
        """Restore the weights the edit replaced, bitwise. Refused when the model does not hold
        this edit's result (by fingerprint) unless ``force``."""
        params = self._params(model)
        if not force:
            found = module_fingerprint(model)
            if found != self.result_fingerprint:
                raise RewriteError(f"model {found} does not hold this edit's result {self.result_fingerprint}; revert "
                                   "later edits first (in reverse order), or pass force")
        with torch.no_grad():
            for p, c in zip(params, self.changes):
                p.copy_(c.original.to(p))
        return model


def apply_edits(model: nn.Module, paths: list[str], force: bool = False) -> list[Edit]:
    """Load and apply edit files in order (the paper's Fig. 1: several rules in a row)."""
    edits = [Edit.load(p) for p in paths]
    for e in edits:
        e.apply(model, force=force)
    return edits

