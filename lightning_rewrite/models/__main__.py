"""``python -m lightning_rewrite.models CHECKPOINT``: list a generator's rewritable layers."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from ..errors import RewriteError
from .loading import load_generator
from .summary import describe_layers, layers_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightning_rewrite.models",
                                     description="List the rewritable layers of a generator checkpoint.")
    parser.add_argument("checkpoint", help="a .pt/.pth/.safetensors/.pkl generator checkpoint")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        model = load_generator(args.checkpoint)
        rows = describe_layers(model)
    except RewriteError as e:
        Console(stderr=True, markup=False).print(f"error: {e}", highlight=False, soft_wrap=True)
        return 2
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
    else:
        Console(markup=False).print(layers_table(rows, title=f"{type(model).__name__}: {args.checkpoint}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
