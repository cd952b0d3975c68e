"""The command line: help lists the commands and keys; bad input is one line and exit code 2."""

from __future__ import annotations

import pytest
import torch

from lightning_rewrite.app.cli import main
from lightning_rewrite.models import StyleGAN2Generator


def test_help_lists_commands_and_their_keys(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for text in ("pretrain", "segmenter", "layers", "world=churches", "iterations=10000"):
        assert text in out


@pytest.mark.parametrize("argv,message", [
    (["train"], "unknown command 'train'; valid commands: fit, test, sample, select, stats, layers, pretrain, segmenter"),
    (["pretrain", "wrld=churches"], "unknown key 'wrld' for pretrain; valid keys: world, out,"),
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
