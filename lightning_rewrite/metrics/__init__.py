"""What an edit did, as torchmetrics Metrics (state, update, compute, reset; they reduce across
processes and plug into any LightningModule): the paper's Tables 1–3 and Sect. 5.3. Their
functional twins are in :mod:`.functional`."""

from .change import MaskedL1, MaskedLPIPS, outside
from .rates import ClassifierRate, Count, WatermarkRate
from .region import RegionEfficacy
from .rule import RuleCorrelation

__all__ = ["ClassifierRate", "Count", "MaskedL1", "MaskedLPIPS", "RegionEfficacy", "RuleCorrelation", "WatermarkRate",
           "outside"]
