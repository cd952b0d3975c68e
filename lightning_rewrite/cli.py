"""The command line: ``python -m lightning_rewrite COMMAND [recipe=NAME] [key=value ...]``
(OmegaConf dotlist overrides over a recipe YAML and the schema in ``config.py``).

Recipe commands: ``fit`` (make an edit), ``test`` (measure it), ``sample`` (draw images with a
stack of edits), ``stats`` (compute and cache key statistics), ``layers`` (list rewritable
layers). World commands: ``pretrain`` (train a world's generator), ``segmenter`` (train its
segmenter). Bad input is one error line and exit code 2, with nothing written."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Callable

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from .errors import RewriteError

#: The world commands' keys: default and meaning.
WORLD_KEYS: dict[str, dict[str, tuple]] = {
    "pretrain": {
        "world": ("churches", "the world whose generator to train: churches, faces, kitchens"),
        "out": (None, "training directory (default runs/pretrain/<world>); resumes one pretrain wrote"),
        "iterations": (10_000, "G/D iterations to reach (a resumed run continues to this count)"),
        "batch_size": (16, "renders per batch"),
        "seed": (0, "seed of the weights and the render stream"),
        "sample_every": (250, "iterations between sample grids (samples/iter_N.png)"),
        "checkpoint_every": (100, "iterations between resumable checkpoints"),
        "progress": (True, "show a progress bar"),
        "export": (None, "where the EMA generator goes (default out/generator.safetensors)"),
        "oversample": (None, "FLAG:SHARE[,FLAG:SHARE…]: real batches drawn so a rare rule shows at that share"),
        "lr": (2e-3, "Adam's rate (applies to a resumed run too)"),
        "blur": (0.0, "σ in pixels of the blur D judges through (a stage that teaches a fine rule)"),
    },
    "segmenter": {
        "world": ("churches", "the world whose segmenter to train"),
        "steps": (1500, "optimiser steps"),
        "batch_size": (32, "renders per step"),
        "seed": (0, "seed of the weights and the render stream"),
        "export": (None, "where the weights go (default the shipped file)"),
        "progress": (True, "show a progress bar"),
        "init": (None, "weights to fine-tune from: a path, or 'shipped'"),
        "lr": (3e-3, "the one-cycle schedule's peak rate"),
    },
}
DEFAULTS: dict[str, dict] = {command: {k: v[0] for k, v in keys.items()} for command, keys in WORLD_KEYS.items()}
HELP = {
    "fit": "make the recipe's edit; writes the edited generator, edit.safetensors/.json, before_after.png, metrics.json",
    "test": "measure an edit on held-out samples (with and without it); writes <out>/test/metrics.json and grids",
    "sample": "draw sample.n images from the model with model.edits applied; writes <out>/sample/samples.png",
    "select": "choose the recipe's selections among the world's samples; writes <out>/select/request.json and "
              "selections.png (stored with the recipe under recipes/requests/, fit uses them without segmenting)",
    "stats": "compute and cache the key statistics of the model at edit.layer",
    "layers": "list the rewritable layers of the model (model.checkpoint=PATH or the world's generator)",
    "pretrain": "train a world's generator (resumable; writes samples/, checkpoints/, logs/, generator.safetensors)",
    "segmenter": "train a world's segmenter on fresh renders and report its IoU",
}


def _config(command: str, overrides: list[str]) -> dict:
    base = OmegaConf.create(DEFAULTS[command])
    for item in overrides:
        if "=" not in item:
            raise RewriteError(f"argument {item!r} is not key=value; valid keys for {command}: {', '.join(DEFAULTS[command])}")
        key = item.split("=", 1)[0]
        if key not in DEFAULTS[command]:
            raise RewriteError(f"unknown key {key!r} for {command}; valid keys: {', '.join(DEFAULTS[command])}")
    return OmegaConf.to_container(OmegaConf.merge(base, OmegaConf.from_dotlist(overrides)))


def _pretrain(cfg: dict) -> None:
    from .rundir import check_export, claim_directory
    from .worlds import get_world
    from .worlds.pretrain import pretrain

    get_world(cfg["world"])  # an unknown world and a refused export fail before the directory is made
    if cfg["export"]:
        check_export(cfg["export"])
    cfg["out"] = claim_directory(cfg["out"] or f"runs/pretrain/{cfg['world']}", "pretrain", legacy=PRETRAIN_LAYOUT)
    pretrain(**cfg)


def _segmenter(cfg: dict) -> None:
    from .rundir import check_export
    from .worlds.segmenter import train_segmenter

    if cfg["export"]:
        check_export(cfg["export"])
    train_segmenter(**cfg)


#: What ``pretrain`` left in its directory before run directories carried a marker (resumable).
PRETRAIN_LAYOUT = ("checkpoints/last.ckpt", "samples/latest.png")


RECIPE_COMMANDS = ("fit", "test", "sample", "select", "stats", "layers")
WORLD_COMMANDS: dict[str, Callable[[dict], None]] = {"pretrain": _pretrain, "segmenter": _segmenter}
COMMANDS = (*RECIPE_COMMANDS, *WORLD_COMMANDS)


def _table(title: str, rows: dict) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for k, v in rows.items():
        table.add_row(str(k), v if isinstance(v, str) else json.dumps(v))
    return table


#: Where each recipe command writes, below the run directory (``fit`` writes the run directory itself).
SUBDIRECTORY = {"test": "test", "sample": "sample", "select": "select"}


def _check_outputs(command: str, cfg, out: Path) -> None:
    """Refuse, before any work, an output the tool did not write (see ``rundir``)."""
    from .rundir import check_out

    if command == "fit":
        check_out(out, "fit", cfg.overwrite)
    elif command in SUBDIRECTORY:
        check_out(out, command, overwrite=True)  # a run directory of the tool, or a new one
        check_out(out / SUBDIRECTORY[command], command)


def _run_recipe(command: str, overrides: list[str]) -> None:
    from . import config

    cfg = config.load_config(overrides, require_recipe=command in ("fit", "test"))
    if cfg.print_config:
        Console().print(config.to_yaml(cfg), highlight=False, soft_wrap=True)
        return
    out = config.out_dir(cfg)
    _check_outputs(command, cfg, out)
    console = Console()
    if command == "fit":
        from .fit import fit

        metrics = fit(cfg, overrides, out)
        console.print(_table(f"fit {cfg.recipe}: {out}", metrics))
    elif command == "test":
        from .evaluate import test

        edit = Path(cfg.test.edit) if cfg.test.edit else out / "edit.safetensors"
        metrics = test(cfg, out / "test", edit)
        console.print(_table(f"test {cfg.recipe}: {out / 'test'}", metrics))
    elif command == "sample":
        from .build import load_model
        from .rundir import run_directory
        from .sampling import draw, write_samples

        model = load_model(cfg, with_segmenter=False)
        idx = range(cfg.sample.start, cfg.sample.start + cfg.sample.n)
        (samples,) = draw([model.generator], model.latents, idx, cfg.stats.batch_size, cfg.progress)
        with run_directory(out / "sample", "sample", nested=True) as tmp:
            label = f"{len(model.edits)} edit{'s' if len(model.edits) != 1 else ''}" if model.edits else "unedited"
            title = f"{cfg.recipe}: samples {idx.start} to {idx.stop - 1}, " + (
                "edited by " + ", ".join(e.spec.get("recipe") or e.describe() for e in model.edits) if model.edits else "unedited")
            written = write_samples(samples, idx, tmp, cfg.sample.grid, cfg.sample.folder, label, title)
        console.print(f"{len(idx)} samples ({label}) → {out / 'sample'} ({len(written)} files)")
    elif command == "select":
        from . import images
        from .build import chosen_request, load_model
        from .rundir import run_directory

        model = load_model(cfg)
        request = chosen_request(cfg, model)
        with run_directory(out / "select", "select", nested=True) as tmp:
            request.save(tmp / "request.json")
            images.save_png(images.figure([images.selections(request, model.generator, model.latents)],
                                          f"{cfg.recipe}: the selections chosen", legend=True), tmp / "selections.png")
        console.print(f"selections of {cfg.recipe}: samples {request.samples()} → {out / 'select'}")
    elif command == "stats":
        from .build import check_layer, load_model
        from .callbacks import KeyCovariance

        model = load_model(cfg, with_segmenter=False)
        hooked = check_layer(model, cfg.edit.layer)
        cov = KeyCovariance(cfg.stats.samples, cfg.stats.batch_size, None if cfg.stats.cache else False, cfg.progress)
        start = time.perf_counter()
        moment = cov.compute(None, hooked, model.latents)
        console.print(_table(f"key statistics of {cfg.edit.layer}", {
            "keys": moment.count, "dimension": moment.dim, "source": cov.last_source,
            "seconds": round(time.perf_counter() - start, 2), "cache": str(cov.cache_dir) if cov.cache_dir else "off"}))
    else:
        from .build import load_model
        from .models.summary import describe_layers, layers_table

        model = load_model(cfg, with_segmenter=False)
        console.print(layers_table(describe_layers(model.generator)))


def _usage(command: str | None = None) -> str:
    from . import config

    lines = ["usage: python -m lightning_rewrite COMMAND [recipe=NAME] [key=value ...]", "", "commands:"]
    for name, text in HELP.items():
        if command in (None, name):
            lines.append(f"  {name:10s} {text}")
            for key, (default, meaning) in WORLD_KEYS.get(name, {}).items():
                lines.append(f"  {'':10s}   {key}={default}  {meaning}")
    if command is None or command in RECIPE_COMMANDS:
        lines += ["", "recipes (recipe=NAME, required by fit and test):"]
        lines += [f"  {n:22s} {d}" for n, d in config.recipe_summaries().items()]
        lines += ["", "configuration (key=default  meaning; a recipe sets some of them; print_config=true shows the result):"]
        for key, (default, meaning) in config.field_help().items():
            if key in config.RECIPE_ONLY:
                continue
            shown = "NAME" if key == "recipe" else default
            lines.append(f"  {key}={shown}  {meaning}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    console = Console(stderr=True)
    if not argv or argv[0] in ("-h", "--help", "help"):
        Console().print(_usage(), highlight=False, soft_wrap=True, markup=False)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        console.print(f"[red]error:[/red] unknown command {command!r}; valid commands: {', '.join(COMMANDS)}",
                      highlight=False, soft_wrap=True)
        return 2
    if any(a in ("-h", "--help") for a in rest):
        Console().print(_usage(command), highlight=False, soft_wrap=True, markup=False)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .quiet import quiet_libraries

    try:
        with quiet_libraries():
            if command in WORLD_COMMANDS:
                WORLD_COMMANDS[command](_config(command, rest))
            else:
                _run_recipe(command, rest)
    except RewriteError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        return 2
    return 0
