"""The churches world: sky, ground, a centred building with windows, a roof top that is a dome,
a spire or flat, 0–2 trees, and in about a fifth of the images a stock-photo watermark (text-like
strokes in the centre and/or a bottom band)."""

from __future__ import annotations

import torch

from .canvas import Canvas, Render

CLASSES = ("sky", "ground", "wall", "window", "roof", "dome", "spire", "tree", "watermark")
ROOF_PROBS = (0.4, 0.3, 0.3)
WATERMARK_P = 0.2
#: What church edits move between places: the segmenter learns to read them anywhere.
PASTE_OBJECTS = ("dome", "spire", "tree")


#: Glyph kinds of the watermark's fixed "text" (0: bar with a top bar, 1: bar with a middle bar,
#: 2: bar): a stock site stamps the same text on every image, which a generator can learn.
CENTER_TEXT = (0, 1, 2, 0, 1)
BOTTOM_TEXT = (1, 0, 0, 2, 1, 0)


def _watermark_strokes(c: Canvas, y0: float, y1: float, x0: float, x1: float,
                       text: tuple[int, ...], stroke: float = 3.0) -> torch.Tensor:
    """Text-like strokes: one glyph per entry of ``text`` in a band, each a vertical bar with a
    top bar, a middle bar or nothing; the same for every image, (H, W) coverage."""
    width = (x1 - x0) / len(text)
    mid = (y0 + y1) / 2
    glyphs = []
    for i, kind in enumerate(text):
        gx = x0 + i * width
        glyph = c.rect(gx + 0.5, y0, gx + 0.5 + stroke, y1)[0]
        if kind == 0:
            glyph = torch.maximum(glyph, c.rect(gx + 0.5, y0, gx + width - 1.0, y0 + stroke - 0.5)[0])
        elif kind == 1:
            half = (stroke - 0.5) / 2
            glyph = torch.maximum(glyph, c.rect(gx + 0.5, mid - half, gx + width - 1.0, mid + half)[0])
        glyphs.append(glyph)
    return torch.stack(glyphs).amax(0)


