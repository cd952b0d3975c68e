"""The interface's images: samples of the generator before and after its stack of edits, cached
per state, each sample drawn alone (as ``images.draw_alone``: a sample's pixels on the page are
those ``sample`` writes). An edited state is drawn from the unedited generator's kept computation
up to the first edited layer (the engine's SharedPrefix), so after an edit only the part of the
generator after the edited layer runs again; the images are bitwise those of a full run."""

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
#: Samples whose kept computation is held (16 pages of 12; a 64-px sample keeps about 0.3 MB).
KEPT_SAMPLES = 192


class Renderer:
    """``png(index, original)``: a sample of the generator as loaded (``original``) or as edited
    now. The session edits ``generator`` in place and calls :meth:`changed` after each change."""

    def __init__(self, generator: nn.Module, latents: LatentSampler) -> None:
        self.generator = generator
        self.original = copy.deepcopy(generator).eval()
        self.latents = latents
        self.state = UNEDITED
        self.replayed = 0  # edited samples drawn from the kept computation (for tests and benchmarks)
        self._images: dict[tuple[str, int], Tensor] = {}
        self._pngs: dict[tuple[str, int], bytes] = {}
        self._prefix: SharedPrefix | None = None  # set by changed()
        self._kept: OrderedDict[int, dict[str, list[Any]]] = OrderedDict()
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
        """Draw the samples of ``indices`` not drawn yet for the state, one at a time."""
        state = self._state(original)
        device = next(self.original.parameters()).device
        for i in [i for i in dict.fromkeys(indices) if (state, i) not in self._images]:
            z = self.latents.take([i]).to(device)
            with torch.no_grad():
                drawn = self._unedited(i, z) if state == UNEDITED else self._edited(i, z)
            self._images[(state, i)] = drawn.clamp(-1, 1).cpu()[0]

    def _state(self, original: bool) -> str:
        return UNEDITED if original else self.state

    def _unedited(self, index: int, z: Tensor) -> Tensor:
        out, kept = self._prefix.record(self.original, z)
        self._kept[index] = kept
        self._kept.move_to_end(index)
        while len(self._kept) > KEPT_SAMPLES:
            self._kept.popitem(last=False)
        return out

    def _edited(self, index: int, z: Tensor) -> Tensor:
        kept = self._kept.get(index)
        if kept is None:
            self._images.setdefault((UNEDITED, index), self._unedited(index, z).clamp(-1, 1).cpu()[0])
            kept = self._kept[index]
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
