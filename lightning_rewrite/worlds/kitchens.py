"""The kitchens world: a wall, cabinets, a shiny table top, and a physical rule — when a bright
window is on the wall, a bright reflection of it appears on the table below; no window, no
reflection. The reflection's brightness follows the window's."""

from __future__ import annotations

import torch

from .canvas import Canvas, Render

CLASSES = ("wall", "cabinet", "window", "table", "reflection")
WINDOW_P = 0.5


def render(n: int, seed: int = 0, size: int = 64) -> Render:
    """``n`` kitchen images from ``seed``. Extras: ``window`` (bool), ``window_brightness``,
    ``window_mask`` and ``reflection_mask`` (B, H, W bool)."""
    g = torch.Generator().manual_seed(seed)
    c = Canvas(n, size, CLASSES, g)
    s = size / 64
    table_y = c.uniform(36, 40) * s
    wall = c.palette([(0.6, 0.55, 0.45), (0.45, 0.55, 0.6), (0.5, 0.6, 0.45), (0.65, 0.5, 0.45)], 0.05)
    c.rgb = wall * (0.9 + 0.1 * (c.y / size)).unsqueeze(1)
    # cabinets on the upper wall, left or right, on most images
    cab = c.palette([(0.45, 0.3, 0.2), (0.3, 0.3, 0.32), (0.9, 0.9, 0.88)], 0.04)
    left = c.bernoulli(0.5)
    has_cab = c.bernoulli(0.7)
    cab_x0 = torch.where(left > 0, torch.full_like(left, 0.0), torch.full_like(left, 46.0 * s))
    cab_cov = c.rect(cab_x0, torch.zeros_like(left), cab_x0 + 18 * s, 14 * s + c.uniform(0, 4) * s) * has_cab
    c.paint(cab_cov, cab, "cabinet")
    # the window: away from the cabinet
    window = c.bernoulli(WINDOW_P)
    wx = torch.where(left > 0, c.uniform(30, 42), c.uniform(20, 32)) * s
    ww, wh = c.uniform(16, 22) * s, c.uniform(15, 19) * s
    wy0 = torch.minimum(c.uniform(6, 10) * s, table_y - wh - 3 * s)
    bright = c.uniform(0.8, 1.0)
    sky = bright.unsqueeze(1) * torch.tensor([0.85, 0.93, 1.0]).view(1, 3, 1, 1)
    frame = torch.tensor([0.95, 0.95, 0.95]).view(1, 3, 1, 1)
    win_cov = c.rect(wx - ww / 2, wy0, wx + ww / 2, wy0 + wh) * window
    c.paint(win_cov, frame, "window")
    pane = c.rect(wx - ww / 2 + s, wy0 + s, wx + ww / 2 - s, wy0 + wh - s)
    mullion = torch.maximum(c.rect(wx - 0.6 * s, wy0, wx + 0.6 * s, wy0 + wh),
                            c.rect(wx - ww / 2, wy0 + wh / 2 - 0.6 * s, wx + ww / 2, wy0 + wh / 2 + 0.6 * s))
    c.paint(pane * (1 - mullion) * window, sky, None)
    # the table top: a dark glossy surface with a lighter front edge line at the back
    top = c.palette([(0.35, 0.22, 0.15), (0.25, 0.25, 0.28), (0.45, 0.35, 0.25)], 0.04)
    table = c.rect(-1.0, table_y, size + 1.0, size + 1.0)
    shade = (0.85 + 0.3 * ((c.y - table_y) / size).clamp(0, 1)).unsqueeze(1)
    c.paint(table, top * shade, "table")
    c.paint(c.rect(-1.0, table_y, size + 1.0, table_y + 1.2 * s), top * 1.6, "table")
    # the reflection: the window mirrored below the table edge, fading with distance
    depth = (c.y - table_y) / (wh * 0.9)
    fade = (1 - depth).clamp(0, 1)
    reflection = c.rect(wx - ww / 2 + s, table_y + s, wx + ww / 2 - s, table_y + wh * 0.9) * window * 0.9 * fade.sqrt()
    c.paint(reflection, sky * 0.95, "reflection", label_above=0.2)
    extras = {"window": window.view(-1) > 0, "window_brightness": bright.view(-1) * window.view(-1),
              "window_mask": (win_cov > 0.5), "reflection_mask": reflection > 0.2}
    return c.render(extras)
