"""The faces world: a face with skin tone, hair, eyes, brows and a mouth that is closed lips in
most images and an open smile showing teeth in about a quarter."""

from __future__ import annotations

import torch

from .canvas import Canvas, Render

CLASSES = ("background", "skin", "hair", "eye", "brow", "lips", "mouth", "teeth")
SMILE_P = 0.25
#: Per-image flags a classifier reads from the segmenter's labels: smiling ⇔ teeth are visible.
FLAGS = {"smiling": "teeth"}


def render(n: int, seed: int = 0, size: int = 64) -> Render:
    """``n`` face images from ``seed``. Extras: ``smiling`` (bool)."""
    g = torch.Generator().manual_seed(seed)
    c = Canvas(n, size, CLASSES, g)
    s = size / 64
    back = c.palette([(0.3, 0.35, 0.45), (0.55, 0.5, 0.45), (0.2, 0.3, 0.25), (0.7, 0.7, 0.75)], 0.08)
    c.rgb = back * (0.85 + 0.15 * (c.y / size)).unsqueeze(1)
    cx = size / 2 + c.uniform(-1.5, 1.5) * s
    cy = 34 * s + c.uniform(-1.5, 1.5) * s
    rx, ry = c.uniform(14, 16) * s, c.uniform(18, 20) * s
    hair = c.palette([(0.1, 0.07, 0.05), (0.35, 0.2, 0.1), (0.75, 0.6, 0.3), (0.5, 0.5, 0.5)], 0.04)
    c.paint(c.ellipse(cx, cy - 4 * s, rx + 3 * s, ry + 1 * s), hair, "hair")
    skin = c.palette([(0.95, 0.8, 0.68), (0.85, 0.65, 0.5), (0.6, 0.42, 0.3), (0.4, 0.27, 0.2)], 0.03)
    c.paint(c.ellipse(cx, cy, rx, ry), skin, "skin")
    fringe = c.ellipse(cx, cy - ry * 0.95, rx * 0.95, ry * 0.45) * c.ellipse(cx, cy, rx, ry)
    c.paint(fringe, hair, "hair")
    # eyes and brows
    eye_y = cy - 3 * s
    for side in (-1, 1):
        ex = cx + side * 6.5 * s
        c.paint(c.ellipse(ex, eye_y, 3.4 * s, 2.2 * s), torch.ones(1, 3, 1, 1) * 0.95, "eye")
        c.paint(c.ellipse(ex, eye_y, 1.5 * s), torch.tensor([0.15, 0.1, 0.08]).view(1, 3, 1, 1), "eye")
        c.paint(c.rect(ex - 3.8 * s, eye_y - 6.2 * s, ex + 3.8 * s, eye_y - 4.2 * s), hair * 0.8, "brow")
    # a nose shadow (skin)
    c.paint(c.ellipse(cx, cy + 3 * s, 1.6 * s, 2.5 * s), skin * 0.85, None)
    # mouth: closed lips, or an open smile with teeth
    smiling = c.bernoulli(SMILE_P)
    my = cy + 10 * s
    lips = c.palette([(0.75, 0.3, 0.3), (0.6, 0.25, 0.25), (0.8, 0.4, 0.4)], 0.04)
    closed = c.ellipse(cx, my, 6.5 * s, 2.0 * s)
    c.paint(closed * (1 - smiling), lips, "lips")
    outer = c.ellipse(cx, my, 8.5 * s, 5.0 * s) * (c.y > my - 2.0 * s).float()
    inner = c.ellipse(cx, my, 7.0 * s, 3.8 * s) * (c.y > my - 1.0 * s).float()
    c.paint(outer * smiling, lips, "lips")
    c.paint(inner * smiling, torch.tensor([0.3, 0.05, 0.08]).view(1, 3, 1, 1), "mouth")
    teeth = inner * c.rect(cx - 8 * s, my - 1.0 * s, cx + 8 * s, my + 1.6 * s)
    c.paint(teeth * smiling, torch.ones(1, 3, 1, 1) * 0.97, "teeth")
    return c.render({"smiling": smiling.view(-1) > 0})
