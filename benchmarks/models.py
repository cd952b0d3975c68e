"""Model speed on this machine: the 256-px StyleGAN2 (style 512, 8 mapping layers, channel
multiplier 2, random weights) — images per second with split vs fused modulated convolutions,
and seconds to stream the keys of layer 8 for 100 samples.

Prints a table and writes ``benchmarks/results/models.json``. Run:
``python benchmarks/models.py [--batch 4] [--repeats 3] [--samples 100]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from lightning_rewrite import HookedLayer, LatentSampler
from lightning_rewrite.engine.stats import collect_second_moment
from lightning_rewrite.models import StyleGAN2Generator
from report import machine, output, output_arguments, report  # benchmarks/report.py


def images_per_second(model: StyleGAN2Generator, z: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        model(z[:1])  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            model(z)
    return repeats * len(z) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=100)
    output_arguments(parser, "models.json")
    args = parser.parse_args()
    args.out = output(args, "models.json")
    torch.manual_seed(0)
    model = StyleGAN2Generator(256, 512, 8, channel_multiplier=2).eval()
    z = LatentSampler(512).take(range(args.batch))

    rows: dict[str, float | int | str] = {}
    for fused in (False, True):
        model.set_fused(fused)
        rows[f"{'fused' if fused else 'split'}_images_per_second"] = images_per_second(model, z, args.repeats)
    model.set_fused(False)
    with torch.no_grad():
        a = model(z[:2])
        b = model.set_fused(True)(z[:2])
    model.set_fused(False)
    rows["split_vs_fused_max_relative_difference"] = float((a - b).abs().max() / b.abs().max())

    hooked = HookedLayer(model, "layer8")
    start = time.perf_counter()
    moment = collect_second_moment(hooked, LatentSampler(512), args.samples, batch_size=10, progress=False)
    rows["layer8_stats_seconds"] = time.perf_counter() - start
    rows["layer8_stats_keys"] = moment.count

    result = {**machine(), "batch": args.batch, "repeats": args.repeats, "samples": args.samples,
              "parameters": sum(p.numel() for p in model.parameters()), **rows}
    report(result, f"256-px StyleGAN2 on this machine (random weights, batch of {args.batch})", args.out)

if __name__ == "__main__":
    main()
