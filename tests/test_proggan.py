"""Progressive GAN in GAN Dissection's layout: state dicts round-trip, numbers match the
definition (pixel norm, equalised lr), every block is a rewritable layer."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from lightning_rewrite import HookedLayer, LatentSampler, RewriteError
from lightning_rewrite.models import ProgressiveGenerator, describe_layers, load_generator

SIZES = [16, 12, 10, 8]  # z, 4×4, 8×8, 16×16 depths


def gandissect_state(sizes: list[int], output: str = "output_16x16", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under GAN Dissection's names and shapes, written out by hand."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"layer1.conv.weight": (sizes[1], sizes[0], 4, 4), "layer2.conv.weight": (sizes[1], sizes[1], 3, 3)}
    n = 2
    for si, so in zip(sizes[1:-1], sizes[2:]):
        shapes[f"layer{n + 1}.conv.weight"] = (so, si, 3, 3)
        shapes[f"layer{n + 2}.conv.weight"] = (so, so, 3, 3)
        n += 2
    state = {}
    for k, shape in shapes.items():
        state[k] = torch.randn(shape, generator=g)
        state[k.replace("conv.weight", "wscale.b")] = torch.randn(shape[0], generator=g) * 0.1
    state[f"{output}.conv.weight"] = torch.randn(3, sizes[-1], 1, 1, generator=g)
    state[f"{output}.wscale.b"] = torch.randn(3, generator=g) * 0.1
    return state


def reference_forward(state: dict[str, torch.Tensor], z: torch.Tensor, output: str) -> torch.Tensor:
    """The generator written out from its definition, independent of the module."""
    x = z.view(z.shape[0], -1, 1, 1)
    n = 1
    while f"layer{n}.conv.weight" in state:
        w, b = state[f"layer{n}.conv.weight"], state[f"layer{n}.wscale.b"]
        x = x / torch.sqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)
        if n >= 3 and n % 2 == 1:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        k = w.shape[-1]
        x = F.conv2d(x, w, padding=3 if n == 1 else 1) * (math.sqrt(2) / k / math.sqrt(w.shape[1]))
        x = F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2)
        n += 1
    x = x / torch.sqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)
    w, b = state[f"{output}.conv.weight"], state[f"{output}.wscale.b"]
    return F.conv2d(x, w) / math.sqrt(w.shape[1]) + b.view(1, -1, 1, 1)


@pytest.mark.parametrize("wrap", ["plain", "state_dict"])
def test_a_gandissect_state_dict_round_trips(tmp_path, wrap):
    state = gandissect_state(SIZES)
    path = tmp_path / "proggan_kitchen.pth"
    torch.save(state if wrap == "plain" else {"state_dict": state}, path)
    model = load_generator(path)
    assert isinstance(model, ProgressiveGenerator)
    assert model.sizes == SIZES and model.resolution == 16
    out_state = model.state_dict()
    assert list(out_state) == list(state)  # same names, same order as GAN Dissection's module
    assert all(torch.equal(out_state[k], v) for k, v in state.items())
    again = tmp_path / "again.pth"
    torch.save(out_state, again)
    z = LatentSampler.for_model(model).take([0, 1, 2])
    assert z.shape == (3, 16, 1, 1)
    with torch.no_grad():
        image = model(z)
        assert torch.equal(load_generator(again)(z), image)
        assert torch.allclose(image, reference_forward(state, z, "output_16x16"), atol=1e-5)
    assert image.shape == (3, 3, 16, 16)


def test_older_layouts_load_under_their_own_names(tmp_path):
    state = gandissect_state(SIZES, output="output")
    path = tmp_path / "old.pth"
    torch.save(state, path)
    model = load_generator(path)
    assert set(model.state_dict()) == set(state)
    oldest = {re.sub(r"^layer(\d+)\.", lambda m: f"features.{int(m.group(1)) - 1}.", k): v for k, v in state.items()}
    assert "features.0.conv.weight" in oldest
    torch.save(oldest, tmp_path / "oldest.pth")
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(load_generator(tmp_path / "oldest.pth")(z), model(z))


def test_a_state_dict_that_does_not_fit_names_the_keys(tmp_path):
    state = gandissect_state(SIZES)
    state.pop("layer4.wscale.b")
    state["layer3.wscale.b"] = torch.zeros(5)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(RewriteError) as err:
        load_generator(tmp_path / "bad.pth")
    assert "missing: layer4.wscale.b" in str(err.value) and "layer3.wscale.b (5,)≠(10,)" in str(err.value)


def test_every_block_is_a_rewritable_layer_with_normalised_keys():
    model = ProgressiveGenerator(SIZES).eval()
    rows = describe_layers(model)
    assert [r["name"] for r in rows] == [f"layer{i}" for i in range(1, 7)] + ["output_16x16"]
    assert rows[-1]["alias"] == "output"
    assert [r["resolution"] for r in rows] == ["4×4", "4×4", "8×8", "8×8", "16×16", "16×16", "16×16"]
    assert rows[2]["key_dim"] == 12 and rows[2]["value_shape"] == [10, 8, 8]
    h = HookedLayer(model, "layer3")  # an upsampling block: its keys live at the output resolution
    z = torch.randn(2, 16)
    keys = h.keys(z)
    assert keys.shape == (2, 12, 8, 8)
    assert torch.allclose(keys.pow(2).mean(1), torch.ones(2, 8, 8), atol=1e-4)  # pixel-normed
    with torch.no_grad():
        inputs = h.inputs(z)
        assert torch.allclose(h.layer_forward(inputs), h.values(z))
        assert torch.allclose(F.leaky_relu(h.linear_forward(inputs), 0.2), h.values(z))
