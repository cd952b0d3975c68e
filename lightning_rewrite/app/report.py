"""How a command reports its numbers on the terminal: one rich table of key and value."""

from __future__ import annotations

import json

from rich.table import Table


def table(title: str, rows: dict) -> Table:
    """A two-column table; strings as they are, other values as JSON."""
    out = Table(title=title, show_header=False)
    out.add_column("key", style="bold")
    out.add_column("value")
    for k, v in rows.items():
        out.add_row(str(k), v if isinstance(v, str) else json.dumps(v))
    return out
