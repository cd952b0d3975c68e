"""Lightning callbacks of lightning-rewrite (installed as ``lightning_rewrite.callbacks``),
thin over the engine: what they may ask of the module is :class:`Rewriting`."""

from .covariance import KeyCovariance
from .images import EditImages
from .projection import ProjectedOptimizer
from .protocol import Rewriting

__all__ = ["EditImages", "KeyCovariance", "ProjectedOptimizer", "Rewriting"]
