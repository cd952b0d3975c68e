"""The command line: help lists the commands and keys; bad input is one line and exit code 2."""

from __future__ import annotations

import pytest
import torch

from lightning_rewrite.app.cli import main
from lightning_rewrite.models import StyleGAN2Generator

pytestmark = pytest.mark.slow  # runs the commands


def test_help_lists_commands_and_their_keys(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for text in ("pretrain", "segmenter", "layers", "world=churches", "iterations=10000"):
        assert text in out


@pytest.mark.parametrize("command,function", [("pretrain", "lightning_rewrite.worlds.pretrain:pretrain"),
                                              ("segmenter", "lightning_rewrite.worlds.segmenter:train_segmenter")])
def test_a_world_command_has_the_defaults_of_the_function_it_calls(command, function):
    """The command's schema (what --help shows) and the library function agree on every default."""
    import dataclasses
    import importlib
    import inspect

    from lightning_rewrite.app.config import WORLD_SCHEMAS

    module, name = function.split(":")
    signature = inspect.signature(getattr(importlib.import_module(module), name))
    schema = {f.name: f.default for f in dataclasses.fields(WORLD_SCHEMAS[command])}
    assert set(schema) == set(signature.parameters)
    defaults = {k: p.default for k, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}
    assert defaults == {k: schema[k] for k in defaults}


@pytest.mark.parametrize("argv,message", [
    (["train"], "unknown command 'train'; valid commands: fit, test, sample, select, stats, advise, ui, layers, pretrain, segmenter"),
    (["pretrain", "wrld=churches"], "unknown key 'wrld' for pretrain; did you mean 'world'?"),
    (["pretrain", "world=castles"], "unknown world 'castles'; choose one of: churches, faces, kitchens"),
    (["pretrain", "churches"], "argument 'churches' is not key=value"),
])
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing written


def test_layers_command_reads_a_checkpoint(tmp_path, capsys):
    model = StyleGAN2Generator(16, style_dim=8, n_mlp=1, widths={4: 8, 8: 6, 16: 4})
    torch.save(model.state_dict(), tmp_path / "g.pt")
    assert main(["layers", f"model.checkpoint={tmp_path / 'g.pt'}"]) == 0
    assert "layer6" in capsys.readouterr().out
