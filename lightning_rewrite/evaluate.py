"""``test``: draw held-out samples with and without an edit (same latents), score both with the
world's segmenter, and write what changed: JSON, and grids of the largest and smallest change."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor

from . import images
from .atomic import write_text
from .build import load_model
from .edit import Edit
from .rundir import run_directory
from .sampling import draw

SHOWN = 8


def masked_l1(before: Tensor, after: Tensor, region: Tensor, dilate: int = 2) -> Tensor:
    """(B,) mean absolute change per pixel outside ``region`` (B, H, W) grown by ``dilate``."""
    grown = F.max_pool2d(region.float()[:, None], 2 * dilate + 1, stride=1, padding=dilate)[:, 0]
    outside = (1 - grown)[:, None].expand_as(before)
    return ((after - before).abs() * outside).flatten(1).sum(1) / outside.flatten(1).sum(1).clamp_min(1)


def measure(cfg: DictConfig, model, before: Tensor, after: Tensor) -> dict[str, Any]:
    """Per-recipe numbers from the segmenter's labels of the unedited and edited samples."""
    change = (after - before).abs().flatten(1).mean(1)
    out: dict[str, Any] = {"n": len(before), "mean_abs_change": float(change.mean())}
    if model.segmenter is None or not cfg.select.source:
        return out
    from .worlds.measures import region_efficacy, rule_correlation

    classes = model.world.classes
    lb, la = model.segmenter.labels(before), model.segmenter.labels(after)
    src = cfg.select.source
    src_before = torch.stack([lb == classes.index(c) for c in src]).any(0)
    src_after = torch.stack([la == classes.index(c) for c in src]).any(0)
    out["source_classes"] = list(src)
    out["source_pixels_before"] = int(src_before.sum())
    out["source_pixels_after"] = int(src_after.sum())
    out["source_images_before"] = int((src_before.flatten(1).sum(1) >= 10).sum())
    out["source_images_after"] = int((src_after.flatten(1).sum(1) >= 10).sum())
    out["masked_l1_outside_source"] = float(masked_l1(before, after, src_before).mean())
    if cfg.edit.kind == "copy" and cfg.select.target:
        for t in cfg.select.target:
            out[f"efficacy_{src[0]}_to_{t}"] = region_efficacy(lb, la, classes, src[0], t)
    if "reflection" in classes:
        out["rule_correlation_before"] = rule_correlation(before, lb, classes)
        out["rule_correlation_after"] = rule_correlation(after, la, classes)
    return out


def test(cfg: DictConfig, out: Path, edit_path: Path) -> dict[str, Any]:
    """Measure the edit at ``edit_path`` on ``test.n`` held-out samples; write under ``out``."""
    model = load_model(cfg)
    edit = Edit.load(edit_path)
    edited = edit.apply(copy.deepcopy(model.generator), force=cfg.model.force)
    idx = range(cfg.test.start, cfg.test.start + cfg.test.n)
    before, after = draw([model.generator, edited], model.latents, idx, cfg.test.batch_size, cfg.progress, "test samples")
    metrics = {"edit": str(edit_path), "recipe": cfg.recipe, "layer": edit.layer, **measure(cfg, model, before, after)}
    change = (after - before).abs().flatten(1).mean(1)
    order = change.argsort(descending=True)
    with run_directory(out) as tmp:
        for name, pick in (("largest_change", order[:SHOWN]), ("smallest_change", order.flip(0)[:SHOWN])):
            grid = images.figure([images.before_after(images.unit(before[pick]), images.unit(after[pick]))])
            images.save_png(grid, tmp / f"{name}.png")
        write_text(tmp / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    return metrics
