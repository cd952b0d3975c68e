"""The embedded worlds by name: renderer, classes, and the generator configuration each ships."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..errors import RewriteError
from .canvas import Render

#: Where the package keeps each world's trained weights and their JSON cards.
WEIGHTS = Path(__file__).parent / "weights"
#: The small StyleGAN2 every world trains (about 1.1 M parameters).
GENERATOR = {"size": 64, "style_dim": 128, "n_mlp": 4, "widths": {4: 128, 8: 128, 16: 128, 32: 64, 64: 32}}
DISCRIMINATOR_WIDTHS = (32, 64, 128, 128, 128)


@dataclass(frozen=True)
class World:
    name: str
    module: str
    description: str
    generator: dict = field(default_factory=lambda: dict(GENERATOR))

    @property
    def _impl(self):
        return importlib.import_module(f"lightning_rewrite.worlds.{self.module}")

    @property
    def classes(self) -> tuple[str, ...]:
        return self._impl.CLASSES

    @property
    def flags(self) -> dict[str, str]:
        """Per-image flags (e.g. ``smiling``) and the class whose presence decides each."""
        return dict(getattr(self._impl, "FLAGS", {}))

    @property
    def paste_objects(self) -> tuple[str, ...]:
        """Object classes the segmenter learns to read anywhere (copy-paste augmentation)."""
        return tuple(getattr(self._impl, "PASTE_OBJECTS", ()))

    def render(self, n: int, seed: int = 0) -> Render:
        """``n`` images with labels from ``seed`` (the same seed gives the same images)."""
        return self._impl.render(n, seed=seed)

    def weights(self, kind: str) -> Path:
        """The shipped ``generator`` or ``segmenter`` weights file of this world."""
        return WEIGHTS / f"{self.name}_{kind}.safetensors"

    def load_generator(self) -> nn.Module:
        """The shipped generator (a StyleGAN2Generator at 64×64), through ``load_generator``."""
        from ..models.loading import load_generator

        path = self.weights("generator")
        if not path.is_file():
            raise RewriteError(f"no generator shipped for {self.name!r} at {path}; train one with "
                               f"`python -m lightning_rewrite pretrain world={self.name}`")
        return load_generator(path)

    def load_segmenter(self) -> nn.Module:
        from .segmenter import load_segmenter

        return load_segmenter(self.name)


WORLDS: dict[str, World] = {
    "churches": World("churches", "churches", "buildings with dome/spire/flat roofs, trees, watermarks"),
    "faces": World("faces", "faces", "faces with hair, eyes, brows and a closed or smiling mouth"),
    "kitchens": World("kitchens", "kitchens", "a wall, cabinets and a glossy table that reflects the window"),
}


def get_world(name: str) -> World:
    if name not in WORLDS:
        raise RewriteError(f"unknown world {name!r}; choose one of: {', '.join(WORLDS)}")
    return WORLDS[name]