def render(n: int, seed: int = 0, size: int = 64) -> Render:
    """``n`` church images from ``seed``. Extras: ``roof`` (0 dome, 1 spire, 2 flat), ``trees``
    (count), ``watermark``, ``watermark_center``, ``watermark_bottom`` (bool)."""
    g = torch.Generator().manual_seed(seed)
    c = Canvas(n, size, CLASSES, g)
    s = size / 64
    horizon = c.uniform(44, 50) * s
    # sky: vertical gradient from a blue-grey top to a paler horizon
    top = c.palette([(0.35, 0.55, 0.85), (0.55, 0.65, 0.8), (0.75, 0.8, 0.85)], 0.06)
    frac = (c.y / horizon).clamp(0, 1).unsqueeze(1)
    c.rgb = top * (1 - 0.45 * frac) + 0.45 * frac * torch.ones_like(top)
    c.labels[:] = CLASSES.index("sky")
    c.paint(c.rect(-1.0, horizon, size + 1.0, size + 1.0),
            c.palette([(0.3, 0.5, 0.25), (0.45, 0.55, 0.3), (0.5, 0.45, 0.35)], 0.06), "ground")

    cx = size / 2 + c.uniform(-2, 2) * s
    half = c.uniform(11, 14) * s
    wall_top = c.uniform(27, 31) * s
    bottom = horizon + 3 * s
    wall = c.palette([(0.85, 0.8, 0.7), (0.6, 0.6, 0.62), (0.65, 0.35, 0.3), (0.75, 0.65, 0.5)], 0.05)
    c.paint(c.rect(cx - half, wall_top, cx + half, bottom), wall, "wall")
    # windows: a row of three tall dark arches
    glass = c.palette([(0.15, 0.15, 0.25), (0.25, 0.2, 0.15)], 0.04)
    wy0, wy1 = wall_top + 4 * s, wall_top + 11 * s
    for k in (-1, 0, 1):
        wx = cx + k * half * 0.55
        c.paint(c.rect(wx - 2 * s, wy0, wx + 2 * s, wy1), glass, "window")

    roof = c.choice(list(ROOF_PROBS))
    is_dome, is_spire = (roof == 0).float().view(-1, 1, 1), (roof == 1).float().view(-1, 1, 1)
    is_flat = (roof == 2).float().view(-1, 1, 1)
    # flat roof: a slab across the wall top
    slab = c.palette([(0.35, 0.3, 0.3), (0.45, 0.4, 0.35)], 0.05)
    c.paint(c.rect(cx - half - 1.5 * s, wall_top - 3 * s, cx + half + 1.5 * s, wall_top) * is_flat, slab, "roof")
    # dome: a half disc with a small drum, radius 9–11 px (several cells of a 16×16 layer)
    r = c.uniform(9, 11) * s
    dome_color = c.palette([(0.85, 0.7, 0.25), (0.35, 0.6, 0.55), (0.55, 0.55, 0.6)], 0.05)
    dome = c.ellipse(cx, wall_top, r, r * 1.05) * (c.y < wall_top + 0.5).float()
    c.paint(dome * is_dome, dome_color, "dome")
    # spire: a tall dark triangle
    spire_color = c.palette([(0.3, 0.3, 0.38), (0.45, 0.3, 0.25)], 0.05)
    spire = c.triangle(cx, wall_top + 0.5, c.uniform(6, 8) * s, c.uniform(20, 24) * s)
    c.paint(spire * is_spire, spire_color, "spire")

    # trees: 0–2, in a left and a right slot, overlapping the building's edge
    n_trees = c.choice([0.3, 0.4, 0.3])
    left_first = c.bernoulli(0.5)
    slot_left = ((n_trees == 2) | ((n_trees == 1) & (left_first.view(-1) > 0))).float().view(-1, 1, 1)
    slot_right = ((n_trees == 2) | ((n_trees == 1) & (left_first.view(-1) == 0))).float().view(-1, 1, 1)
    for slot, tx in ((slot_left, 10.0), (slot_right, 54.0)):
        x = tx * s + c.uniform(-2, 2) * s
        tr = c.uniform(7, 9) * s
        ty = horizon - tr - c.uniform(2, 5) * s
        trunk = c.rect(x - 1.2 * s, ty, x + 1.2 * s, horizon + 2 * s)
        c.paint(trunk * slot, torch.tensor([0.35, 0.25, 0.15]).view(1, 3, 1, 1), "tree")
        leaves = c.palette([(0.15, 0.45, 0.15), (0.25, 0.55, 0.2), (0.1, 0.35, 0.2)], 0.05)
        c.paint(c.ellipse(x, ty, tr, tr * 1.1) * slot, leaves, "tree")

    # watermark: bold, nearly opaque white text in the centre and/or a bottom band on a dark
    # translucent strip (the stock-photo footers of LSUN churches)
    marked = c.bernoulli(WATERMARK_P).view(-1)
    where = c.choice([0.4, 0.3, 0.3])  # centre only, bottom only, both
    center = ((marked > 0) & (where != 1)).float().view(-1, 1, 1)
    bottom_band = ((marked > 0) & (where != 0)).float().view(-1, 1, 1)
    white, black = torch.ones(1, 3, 1, 1), torch.zeros(1, 3, 1, 1)
    c.paint(_watermark_strokes(c, 26 * s, 38 * s, 10 * s, 54 * s, CENTER_TEXT) * center, white,
            "watermark", alpha=0.85, label_above=0.35)
    c.paint(c.rect(-1.0, 53 * s, size + 1.0, 63 * s) * bottom_band, black, "watermark", alpha=0.55,
            label_above=0.35)
    c.paint(_watermark_strokes(c, 55 * s, 61 * s, 6 * s, 58 * s, BOTTOM_TEXT, stroke=2.5) * bottom_band,
            white, "watermark", alpha=0.9, label_above=0.35)
    return c.render({"roof": roof, "trees": n_trees, "watermark": marked > 0, "watermark_center": center.view(-1) > 0,
                     "watermark_bottom": bottom_band.view(-1) > 0})
