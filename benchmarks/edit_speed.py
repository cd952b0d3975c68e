"""How fast an edit is made, against the official 2020 schedule, on three cases: (a) the
embedded churches ``domes_to_trees`` (layer 6), (b) ``smile`` (faces, layer 8), (c) a 256-px
StyleGAN2 in rosinality's layout with random weights and an official-format copy request at
layer 8 (both written by this script), run through ``domes_to_trees_paper``.

Each case runs in a process of its own (its peak RSS is its own), and there the official
schedule (``edit.solver=official``: W, Adam 0.05 constant, 2001 steps, projected every 10,
from W0, loss on the crop) and the default solver on the same key statistics. Reported: the
seconds the default takes to reach the official schedule's final loss (from the start of
``trainer.fit``, preparation included) and the ratio ``speedup_<case>``, both final losses,
ms per loss evaluation against the bare forward and backward of the layer on the crop (its own
forward at W0 + Λ Dᵀ) and against the bare evaluation the method makes (through the S projected
keys, ``engine/lowrank.py``: the solver's and Lightning's own share),
prepare seconds, peak RSS, the statistics' time against the bare keys pass (both warm, the same
latents and batches, alternated five times, the median ratio), one 1-image render.

Prints a table, writes ``benchmarks/results/edit_speed.json`` and ``edit_speed.png`` (loss
against wall time, log-log). Run: ``python benchmarks/edit_speed.py [--cases a b c] [--samples 1000]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from PIL import Image, ImageDraw

from lightning_rewrite import EditRequest
from lightning_rewrite.app.assemble import build_request, check_layer, load_model
from lightning_rewrite.app.config import load_config
from lightning_rewrite.app.fit import make_module
from lightning_rewrite.app.quiet import quiet_libraries
from lightning_rewrite.app.stats import key_statistics
from lightning_rewrite.callbacks import ProjectedOptimizer
from lightning_rewrite.engine.methods import Method, masked_loss
from lightning_rewrite.models import StyleGAN2Generator
from report import machine, output, output_arguments, report  # benchmarks/report.py

CASES = {"a": "churches domes_to_trees, layer 6", "b": "faces smile, layer 8",
         "c": "256-px StyleGAN2 (random weights), copy at layer 8"}


def paper_model(directory: Path) -> list[str]:
    """Write case (c)'s checkpoint and official-format request; the overrides that use them."""
    torch.manual_seed(0)
    generator = StyleGAN2Generator(256, 512, 8, channel_multiplier=2).eval()
    state = {k: v for k, v in generator.state_dict().items() if k != "latent_avg"}
    torch.save({"g_ema": state, "latent_avg": torch.randn(512)}, directory / "church.pt")
    box = lambda t, l, b, r: torch.zeros(256, 256).index_fill_(0, torch.arange(t, b), 1) * \
        torch.zeros(256, 256).index_fill_(1, torch.arange(l, r), 1)  # noqa: E731
    request = EditRequest.copy(object=(3, box(40, 40, 120, 110)), paste=(5, box(90, 120, 170, 200)),
                               context=[(5, box(90, 120, 170, 200)), (8, box(60, 60, 140, 150))])
    request.save(directory / "dome2tree.json")
    return ["recipe=domes_to_trees_paper", f"model.checkpoint={directory / 'church.pt'}",
            f"edit.request={directory / 'dome2tree.json'}"]


def seconds(f) -> float:  # noqa: ANN001
    """Seconds one call of ``f`` takes."""
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def timed(f, repeats: int = 5) -> float:  # noqa: ANN001
    """Seconds per call of ``f`` (after one warm-up call)."""
    f()
    start = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - start) / repeats


