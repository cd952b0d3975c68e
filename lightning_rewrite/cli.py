"""The command line: ``python -m lightning_rewrite COMMAND [key=value ...]`` (OmegaConf dotlist
overrides). Commands so far: ``pretrain`` (train a world's generator), ``segmenter`` (train a
world's segmenter), ``layers`` (list a checkpoint's rewritable layers)."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from omegaconf import OmegaConf
from rich.console import Console

from .errors import RewriteError

DEFAULTS: dict[str, dict] = {
    "pretrain": {"world": "churches", "out": None, "iterations": 10_000, "batch_size": 16, "seed": 0,
                 "sample_every": 250, "checkpoint_every": 100, "progress": True, "export": None},
    "segmenter": {"world": "churches", "steps": 1500, "batch_size": 32, "seed": 0, "export": None,
                  "progress": True},
    "layers": {"checkpoint": None, "json": False},
}
HELP = {
    "pretrain": "train a world's generator (resumable; writes samples/, checkpoints/, logs/, generator.safetensors)",
    "segmenter": "train a world's segmenter on fresh renders and report its IoU",
    "layers": "list the rewritable layers of a generator checkpoint",
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
    from .worlds.pretrain import pretrain

    cfg["out"] = cfg["out"] or f"runs/pretrain/{cfg['world']}"
    pretrain(**cfg)


def _segmenter(cfg: dict) -> None:
    from .worlds.segmenter import train_segmenter

    train_segmenter(**cfg)


def _layers(cfg: dict) -> None:
    from .models.__main__ import main as layers_main

    if not cfg["checkpoint"]:
        raise RewriteError("layers needs checkpoint=PATH (a .pt, .pth, .pkl or .safetensors generator)")
    code = layers_main([cfg["checkpoint"]] + (["--json"] if cfg["json"] else []))
    if code:
        raise SystemExit(code)


COMMANDS: dict[str, Callable[[dict], None]] = {"pretrain": _pretrain, "segmenter": _segmenter, "layers": _layers}


def _usage() -> str:
    lines = ["usage: python -m lightning_rewrite COMMAND [key=value ...]", "", "commands:"]
    for name, text in HELP.items():
        keys = ", ".join(f"{k}={v}" for k, v in DEFAULTS[name].items())
        lines.append(f"  {name:10s} {text}\n  {'':10s} keys: {keys}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    console = Console(stderr=True)
    if not argv or argv[0] in ("-h", "--help", "help"):
        Console().print(_usage(), highlight=False, soft_wrap=True)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        console.print(f"[red]error:[/red] unknown command {command!r}; valid commands: {', '.join(COMMANDS)}",
                      highlight=False, soft_wrap=True)
        return 2
    if any(a in ("-h", "--help") for a in rest):
        Console().print(_usage(), highlight=False, soft_wrap=True)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        COMMANDS[command](_config(command, rest))
    except RewriteError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        return 2
    return 0
