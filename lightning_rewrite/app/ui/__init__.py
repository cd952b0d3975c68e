"""``ui``: the paper's Copy-Paste-Context interface in the browser (Sect. 4). Paint a region and
Copy it, Paste it on another sample, add Context, Execute; the grid re-renders with the new rule.
Save writes the edit files into ``<out>/ui``. Serves on loopback unless ``ui.host`` says otherwise."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console

from ..assemble import load_model
from .server import LOOPBACK, bind, server_for
from .session import Session


def run(cfg: DictConfig, overrides: list[str], out: Path, console: Console) -> None:
    sock = bind(cfg.ui.host, cfg.ui.port)
    model = load_model(cfg, with_segmenter=False)
    session = Session(cfg, model, out)  # refuses an unknown edit.layer, naming the rewritable ones
    host, port = sock.getsockname()[:2]
    if cfg.ui.host not in LOOPBACK:
        console.print(f"warning: serving on {cfg.ui.host}: anyone who can reach this address can edit the model and "
                      "write into the run directory", style="yellow", highlight=False)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"lightning-rewrite ui ({cfg.recipe}): http://{shown}:{port}/  — Save writes {out / 'ui'}; Ctrl-C stops",
                  highlight=False, soft_wrap=True)
    server_for(session, sock, cfg.ui.max_upload_mb).run(sockets=[sock])
