"""load_generator on checkpoints written here in rosinality's format; errors in one line."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors.torch import save_file

from lightning_rewrite import LatentSampler, RewriteError
from lightning_rewrite.models import describe_layers, load_generator
from lightning_rewrite.models.stylegan2 import StyleGAN2Generator
from test_stylegan2 import rosinality_layout


def _rosinality_state(size: int = 32, style_dim: int = 64, n_mlp: int = 3, cm: int = 1) -> dict:
    g = torch.Generator().manual_seed(0)
    layout = rosinality_layout(size, style_dim, n_mlp, cm)
    return {k: torch.randn(shape, generator=g) for k, shape in layout.items()}


def test_a_rosinality_checkpoint_loads_with_its_architecture_inferred(tmp_path):
    state = _rosinality_state()
    avg = torch.randn(64)
    path = tmp_path / "church.pt"
    args = argparse.Namespace(size=32, latent=64, n_mlp=3, channel_multiplier=1)  # as rosinality's train.py saves
    torch.save({"g_ema": state, "g": state, "latent_avg": avg, "args": args}, path)
    model = load_generator(path)
    assert isinstance(model, StyleGAN2Generator)
    assert (model.size, model.style_dim, model.n_mlp) == (32, 64, 3)
    assert torch.equal(model.latent_avg, avg)
    assert torch.equal(model.state_dict()["convs.3.conv.weight"], state["convs.3.conv.weight"])
    z = LatentSampler(64).take([3])
    with torch.no_grad():
        assert torch.equal(model(z), model(z))

    st = tmp_path / "g.safetensors"
    save_file(state, str(st))
    again = load_generator(st)
    with torch.no_grad():
        assert torch.equal(again(z, truncation=1.0), model(z, truncation=1.0))


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(RewriteError, match="does not exist"):
        load_generator(tmp_path / "nope.pt")
    state = _rosinality_state()
    state.pop("convs.1.noise.weight")
    state["extra.weight"] = torch.zeros(1)
    state["convs.2.activate.bias"] = torch.zeros(7)
    path = tmp_path / "broken.pt"
    torch.save({"g_ema": state}, path)
    with pytest.raises(RewriteError) as err:
        load_generator(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "missing: convs.1.noise.weight" in msg and "unexpected: extra.weight" in msg
    assert "convs.2.activate.bias (7,)≠(512,)" in msg
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(RewriteError, match="is a text file, not a PyTorch checkpoint"):
        load_generator(junk)


class _Payload:
    """A pickle that would run a shell command when loaded: it must never run."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_unreadable_inputs_are_one_line_for_every_command_and_never_run(tmp_path, capsys):
    import pickle

    from safetensors.torch import save_file as save

    from lightning_rewrite.app.cli import main

    marker = tmp_path / "PAYLOAD_RAN"
    save({"w": torch.zeros(64)}, str(tmp_path / "whole.safetensors"))
    whole = (tmp_path / "whole.safetensors").read_bytes()
    files = {
        "truncated.safetensors": (whole[: len(whole) // 2], "truncated or damaged"),
        "zero.pt": (b"", "empty (0 bytes)"),
        "zero.safetensors": (b"", "empty (0 bytes)"),
        "notes.pt": (b"my notes\n", "is a text file, not a PyTorch checkpoint"),
        "payload.pt": (pickle.dumps(_Payload(marker)), "would call posix.system when unpickled: refused"),
        "payload.pkl": (pickle.dumps(_Payload(marker)), "refusing to unpickle posix.system"),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save(_Payload(marker), tmp_path / "zipped_payload.pt")  # the zip layout torch.save writes
    files["zipped_payload.pt"] = (None, "would call posix.system when unpickled: refused")
    out = tmp_path / "out"
    for name, (_, expected) in files.items():
        path = tmp_path / name
        for argv in (["layers", f"model.checkpoint={path}"],
                     ["sample", "recipe=domes_to_trees", f"model.checkpoint={path}", f"out={out}"]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert expected in err and err.count("\n") == 1 and path.name in err, (argv, err)
    edit_cases = {"truncated.safetensors": "truncated", "zero.safetensors": "empty (0 bytes)",
                  "notes.pt": "not a safetensors file"}
    for name, expected in edit_cases.items():
        assert main(["sample", "recipe=domes_to_trees", f"model.edits=[{tmp_path / name}]", f"out={out}"]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    assert not marker.exists() and not out.exists()


def test_latent_avg_saved_as_one_row_samples_like_a_vector(tmp_path):
    state = _rosinality_state()
    avg = torch.randn(64)
    torch.save({"g_ema": state, "latent_avg": avg}, tmp_path / "vector.pt")
    torch.save({"g_ema": state, "latent_avg": avg[None]}, tmp_path / "row.pt")  # what mean_latent() returns
    a, b = load_generator(tmp_path / "vector.pt"), load_generator(tmp_path / "row.pt")
    z = LatentSampler(64).take(range(4))
    with torch.no_grad():
        assert torch.equal(a(z, truncation=0.5), b(z, truncation=0.5))
    torch.save({"g_ema": state, "latent_avg": torch.randn(2, 64)}, tmp_path / "two.pt")
    with pytest.raises(RewriteError, match=r"latent_avg has shape \(2, 64\)"):
        load_generator(tmp_path / "two.pt")


def test_describe_layers_lists_what_a_user_needs_to_pick_one():
    model = StyleGAN2Generator(16, style_dim=8, n_mlp=1, widths={4: 8, 8: 6, 16: 4}).eval()
    rows = describe_layers(model, LatentSampler(8).take([0]))
    assert [r["alias"] for r in rows] == ["layer2", "layer3", "layer4", "layer5", "layer6"]
    assert rows[-1] == {"name": "convs.3", "alias": "layer6", "key_dim": 4, "memory": [36, 4],
                        "value_shape": [4, 16, 16], "resolution": "16×16"}


@pytest.mark.slow
def test_the_layers_command_lists_a_checkpoints_layers(tmp_path, capsys):
    from lightning_rewrite.models.__main__ import main

    path = tmp_path / "g.pt"
    torch.save(_rosinality_state(), path)
    assert main([str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1] == {"name": "convs.5", "alias": "layer8", "key_dim": 512, "memory": [4608, 512],
                        "value_shape": [512, 32, 32], "resolution": "32×32"}
    assert main([str(path)]) == 0
    assert "layer8" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
