"""Shared output of the benchmark scripts: machine facts, a rich table and a JSON file, written
under ``runs/benchmarks/`` unless ``--update`` asks for ``benchmarks/results/`` (the files the
README quotes: a user's run never rewrites them)."""

from __future__ import annotations

import argparse
import json
import platform
import resource
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from lightning_rewrite import __version__


RESULTS = Path(__file__).parent / "results"
#: Where a benchmark writes unless ``--update`` (relative to the working directory).
SCRATCH = Path("runs") / "benchmarks"


def output_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out`` and ``--update`` for a script whose output is ``name`` (a file or a directory)."""
    parser.add_argument("--out", type=Path, help=f"where to write (default {SCRATCH / name}; with --update "
                                                 f"benchmarks/results/{name})")
    parser.add_argument("--update", action="store_true",
                        help="write benchmarks/results/, the numbers the README quotes (a developer's re-run)")


def output(args: argparse.Namespace, name: str) -> Path:
    """The path ``--out`` names, else ``name`` under ``benchmarks/results/`` (``--update``) or ``runs/benchmarks/``."""
    return args.out if args.out is not None else (RESULTS if args.update else SCRATCH) / name


def machine() -> dict:
    """Version, torch, processor, threads and this process's peak RSS (MB)."""
    return {"version": __version__, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def report(result: dict, title: str, out: Path) -> None:
    """Print ``result`` as a two-column table and write it as JSON to ``out``."""
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    Console().print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
