"""The command line: ``python -m lightning_rewrite COMMAND [recipe=NAME] [key=value ...]``
(OmegaConf dotlist overrides over a recipe YAML and the schemas in ``config.py``). It parses and
dispatches; each command is a module of this package with a ``run`` function. Bad input is one
error line and exit code 2, with nothing written."""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.markup import escape

from ..errors import RewriteError, shortened

#: The exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130

#: Recipe commands (they read a RunConfig) and what each does.
RECIPE_COMMANDS = {
    "fit": "make the recipe's edit; writes the edited generator, edit.safetensors/.json, before_after.png, metrics.json",
    "test": "measure an edit on held-out samples (with and without it); writes <out>/test/metrics.json and grids",
    "sample": "draw sample.n images from the model with model.edits applied; writes <out>/sample/samples.png",
    "select": "choose the recipe's selections among the world's samples; writes <out>/select/request.json and "
              "selections.png (stored with the recipe under recipes/requests/, fit uses them without segmenting)",
    "stats": "compute and cache the key statistics of the model at edit.layer",
    "advise": "which layer and rank to rewrite: every candidate edit made and measured on validation samples; "
              "writes <out>/advise/advise.json and advise.png, prints the table and the suggested setting",
    "ui": "the Copy-Paste-Context interface in the browser (paint, execute, save); prints its URL, writes <out>/ui/ "
          "on Save",
    "layers": "list the rewritable layers of the model (model.checkpoint=PATH or the world's generator)",
}
#: World commands (each reads its own schema) and what each does.
WORLD_COMMANDS = {
    "pretrain": "train a world's generator (resumable; writes samples/, checkpoints/, logs/, generator.safetensors)",
    "segmenter": "train a world's segmenter on fresh renders and report its IoU",
}
COMMANDS = (*RECIPE_COMMANDS, *WORLD_COMMANDS)
#: Where each recipe command writes, below the run directory (``fit`` writes the run directory itself).
SUBDIRECTORY = {"test": "test", "sample": "sample", "select": "select", "ui": "ui", "advise": "advise"}
#: Commands that need a recipe named.
NEED_RECIPE = ("fit", "test", "advise")


def _command(name: str) -> ModuleType:
    """The command's module (its ``run`` does the work), imported only when it runs."""
    return importlib.import_module(f".{name}", __package__)


def _check_outputs(command: str, cfg, out: Path) -> None:  # noqa: ANN001 - a DictConfig
    """Refuse, before any work, an output the tool did not write (see ``rundir``)."""
    from .rundir import check_out

    if command == "fit":
        check_out(out, "fit", cfg.overwrite)
    elif command in SUBDIRECTORY:
        check_out(out, command, overwrite=True, replacing=False)  # a run directory of the tool, or a new one
        check_out(out / SUBDIRECTORY[command], command)


def _run_recipe(command: str, overrides: list[str]) -> None:
    from . import config

    cfg = config.load_config(overrides, require_recipe=command in NEED_RECIPE)
    if cfg.print_config:
        if cfg.out is None:
            cfg.out = str(config.out_dir(cfg))  # where this run would write, not null
        Console().print(config.to_yaml(cfg), highlight=False, soft_wrap=True, markup=False)
        return
    out = config.out_dir(cfg)
    _check_outputs(command, cfg, out)
    _command(command).run(cfg, overrides, out, Console(markup=False))  # paths and values print as typed


def _normalized(args: list[str]) -> list[str]:
    """LightningCLI's spellings as synonyms: ``--edit.rank=2`` is ``edit.rank=2``; ``--config
    my.yaml`` (or ``--config=my.yaml``) is ``recipe=my.yaml``."""
    out, rest = [], iter(args)
    for arg in rest:
        if arg == "--config":
            path = next(rest, None)
            if path is None:
                raise RewriteError("--config needs a recipe file: --config my_recipe.yaml (or recipe=my_recipe.yaml)")
            out.append(f"recipe={path}")
        elif arg.startswith("--config="):
            out.append("recipe=" + arg.partition("=")[2])
        elif arg.startswith("--") and "=" in arg:
            out.append(arg[2:])
        else:
            out.append(arg)
    return out


def _usage(command: str | None = None) -> str:
    from . import config

    lines = ["usage: python -m lightning_rewrite COMMAND [recipe=NAME] [key=value ...]", "", "commands:"]
    for name, text in {**RECIPE_COMMANDS, **WORLD_COMMANDS}.items():
        if command in (None, name):
            lines.append(f"  {name:10s} {text}")
            if name in WORLD_COMMANDS:
                for key, (default, meaning) in config.field_help(config.WORLD_SCHEMAS[name]).items():
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
        console.print(f"[red]error:[/red] unknown command {escape(repr(shortened(command, 60)))}; valid commands: "
                      f"{', '.join(COMMANDS)}", highlight=False, soft_wrap=True)
        return 2
    if any(a in ("-h", "--help") for a in rest):
        Console().print(_usage(command), highlight=False, soft_wrap=True, markup=False)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .quiet import quiet_libraries

    ctrl_c.install()
    try:
        rest = _normalized(rest)
        with quiet_libraries():
            if command in WORLD_COMMANDS:
                from .config import load_world_config

                _command(command).run(load_world_config(command, rest))
            else:
                _run_recipe(command, rest)
    except RewriteError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)  # user text is not markup
        return 2
    except KeyboardInterrupt:
        return _interrupted(console, command)
    except SystemExit as e:
        if e.code == 1 and ctrl_c.pressed:  # Lightning answers Ctrl-C inside a Trainer with its own exit(1)
            return _interrupted(console, command)
        raise
    finally:
        ctrl_c.restore()
    return 0


class _CtrlC:
    """Remembers a Ctrl-C (SIGINT) while a command runs, and raises KeyboardInterrupt as Python
    does: Lightning turns it into ``exit(1)``, which the command line then reports as interrupted."""

    def __init__(self) -> None:
        self.pressed = False
        self._previous = None

    def install(self) -> None:
        self.pressed = False
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.pressed = True
        raise KeyboardInterrupt

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


ctrl_c = _CtrlC()


def _interrupted(console: Console, command: str) -> int:
    console.print(f"[red]interrupted:[/red] {command} stopped; nothing it was writing was kept, and what was there "
                  "before (a previous run directory, the statistics cache) is intact", highlight=False, soft_wrap=True)
    return INTERRUPTED
