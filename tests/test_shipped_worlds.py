"""The weights shipped in the package: they load offline, the segmenters read fresh renders,
and a rank-1 edit of the churches generator turns domes into trees on held-out samples."""

from __future__ import annotations

import json

import pytest

from lightning_rewrite.worlds import get_world
from lightning_rewrite.worlds.segmenter import evaluate

LARGE = {"churches": ("dome", "spire", "tree", "window"), "faces": ("mouth", "lips"),
         "kitchens": ("window", "reflection")}
THIN = {"churches": ("watermark",), "faces": ("teeth",), "kitchens": ()}
SHIPPED_SEGMENTERS = [w for w in LARGE if get_world(w).weights("segmenter").is_file()]


def test_the_churches_world_ships_its_segmenter():
    assert "churches" in SHIPPED_SEGMENTERS


@pytest.mark.parametrize("name", SHIPPED_SEGMENTERS)
@pytest.mark.slow
def test_a_shipped_segmenter_reads_fresh_renders(name):
    iou = evaluate(get_world(name).load_segmenter(), name, n=200)
    assert all(iou[c] >= 0.90 for c in LARGE[name]), iou
    assert all(iou[c] >= 0.75 for c in THIN[name]), iou
    card = json.loads(get_world(name).weights("segmenter").with_suffix(".json").read_text())
    assert card["world"] == name and card["iou_fresh_renders_n1000"]


def test_the_churches_segmenter_reads_objects_out_of_place():
    """A rewritten generator draws trees on roofs: the segmenter must call them trees, not what
    usually stands there. Renders with a dome, spire or tree pasted anywhere (copy-paste)."""
    iou = evaluate(get_world("churches").load_segmenter(), "churches", n=200, pasted=True)
    assert all(iou[c] >= 0.90 for c in ("dome", "spire", "tree")), iou
