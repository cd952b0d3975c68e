"""What an edit did to a recipe's samples, measured batch by batch with the world's segmenter
through the metrics in ``metrics/``: ``test`` measures held-out samples, ``fit`` the few it
pictures."""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torchmetrics import Metric

from ..engine.interventions import LatentToggle, Toggled
from ..errors import RewriteError
from ..metrics import ClassifierRate, Count, MaskedL1, MaskedLPIPS, RegionEfficacy, RuleCorrelation, WatermarkRate
from ..vocabulary import MIN_PIXELS
from .assemble import Model

log = logging.getLogger(__name__)
#: A rule's cause is toggled along a latent direction found on these samples (the selection
#: pool's, never the held-out ones measured).
TOGGLE_SAMPLES = 500


class EditMeasures:
    """The metrics that fit a recipe, updated batch by batch with unedited/edited images.
    ``quick``: the segmenter's measures alone (no LPIPS, no rule pairs), for a first look."""

    def __init__(self, cfg: DictConfig, model: Model, quick: bool = False) -> None:
        self.classes = model.world.classes if model.world is not None else ()
        self.segmenter = model.segmenter
        self.kind = cfg.edit.kind
        self.source = [self.classes.index(c) for c in cfg.select.source] if self.segmenter is not None else []
        self.change = {"masked_l1": MaskedL1()}
        self.lpips_note = None
        if not quick:
            try:
                self.change["masked_lpips"] = MaskedLPIPS()
            except RewriteError as e:
                self.lpips_note = str(e)
                log.warning("masked LPIPS skipped: %s", e)
        self.efficacy = {}
        if self.kind == "copy" and self.source:
            self.efficacy = {t: RegionEfficacy(self.source, self.classes.index(t)) for t in cfg.select.target}
        flags = model.world.flags if model.world is not None else {}
        self.flags = {name: (self.classes.index(cls), ClassifierRate(), ClassifierRate()) for name, cls in flags.items()}
        self.watermark = None
        if "watermark" in self.classes:
            w = self.classes.index("watermark")
            self.watermark = (WatermarkRate(w), WatermarkRate(w))
        self.toggle, self.rule = None, None
        if "reflection" in self.classes and self.segmenter is not None and not quick:
            self.toggle = LatentToggle.fit(model.generator, self.segmenter, self.classes.index("window"),
                                           model.latents, range(TOGGLE_SAMPLES))
            self.rule = (RuleCorrelation(), RuleCorrelation())
        self.pixels = (Count(), Count())  # source pixels before and after

    def metrics(self) -> list[Metric]:
        """Every Metric held (their states reduce across processes when computed)."""
        out = [*self.change.values(), *self.efficacy.values(), *self.pixels]
        out += [m for _, before, after in self.flags.values() for m in (before, after)]
        return out + list(self.watermark or ()) + list(self.rule or ())

    def to(self, device: torch.device) -> "EditMeasures":
        """Measure on ``device`` (the segmenter and every metric's state)."""
        if self.segmenter is not None:
            self.segmenter.to(device)
        for m in self.metrics():
            m.to(device)
        return self

    def region(self, lb: Tensor, la: Tensor) -> Tensor:
        """Where the edit is meant to act: the source classes before (and, for a paired rule, after)."""
        if self.kind == "paired":
            ids = torch.tensor([self.classes.index(c) for c in ("window", "reflection") if c in self.classes] or self.source,
                               device=lb.device)
            return torch.isin(lb, ids) | torch.isin(la, ids)
        return torch.isin(lb, torch.tensor(self.source, device=lb.device))

    def pair_generators(self, base: nn.Module, edited: nn.Module) -> list[nn.Module]:
        """For a rule: each generator without and with the cause (window) — pairs of scenes."""
        if self.toggle is None:
            return []
        return [Toggled(g, self.toggle, on) for g in (base, edited) for on in (False, True)]

    def update(self, before: Tensor, after: Tensor, pairs: list[Tensor] | None = None) -> None:
        """One batch: unedited and edited images of the same latents, and (for a rule) the
        images of :meth:`pair_generators` for those latents."""
        if pairs:
            self.update_rule(pairs)
        if self.segmenter is None or not self.source:
            region = torch.zeros(before.shape[0], *before.shape[-2:], dtype=torch.bool, device=before.device)
            for m in self.change.values():
                m.update(before, after, region)
            return
        lb, la = self.segmenter.labels(before), self.segmenter.labels(after)
        region = self.region(lb, la)
        for m in self.change.values():
            m.update(before, after, region)
        for m in self.efficacy.values():
            m.update(lb, la)
        for cls, rate_before, rate_after in self.flags.values():
            rate_before.update((lb == cls).flatten(1).sum(1) >= MIN_PIXELS)
            rate_after.update((la == cls).flatten(1).sum(1) >= MIN_PIXELS)
        if self.watermark is not None:
            self.watermark[0].update(lb)
            self.watermark[1].update(la)
        src = torch.tensor(self.source, device=lb.device)
        self.pixels[0].update(torch.isin(lb, src))
        self.pixels[1].update(torch.isin(la, src))

    def update_rule(self, pairs: list[Tensor]) -> None:
        """Window vs reflection brightness within pairs of the same scene, before and after."""
        from ..worlds.measures import window_pair_brightness

        for metric, k in zip(self.rule, (0, 2)):
            imgs = (pairs[k], pairs[k + 1])
            cause, effect = window_pair_brightness(imgs, tuple(self.segmenter.labels(i) for i in imgs), self.classes)
            metric.update(cause, effect)

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: float(m.compute()) for k, m in self.change.items()}
        if self.lpips_note:
            out["masked_lpips"] = f"unavailable: {self.lpips_note}"
        if self.source:
            names = [self.classes[i] for i in self.source]
            out["source_classes"] = names
            out["source_pixels_before"], out["source_pixels_after"] = (int(m.compute()) for m in self.pixels)
            for t, m in self.efficacy.items():
                out[f"efficacy_{names[0]}_to_{t}"] = float(m.compute())
        for name, (_, rate_before, rate_after) in self.flags.items():
            out[f"{name}_rate_before"], out[f"{name}_rate_after"] = float(rate_before.compute()), float(rate_after.compute())
        if self.watermark is not None:
            for when, m in zip(("before", "after"), self.watermark):
                for zone, value in m.compute().items():
                    out[f"watermark_{zone}_rate_{when}"] = float(value)
        if self.rule is not None:
            out["rule_correlation_before"], out["rule_correlation_after"] = (float(m.compute()) for m in self.rule)
            out["rule_pairs"] = int(self.rule[0].n) // 2
            out["rule_pairs_made_by"] = f"a direction in {self.toggle.space} space toggling the window"
        return out
