"""``advise``: every candidate edit made and measured on validation samples outside the selection
pool and the test range; a table, ``advise.json`` and ``advise.png`` for every embedded recipe and
for a user's model without a segmenter; bad settings are one line."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from lightning_rewrite.app.assemble import stored_request_path
from lightning_rewrite.app.cli import main
from lightning_rewrite.worlds import get_world

pytestmark = pytest.mark.slow  # makes edits
QUICK = ["stats.samples=100", "advise.n=12", "progress=false"]


def read(out):
    result = json.loads((out / "advise" / "advise.json").read_text())
    with Image.open(out / "advise" / "advise.png") as png:
        assert png.size[0] >= 600
    return result


def test_advise_ranks_layers_and_ranks_on_the_church_world(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["advise", "recipe=domes_to_trees", f"out={out}", "advise.layers=[layer5,layer6]", "advise.ranks=[1,2]",
                 *QUICK]) == 0
    result = read(out)
    assert result["validation"] == "samples 2000–2011" and result["efficacy_key"] == "efficacy"
    rows = result["rows"]
    assert sorted((r["layer"], r["rank"]) for r in rows) == [("layer5", 1), ("layer5", 2), ("layer6", 1), ("layer6", 2)]
    assert [r for r in rows if r["current"]] == [r for r in rows if (r["layer"], r["rank"]) == ("layer6", 1)]
    front = [r for r in rows if r["front"]]
    assert front and rows[:len(front)] == front, "the front comes first"
    for r in rows:  # nothing off the front beats a front row on both
        assert not any(f["masked_l1"] > r["masked_l1"] and f["efficacy"] < r["efficacy"] for f in front if not r["front"])
        assert 0 <= r["efficacy"] <= 1 and r["masked_l1"] >= 0 and "watermark" in r["appeared"]
    layer6 = next(r for r in rows if r["current"])
    assert layer6["efficacy"] > 0.3  # the recipe's own setting works on validation samples too
    assert result["suggested"].startswith("edit.layer=")
    printed = capsys.readouterr().out
    assert "suggested: edit.layer=" in printed and "layer6 (recipe)" in printed


@pytest.mark.parametrize("recipe, layer, rank", [("domes_to_spires", "layer6", 1), ("spires_to_domes", "layer6", 1),
                                                  ("smile", "layer8", 1), ("watermark", "layer7", 2),
                                                  ("reflection", "layer6", 1)])
def test_advise_writes_its_table_json_and_png_for_every_embedded_recipe(recipe, layer, rank, tmp_path):
    """Each recipe at its own setting (one edit, 12 samples: the table, JSON and picture are written)."""
    out = tmp_path / "run"
    assert main(["advise", f"recipe={recipe}", f"out={out}", f"advise.layers=[{layer}]", f"advise.ranks=[{rank}]",
                 "trainer.max_steps=20", *QUICK]) == 0
    (row,) = read(out)["rows"]
    assert row["current"] and row["layer"] == layer
    key = "efficacy" if recipe != "reflection" else "reach_at_matches"
    assert row[key] == row[key]  # measured, not NaN


def test_advise_on_a_users_model_without_a_segmenter(tmp_path):
    """A checkpoint and an official request, no world: the measures that need no segmenter."""
    torch.save(get_world("churches").load_generator().state_dict(), tmp_path / "church.pt")
    out = tmp_path / "run"
    assert main(["advise", "recipe=domes_to_trees", "model.world=null", f"model.checkpoint={tmp_path / 'church.pt'}",
                 f"edit.request={stored_request_path('domes_to_trees')}", f"out={out}", "advise.layers=[layer6,layer7]",
                 "advise.ranks=[1]", *QUICK]) == 0
    result = read(out)
    assert (result["efficacy_key"], result["change_key"]) == ("reach_at_matches", "change_elsewhere")
    for r in result["rows"]:
        assert 0 < r["reach_at_matches"] <= 2 and r["change_elsewhere"] > 0 and 0 < r["context_top_share"] <= 1
        assert "efficacy" not in r


@pytest.mark.parametrize("argv, message", [
    (["advise.start=50"], "overlaps the selection pool (0–99)"),
    (["advise.start=1500"], "overlaps the test range (1000–1999)"),
    (["advise.layers=[layer99]"], "advise.layers names 'layer99', not a rewritable layer"),
    (["advise.ranks=[0]"], "every rank of advise.ranks must be ≥ 1"),
])
def test_bad_advise_settings_are_one_line_exit_2(argv, message, tmp_path, capsys):
    assert main(["advise", "recipe=domes_to_trees", f"out={tmp_path / 'run'}", *argv, *QUICK]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
