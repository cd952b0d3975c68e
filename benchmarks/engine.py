"""Engine speed on this machine: key statistics streaming and one 2001-step edit.

Prints a table and writes ``benchmarks/results/engine.json``. Run:
``python benchmarks/engine.py [--samples 1000] [--steps 2001]``.
"""

from __future__ import annotations

import argparse
import time

import pytorch_lightning as pl

from lightning_rewrite import HookedLayer, LatentSampler, RewriteModule
from lightning_rewrite.engine.stats import collect_second_moment
from lightning_rewrite.models.blocks import BlocksGenerator, domes_to_trees
from report import machine, output, output_arguments, report  # benchmarks/report.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=2001)
    output_arguments(parser, "engine.json")
    args = parser.parse_args()
    args.out = output(args, "engine.json")
    generator = BlocksGenerator().eval()
    hooked = HookedLayer(generator, "layer3.0")

    start = time.perf_counter()
    moment = collect_second_moment(hooked, LatentSampler(generator.z_dim), args.samples, batch_size=32, progress=False)
    stats_s = time.perf_counter() - start

    rows = {"stats_seconds": stats_s, "stats_keys": moment.count, "keys_per_second": moment.count / stats_s}
    for method, param in (("rank_s", "lambda"), ("rank_s", "projected"), ("full_layer", "lambda")):
        module = RewriteModule(generator, "layer3.0", domes_to_trees(generator), method=method, parametrization=param)
        module.set_key_moment(moment)
        trainer = pl.Trainer(max_steps=args.steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)
        start = time.perf_counter()
        trainer.fit(module)
        seconds = time.perf_counter() - start
        rows[f"{method}/{param}_edit_seconds"] = seconds
        rows[f"{method}/{param}_ms_per_step"] = 1000 * seconds / args.steps

    result = {**machine(), "samples": args.samples, "steps": args.steps, **rows}
    report(result, f"engine on the demo generator (layer3.0, N=32, {args.samples} latents, {args.steps} steps)", args.out)

if __name__ == "__main__":
    main()
