"""Embedded worlds: procedural renderers with per-pixel labels (churches, faces, kitchens), the
small generators trained on them and the segmenters that score what any generator draws."""

from .canvas import Render
from .registry import WORLDS, World, get_world

__all__ = ["Render", "WORLDS", "World", "get_world"]
