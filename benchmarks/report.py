"""Shared output of the benchmark scripts: machine facts, a rich table and a JSON file."""

from __future__ import annotations

import json
import platform
import resource
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from lightning_rewrite import __version__


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
