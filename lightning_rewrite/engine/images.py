"""Pictures of an edit: held-out samples before and after, the request's selections drawn on
their images, and the context match — where else the new key fires (the paper's Fig. 2c).

Every figure says what it shows: a title line, a title for each row (unedited, edited, context
match), each image's sample index, and the selections' colour legend — drawn with Pillow."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_path
from .latents import LatentSampler
from .layer import HookedLayer
from .request import EditRequest
from .search import ContextQuery

SELECTION_COLORS = {"object": (0.1, 0.9, 0.2), "paste": (1.0, 0.2, 0.2), "context": (1.0, 0.85, 0.1)}
#: The legend of the selections' colours, as a figure shows it.
SELECTION_LEGEND = (("copy", SELECTION_COLORS["object"]), ("paste", SELECTION_COLORS["paste"]),
                    ("context", SELECTION_COLORS["context"]))


@dataclass
class Row:
    """A row of a figure: images (n, 3, H, W in [0, 1]), what they are, and each one's caption
    (e.g. its sample index). More than a figure's width wraps onto further lines."""

    images: Tensor
    label: str
    captions: list[str] | None = None


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


def before_after(before: Tensor, after: Tensor, indices: list[int] | range, per_row: int = 8) -> list[Row]:
    """Rows of ``per_row`` unedited samples, each followed by the same latents edited."""
    rows = []
    for i in range(0, len(before), per_row):
        captions = [f"#{j}" for j in list(indices)[i:i + per_row]]
        rows += [Row(before[i:i + per_row], "unedited", captions), Row(after[i:i + per_row], "edited", captions)]
    return rows


def draw_alone(generator: nn.Module, z: Tensor) -> Tensor:
    """``generator``'s images of ``z`` in [-1, 1] (CPU), each sample in a batch of its own.

    Batched kernels round differently with a batch's size and company, so every picture a user
    compares is drawn this way (``sample``, the page, ``fit``'s and ``test``'s pictures): a
    sample's pixels are then the same wherever it is drawn on one machine. It also bounds memory
    (a 256-px batch holds every sample's activations at once)."""
    with torch.no_grad():
        return torch.cat([generator(z[i:i + 1]).clamp(-1, 1).cpu() for i in range(len(z))])


def selections(request: EditRequest, generator: nn.Module, latents: LatentSampler) -> Row:
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
    images = unit(draw_alone(generator, torch.stack([z_of(s) for s, _, _ in items])))
    drawn = torch.stack([draw_mask(img, m, SELECTION_COLORS[kind]) for img, (_, m, kind) in zip(images, items)])
    names = {"object": "copy", "paste": "paste", "context": "context"}
    if request.pairs:
        names = {"paste": "a", "object": "b"}
    captions = [f"{names.get(kind, kind)} #{s}" if isinstance(s, int) else names.get(kind, kind) for s, _, kind in items]
    return Row(drawn, "selections", captions)


def context_match(hooked: HookedLayer, directions: Tensor, key_star: Tensor, z: Tensor, images: Tensor) -> Tensor:
    """Where the held-out samples' keys align with the edit's direction as strongly as the
    selected key does: heat = clamp(Dᵀk / Dᵀk*, 0, 1) (first direction), over each image."""
    score = ContextQuery(directions[:, 0].to(key_star), key_star).score_map(hooked, z)
    return heat_overlays(images, score)


def heat_overlays(images: Tensor, score: Tensor) -> Tensor:
    """Each image (n, 3, H, W in [0, 1]) with its score map (n, *spatial) clamped to [0, 1] in red."""
    heat = score.clamp(0, 1).float().cpu()
    if heat.ndim != 3:  # a layer without 2-D maps: no picture of where
        heat = heat.reshape(len(images), 1, 1).expand(len(images), 8, 8)
    return torch.stack([heat_overlay(img, h) for img, h in zip(images, heat)])


_FONT_SIZE = 12


def _font(size: int = _FONT_SIZE) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def figure(rows: list[Row], title: str | None = None, legend: bool = False, per_row: int = 8) -> Tensor:
    """Rows of images as one labelled picture (3, H, W in [0, 1]): ``title`` on top, the
    selections' colour ``legend`` under it, each row's label at its left, captions above images."""
    font = _font()
    size = max(r.images.shape[-1] for r in rows)
    pad, caption_h, label_w = 2, _FONT_SIZE + 3, max(int(font.getlength(r.label)) for r in rows) + 8
    lines: list[tuple[Row, int]] = [(r, i) for r in rows for i in range(0, max(1, len(r.images)), per_row)]
    top = (_FONT_SIZE + 6 if title else 0) + (_FONT_SIZE + 6 if legend else 0)
    cell_h = caption_h + size + pad
    width = label_w + per_row * (size + pad) + pad
    canvas = Image.new("RGB", (width, top + len(lines) * cell_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    y = 2
    if title:
        draw.text((4, y), title, fill="black", font=font)
        y += _FONT_SIZE + 6
    if legend:
        x = 4
        for name, color in SELECTION_LEGEND:
            rgb = tuple(int(255 * c) for c in color)
            draw.rectangle([x, y + 1, x + 10, y + 11], fill=rgb, outline="black")
            draw.text((x + 14, y), name, fill="black", font=font)
            x += 24 + int(font.getlength(name))
    for line, (row, start) in enumerate(lines):
        y0 = top + line * cell_h
        draw.text((4, y0 + caption_h + size // 2 - _FONT_SIZE // 2), row.label, fill="black", font=font)
        for j, img in enumerate(row.images[start:start + per_row]):
            x0 = label_w + pad + j * (size + pad)
            canvas.paste(Image.fromarray(to_uint8(img)), (x0, y0 + caption_h))
            if row.captions is not None and start + j < len(row.captions):
                draw.text((x0, y0 + 1), row.captions[start + j], fill="dimgray", font=font)
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255).permute(2, 0, 1)


def to_uint8(image: Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] → (H, W, 3) uint8, rounded: what a PNG, W&B and TensorBoard all get."""
    return (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def png_bytes(image: Tensor) -> bytes:
    """A (3, H, W) image in [0, 1] encoded as PNG (what the interface serves)."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(grid: Tensor, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(grid)).save(tmp, format="png")
