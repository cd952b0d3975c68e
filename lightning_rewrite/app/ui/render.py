"""The interface's images: samples of the generator before and after its stack of edits, cached
per state. An edited state is drawn from the unedited generator's kept computation up to the
first edited layer (the engine's SharedPrefix), so after an edit only the part of the generator
after the edited layer runs again; the images are bitwise those of a full run."""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

from ...engine.edit import Edit
from ...engine.images import png_bytes, unit
from ...engine.latents import LatentSampler
from ...engine.prefix import Exhausted, SharedPrefix

UNEDITED = "unedited"
#: Pages whose kept computation is held (a page of 12 at 64 px keeps a few MB).
KEPT_PAGES = 16


class Renderer:
    """``png(index, original)``: a sample of the generator as loaded (``original``) or as edited
    now. The session edits ``generator`` in place and calls :meth:`changed` after each change."""

    def __init__(self, generator: nn.Module, latents: LatentSampler) -> None:
        self.generator = generator
        self.original = copy.deepcopy(generator).eval()
        self.latents = latents
        self.state = UNEDITED
        self.replayed = 0  # edited pages drawn from the kept computation (for tests and benchmarks)
        self._images: dict[tuple[str, int], Tensor] = {}
        self._pngs: dict[tuple[str, int], bytes] = {}
        self._prefix: SharedPrefix | None = None  # set by changed()
        self._kept: OrderedDict[tuple[int, ...], dict[str, list[Any]]] = OrderedDict()
        self._same: dict[str, bool] = {}

    def changed(self, stack: list[Edit], layer: str) -> None:
        """The generator now holds ``stack`` and the next edit is of the module ``layer``: images
        are drawn for its state, and unedited ones keep their computation up to the first module
        that is edited or to be edited."""
        self.state = stack[-1].result_fingerprint if stack else UNEDITED
        order = [name for name, _ in self.generator.named_modules()]
        split = min({layer} | {c.name.rsplit(".", 1)[0] for e in stack for c in e.changes}, key=order.index)
        if self._prefix is None or split != self._prefix.layer:
            self._prefix = SharedPrefix(split)
            self._kept.clear()
            self._same.clear()

    def png(self, index: int, original: bool) -> bytes:
        key = (self._state(original), index)
        if key not in self._pngs:
            self._pngs[key] = png_bytes(unit(self.images([index], original)[0]))
        return self._pngs[key]

    def images(self, indices: list[int], original: bool) -> Tensor:
        """The images (n, 3, H, W) in [-1, 1] of ``indices``."""
        self.render(indices, original)
        state = self._state(original)
        return torch.stack([self._images[(state, i)] for i in indices])

    def render(self, indices: list[int], original: bool) -> None:
        """Draw the samples of ``indices`` not drawn yet for the state, in one batch."""
        state = self._state(original)
        missing = [i for i in dict.fromkeys(indices) if (state, i) not in self._images]
        if not missing:
            return
        z = self.latents.take(missing).to(next(self.original.parameters()).device)
        with torch.no_grad():
            drawn = self._unedited(missing, z) if state == UNEDITED else self._edited(missing, z)
        for i, image in zip(missing, drawn.clamp(-1, 1).cpu()):
            self._images[(state, i)] = image

    def _state(self, original: bool) -> str:
        return UNEDITED if original else self.state

    def _unedited(self, indices: list[int], z: Tensor) -> Tensor:
        out, kept = self._prefix.record(self.original, z)
        self._kept[tuple(indices)] = kept
        while len(self._kept) > KEPT_PAGES:
            self._kept.popitem(last=False)
        return out

    def _edited(self, indices: list[int], z: Tensor) -> Tensor:
        kept = self._kept.get(tuple(indices))
        if kept is None:
            unedited = self._unedited(indices, z)
            for i, image in zip(indices, unedited.clamp(-1, 1).cpu()):
                self._images.setdefault((UNEDITED, i), image)
            kept = self._kept[tuple(indices)]
        if self.state not in self._same:
            self._same[self.state] = bool(kept) and all(
                SharedPrefix.same_weights(self.original.get_submodule(n), self.generator.get_submodule(n)) for n in kept)
        if self._same[self.state]:
            try:
                out = self._prefix.replay(self.generator, z, kept)
                self.replayed += 1
                return out
            except Exhausted:
                pass
        return self.generator(z)
