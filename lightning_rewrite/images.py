"""Pictures of an edit: held-out samples before and after, the request's selections drawn on
their images, and the context match — where else the new key fires (the paper's Fig. 2c)."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.utils import make_grid, save_image

from .atomic import atomic_path
from .data import LatentSampler
from .layer import HookedLayer
from .request import EditRequest

SELECTION_COLORS = {"object": (0.1, 0.9, 0.2), "paste": (1.0, 0.2, 0.2), "context": (1.0, 0.85, 0.1)}


def unit(images: Tensor) -> Tensor:
    """Generator images in [-1, 1] → [0, 1]."""
    return ((images.float().clamp(-1, 1) + 1) / 2).cpu()


def draw_mask(image: Tensor, mask: Tensor, color: tuple[float, float, float]) -> Tensor:
    """``image`` (3, H, W in [0, 1]) with ``mask`` (H, W) tinted in ``color`` and its edge drawn solid."""
    m = F.interpolate(mask[None, None].float(), size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
    c = torch.tensor(color).view(3, 1, 1)
    hard = (m > 0.5).float()
    edge = (F.max_pool2d(hard[None], 3, 1, 1)[0] - hard).clamp(0, 1)
    tinted = image * (1 - 0.35 * m) + c * 0.35 * m
    return tinted * (1 - edge) + c * edge


def heat_overlay(image: Tensor, heat: Tensor) -> Tensor:
    """``image`` darkened, with ``heat`` (h, w in [0, 1]) in red on top."""
    h = F.interpolate(heat[None, None].float(), size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
    red = torch.tensor([1.0, 0.1, 0.0]).view(3, 1, 1)
    return image * 0.45 * (1 - h) + red * h + image * 0.1 * h


def before_after(before: Tensor, after: Tensor, per_row: int = 8) -> Tensor:
    """Rows of ``per_row`` unedited samples, each followed by the same latents edited."""
    rows = []
    for i in range(0, len(before), per_row):
        rows += [before[i:i + per_row], after[i:i + per_row]]
    return torch.cat(rows)


def _render(generator: nn.Module, z: Tensor) -> Tensor:
    with torch.no_grad():
        return unit(generator(z))


def selections(request: EditRequest, generator: nn.Module, latents: LatentSampler) -> Tensor:
    """The request's images with their masks: copy (green), paste (red), context (yellow);
    a paired request shows each pair's two scenes with the swapped region."""
    device = next(generator.parameters()).device
    z_of = lambda s: (latents.take([s])[0] if isinstance(s, int) else torch.as_tensor(s)).to(device)  # noqa: E731
    items = []
    if request.object is not None:
        items.append((request.object.sample, request.object.mask, "object"))
    if request.paste is not None:
        items.append((request.paste.sample, request.paste.mask, "paste"))
    items += [(s.sample, s.mask, "context") for s in request.context]
    for p in request.pairs[:4]:
        items += [(p.a, p.mask, "paste"), (p.b, p.mask, "object")]
    images = _render(generator, torch.stack([z_of(s) for s, _, _ in items]))
    return torch.stack([draw_mask(img, m, SELECTION_COLORS[kind]) for img, (_, m, kind) in zip(images, items)])


def context_match(hooked: HookedLayer, directions: Tensor, key_star: Tensor, z: Tensor, images: Tensor) -> Tensor:
    """Where the held-out samples' keys align with the edit's direction as strongly as the
    selected key does: heat = clamp(Dᵀk / Dᵀk*, 0, 1) (first direction), over each image."""
    d = directions[:, 0].to(key_star)
    with torch.no_grad():
        keys = hooked.keys(z.to(key_star.device, hooked.weight.dtype))
    score = torch.einsum("bn...,n->b...", keys.to(d), d) / (key_star @ d).clamp_min(1e-12)
    heat = score.clamp(0, 1).cpu()
    if heat.ndim != 3:  # a layer without 2-D maps: no picture of where
        heat = heat.reshape(len(z), 1, 1).expand(len(z), 8, 8)
    return torch.stack([heat_overlay(img, h) for img, h in zip(images, heat)])


def figure(rows: list[Tensor], per_row: int = 8) -> Tensor:
    """Stack panels (each a batch of equal-size images) into one grid, each panel starting a new row."""
    padded = []
    for panel in rows:
        extra = (-len(panel)) % per_row
        padded.append(torch.cat([panel, torch.ones(extra, *panel.shape[1:])]) if extra else panel)
    return make_grid(torch.cat(padded), nrow=per_row, padding=2, pad_value=1.0)


def save_png(grid: Tensor, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        save_image(grid, tmp, format="png")