def run_solver(overrides: list[str], model, request, moment) -> dict:  # noqa: ANN001
    """One edit with the given solver settings; the loss at every evaluation against wall time."""
    cfg = load_config(overrides)
    module = make_module(cfg, model, request)
    module.set_key_moment(moment)
    trace: list[tuple[float, float]] = []
    losses = module.method.losses

    def recorded() -> dict:
        out = losses()
        trace.append((time.perf_counter(), float(out["loss"].detach())))
        return out
    module.method.losses = recorded
    callbacks = [ProjectedOptimizer(cfg.edit.project_every)] if module.method.projects else []
    trainer = pl.Trainer(max_steps=cfg.trainer.max_steps, accelerator="cpu", devices=1, logger=False, callbacks=callbacks,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(module)
    seconds = time.perf_counter() - start
    module.method.losses = losses
    method = module.method
    final = method.report()["constraint_loss"]

    def evaluation(values) -> None:  # noqa: ANN001
        for p in method.trainable():
            p.grad = None
        masked_loss(values(), method.goal.target, method.goal.region, method.settings.loss).backward()
    bare = timed(lambda: evaluation(lambda: Method.goal_values(method)))  # the layer's own forward on the crop
    bare_method = timed(lambda: evaluation(method.goal_values))  # what the method evaluates (low-rank where offered)
    optimise = seconds - module.prepare_seconds
    return {"seconds": seconds, "prepare_seconds": module.prepare_seconds, "final_loss": final,
            "steps": trainer.global_step, "evaluations": len(trace), "ms_per_evaluation": 1000 * optimise / len(trace),
            "bare_ms": 1000 * bare, "bare_method_ms": 1000 * bare_method, "trace": [(t - start, loss) for t, loss in trace],
            "solver": method.solver_name(), "crop": method.crop.describe() if method.crop is not None else "full map",
            "low_rank": method.low_rank}


def case(name: str, samples: int, directory: Path) -> dict:
    """Both solvers on one case, in this process."""
    overrides = {"a": ["recipe=domes_to_trees"], "b": ["recipe=smile"]}.get(name) or paper_model(directory)
    overrides += ["progress=false", "logger=none", f"stats.samples={samples}", "stats.cache=false"]
    cfg = load_config(overrides)
    model = load_model(cfg, with_segmenter=False)
    request = build_request(cfg, model)
    hooked, latents = check_layer(model, cfg.edit.layer), model.latents  # the loaded generator, not a copy
    found, _ = key_statistics(cfg, hooked, latents)  # also the warm-up of the passes timed below

    def keys_pass() -> None:
        with torch.no_grad():
            for start in range(0, samples, cfg.stats.batch_size):
                hooked.keys(latents.take(range(start, min(samples, start + cfg.stats.batch_size))))
    pairs = []  # alternated, so that a noisy neighbour slows both alike; the median pair reported
    for _ in range(5):
        pairs.append((seconds(keys_pass), seconds(lambda: key_statistics(cfg, hooked, latents))))
    bare_keys, stats_seconds = sorted(pairs, key=lambda p: p[0] / p[1])[2]
    z = latents.take([0])
    with torch.no_grad():
        render = timed(lambda: model.generator(z))
    official = run_solver(overrides + ["edit.solver=official"], model, request, found.moment)
    gc.collect()  # the official run's copy of the generator goes before the default makes its own
    default = run_solver(overrides, model, request, found.moment)
    reached = next((t for t, loss in default["trace"] if loss <= official["final_loss"]), None)
    return {"case": CASES[name], "stats_seconds": stats_seconds, "bare_keys_seconds": bare_keys,
            "stats_throughput_vs_bare": bare_keys / stats_seconds, "render_seconds": render,
            "official": official, "default": default, "default_reaches_official_seconds": reached,
            "speedup": official["seconds"] / reached if reached else 0.0,
            "prepare_and_optimise_in_renders": default["seconds"] / render, **machine()}


def plot(results: dict[str, dict], path: Path) -> None:
    """Loss against wall time (log-log), one panel per case: official grey, default black."""
    w, h, pad = 420, 300, 50
    image = Image.new("RGB", (w * len(results), h + 30), "white")
    draw = ImageDraw.Draw(image)
    for i, (name, r) in enumerate(results.items()):
        traces = {"official": r["official"]["trace"], "default": r["default"]["trace"]}
        points = [p for t in traces.values() for p in t if p[0] > 0 and p[1] > 0]
        t0, t1 = math.log10(min(p[0] for p in points)), math.log10(max(p[0] for p in points))
        l0, l1 = math.log10(min(p[1] for p in points)), math.log10(max(p[1] for p in points))
        ox = i * w

        def xy(t: float, loss: float) -> tuple[float, float]:
            return (ox + pad + (math.log10(t) - t0) / max(t1 - t0, 1e-9) * (w - 2 * pad),
                    h - pad + 20 - (math.log10(loss) - l0) / max(l1 - l0, 1e-9) * (h - 2 * pad))
        draw.rectangle([ox + pad, 20 + pad - 20, ox + w - pad, h - pad + 20], outline="black")
        for label, colour in (("official", (150, 150, 150)), ("default", (0, 0, 0))):
            line = [xy(t, loss) for t, loss in traces[label] if t > 0 and loss > 0]
            if len(line) > 1:
                draw.line(line, fill=colour, width=2)
        draw.text((ox + pad, 5), f"({name}) {r['case']}", fill="black")
        draw.text((ox + pad, h - pad + 25), f"wall seconds {10 ** t0:.2g} to {10 ** t1:.2g} (log); "
                  f"loss {10 ** l0:.3g} to {10 ** l1:.3g} (log)", fill="black")
        draw.text((ox + pad + 5, 22 + pad - 20), "grey: official schedule, black: default", fill="black")
    image.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--samples", type=int, default=1000, help="latents of the key statistics")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # run one case here, write its JSON to --json
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    output_arguments(parser, "edit_speed.json")
    args = parser.parse_args()
    args.out = output(args, "edit_speed.json")
    if args.case:
        with tempfile.TemporaryDirectory() as directory, quiet_libraries():
            args.json.write_text(json.dumps(case(args.case, args.samples, Path(directory))))
        return
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        for k, name in enumerate(args.cases, 1):
            print(f"case {k} of {len(args.cases)}: {name} (a process of its own: statistics over {args.samples} "
                  "latents, the official schedule, the default solver; minutes)", flush=True)
            out = Path(directory) / f"{name}.json"
            subprocess.run([sys.executable, __file__, "--case", name, "--json", str(out), "--samples", str(args.samples)],
                           check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            results[name] = json.loads(out.read_text())
    rows: dict[str, object] = {}
    for name, r in results.items():
        o, d = r["official"], r["default"]
        rows.update({f"speedup_{name}": r["speedup"], f"{name}/official_final_loss": o["final_loss"],
                     f"{name}/default_final_loss": d["final_loss"], f"{name}/official_seconds": o["seconds"],
                     f"{name}/default_seconds": d["seconds"], f"{name}/default_reaches_official_seconds":
                     r["default_reaches_official_seconds"], f"{name}/default_solver": d["solver"],
                     f"{name}/default_steps": d["steps"], f"{name}/default_evaluations": d["evaluations"],
                     f"{name}/official_ms_per_step": o["ms_per_evaluation"], f"{name}/default_ms_per_evaluation":
                     d["ms_per_evaluation"], f"{name}/bare_forward_backward_ms": d["bare_ms"],
                     f"{name}/overhead_vs_bare": d["ms_per_evaluation"] / d["bare_ms"],
                     f"{name}/default_low_rank": d["low_rank"], f"{name}/bare_low_rank_ms": d["bare_method_ms"],
                     f"{name}/overhead_vs_bare_low_rank": d["ms_per_evaluation"] / d["bare_method_ms"],
                     f"{name}/prepare_seconds": d["prepare_seconds"], f"{name}/crop": d["crop"],
                     f"{name}/stats_throughput_vs_bare": r["stats_throughput_vs_bare"],
                     f"{name}/render_seconds": r["render_seconds"],
                     f"{name}/prepare_and_optimise_in_renders": r["prepare_and_optimise_in_renders"],
                     f"{name}/peak_rss_mb": r["peak_rss_mb"]})
    report({**machine(), "samples": args.samples, **rows}, "edits: the official schedule against the default",
           args.out)
    args.out.with_suffix(".traces.json").write_text(json.dumps(results) + "\n")
    plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
