"""The embedded worlds, measured: segmenter IoU on fresh renders, what each shipped generator's
samples show against the renderer's own shares, the kitchens rule, and a rank-1 dome→tree edit.

Prints a table, writes ``benchmarks/results/worlds.json`` and, per world, a PNG of 32 samples
beside 32 renders (``benchmarks/results/worlds_<name>.png``). Run:
``python benchmarks/worlds.py [--n 1000] [--worlds churches faces kitchens]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from rich.console import Console
from rich.table import Table

from lightning_rewrite import RewriteError, RewriteModule
from report import output, output_arguments  # benchmarks/report.py
from lightning_rewrite.engine import images as pictures
from lightning_rewrite.callbacks import KeyCovariance
from lightning_rewrite.models import load_generator
from lightning_rewrite.worlds import get_world
from lightning_rewrite.worlds.measures import region_efficacy, rule_correlation, shares
from lightning_rewrite.worlds.segmenter import evaluate
from lightning_rewrite.worlds.selections import copy_paste_request, segment_samples

RULES = {"churches": ("dome", "spire", "tree", "watermark", "window"), "faces": ("teeth",),
         "kitchens": ("window", "reflection")}
#: Held-out samples for measuring edits start here (selections come from samples 0–99).
HELD_OUT = 1000


def dome_to_tree_edit(world, generator, segmenter, before: torch.Tensor, layer: str = "layer6", steps: int = 400,
                      n: int = 200) -> dict:
    """Rank-1 edit from one copy/paste pair and four context images; efficacy on ``n`` held-out
    samples, whose unedited labels ``before`` (from sample HELD_OUT on) are given."""
    request = copy_paste_request(generator, segmenter, world.classes, "dome", "tree")
    module = RewriteModule(generator, layer, request, method="rank_s", rank=1)
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[KeyCovariance(samples=1000, cache_dir=False,
                                                                              progress=False)])
    start = time.perf_counter()
    trainer.fit(module)
    seconds = time.perf_counter() - start
    n = min(n, len(before))
    _, after = segment_samples(module.edited_generator().eval(), segmenter, range(HELD_OUT, HELD_OUT + n))
    before = before[:n]
    return {"layer": layer, "steps": steps, "held_out": n, "edit_seconds": round(seconds, 1),
            "request": {"object": request.object.sample, "paste": request.paste.sample,
                        "context": [c.sample for c in request.context]},
            "dome_to_tree_efficacy": round(region_efficacy(before, after, world.classes, "dome", "tree"), 4)}


def measure(name: str, n: int, out: Path, generator_path: Path | None = None, edit: bool = True) -> dict:
    world = get_world(name)
    segmenter = world.load_segmenter()
    row: dict = {"segmenter_iou": evaluate(segmenter, name, n)}
    renders = world.render(n, seed=7_000_000)
    row["renderer_shares"] = shares(renders.labels, world.classes, RULES[name])
    try:
        generator = load_generator(generator_path) if generator_path else world.load_generator()
    except RewriteError as e:  # a world without a shipped generator is reported, not fatal
        row["generator"] = f"missing: {e}"
        return row
    card = (generator_path or world.weights("generator")).with_suffix(".json")
    if card.is_file():
        row["generator_card"] = {k: v for k, v in json.loads(card.read_text()).items() if k != "loss"}
    images, labels = segment_samples(generator, segmenter, range(HELD_OUT, HELD_OUT + n))
    row["sample_shares"] = shares(labels, world.classes, RULES[name])
    row["share_gap_points"] = {k: round(100 * (row["sample_shares"][k] - row["renderer_shares"][k]), 1)
                               for k in RULES[name]}
    if name == "kitchens":
        row["rule_correlation_samples"] = rule_correlation(images, labels, world.classes)
        row["rule_correlation_renders"] = rule_correlation(renders.images, renders.labels, world.classes)
    shown = range(HELD_OUT, HELD_OUT + 32)
    rows = [pictures.Row(pictures.unit(images[i:i + 8]), "generator", [f"#{j}" for j in shown[i:i + 8]])
            for i in range(0, 32, 8)]
    rows += [pictures.Row(pictures.unit(renders.images[i:i + 8]), "renderer") for i in range(0, 32, 8)]
    title = f"{name}: 32 generator samples (seed-1 latents from {HELD_OUT}) above 32 renders of the procedural world"
    pictures.save_png(pictures.figure(rows, title), out / f"worlds_{name}.png")
    if name == "churches" and edit:
        row["edit"] = dome_to_tree_edit(world, generator, segmenter, labels)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--worlds", nargs="+", default=["churches", "faces", "kitchens"])
    output_arguments(parser, "")
    parser.add_argument("--generator", type=Path, help="measure this generator file instead of the shipped one "
                                                        "(with a single --worlds entry)")
    parser.add_argument("--no-edit", action="store_true", help="skip the dome→tree edit")
    args = parser.parse_args()
    args.out = output(args, "")
    if args.generator and len(args.worlds) != 1:
        parser.error("--generator needs exactly one --worlds entry")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {name: measure(name, args.n, args.out, args.generator, not args.no_edit) for name in args.worlds}
    table = Table(title=f"embedded worlds (n = {args.n} fresh renders / samples)")
    for col in ("world", "measure", "value"):
        table.add_column(col)
    for name, row in results.items():
        for key, value in row.items():
            table.add_row(name, key, json.dumps(value) if not isinstance(value, str) else value)
    Console().print(table)
    path = args.out / "worlds.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**previous, **results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
