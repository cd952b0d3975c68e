"""HookedLayer on generators defined here: keys, values, early stop, substituted weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_rewrite import HookedLayer, LatentSampler, RewriteError, rewritable_layers
from lightning_rewrite.engine.layer import flat_keys


class ModulatedConv(nn.Module):
    """A layer that implements the RewritableLayer protocol: keys are x * s."""

    rewrite_weight = "weight"
    rewrite_key_axis = 2

    def __init__(self, cin: int, cout: int, style_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, cout, cin, 3, 3) / (cin * 9) ** 0.5)
        self.modulation = nn.Linear(style_dim, cin)

    def rewrite_keys(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return x * self.modulation(style)[:, :, None, None]

    def rewrite_linear(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(self.rewrite_keys(x, style), self.weight[0], padding=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return nn.functional.leaky_relu(self.rewrite_linear(x, style), 0.2)


class StyledGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.z_dim = 8
        self.const = nn.Parameter(torch.randn(1, 6, 4, 4))
        self.mod1 = ModulatedConv(6, 6, 8)
        self.up = nn.ConvTranspose2d(6, 5, 4, stride=2, padding=1)
        self.head = nn.Linear(5, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mod1(self.const.expand(len(z), -1, -1, -1), z)
        x = self.up(x)
        return self.head(x.movedim(1, -1)).movedim(-1, 1)


def _counting(model: nn.Module, name: str) -> list[int]:
    calls = [0]
    model.get_submodule(name).register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_keys_and_values_of_a_conv_layer_stop_after_the_layer(tiny):
    z = LatentSampler(16).take(range(3))
    h = HookedLayer(tiny, "layer3.0")
    assert h.value_name == "layer3.1"  # the value is read after the activation
    later = _counting(tiny, "layer4.0")
    keys = h.keys(z)
    values = h.values(z)
    assert later[0] == 0  # the rest of the generator did not run
    x = tiny.layer2(tiny.layer1(z))
    assert torch.equal(keys, x)
    assert torch.allclose(values, tiny.layer3(x))
    assert flat_keys(keys).shape == (3 * 16 * 16, 32)
    assert h.memory().shape == (32 * 3 * 3, 32) == h.memory_shape


@pytest.mark.bitwise
def test_render_with_a_substituted_weight_leaves_the_model_untouched(tiny):
    z = LatentSampler(16).take(range(2))
    h = HookedLayer(tiny, "layer3.0")
    before = tiny(z)
    original = h.weight.detach().clone()
    edited = h.render(z, torch.zeros_like(h.weight))
    assert torch.equal(h.weight, original)
    assert not torch.allclose(edited, before)
    assert torch.equal(h.render(z, original.clone()), before)
    assert torch.equal(tiny(z), before)


def test_layer_forward_from_inputs_equals_the_values(tiny):
    z = LatentSampler(16).take(range(2))
    h = HookedLayer(tiny, "layer3.0")
    w = h.weight.detach() * 1.5
    assert torch.allclose(h.layer_forward(h.inputs(z), w), h.values(z, w), atol=1e-6)


def test_a_wrong_layer_name_lists_the_nearest_rewritable_layers(tiny):
    with pytest.raises(RewriteError, match=r"no layer 'layer3\.O'.*layer3\.0"):
        HookedLayer(tiny, "layer3.O")
    with pytest.raises(RewriteError, match="LeakyReLU, which has no weight"):
        HookedLayer(tiny, "layer3.1")
    assert "layer3.0" in rewritable_layers(tiny)


def test_protocol_layer_gives_modulated_keys_and_its_own_value():
    torch.manual_seed(0)
    g = StyledGenerator()
    z = torch.randn(2, 8)
    h = HookedLayer(g, "mod1")
    keys = h.keys(z)
    expected = g.const.expand(2, -1, -1, -1) * g.mod1.modulation(z)[:, :, None, None]
    assert torch.allclose(keys, expected)
    assert h.key_dim == 6 and h.memory_shape == (6 * 3 * 3, 6)
    w = h.weight.detach() * 0.5
    assert torch.allclose(h.layer_forward(h.inputs(z), w), h.values(z, w))
    assert torch.allclose(h.linear_forward(h.inputs(z), w) * 2, h.linear_forward(h.inputs(z)), atol=1e-6)
    assert set(rewritable_layers(g)) == {"mod1", "up", "head"}


def test_conv_transpose_and_linear_layers():
    torch.manual_seed(0)
    g = StyledGenerator()
    z = torch.randn(2, 8)
    up = HookedLayer(g, "up")
    assert up.key_dim == 6 and up.memory_shape == (5 * 4 * 4, 6)
    assert up.keys(z).shape == (2, 6, 4, 4)
    head = HookedLayer(g, "head")
    assert head.key_dim == 5
    assert head.keys(z).shape == (2, 5, 8, 8)  # channels moved to axis 1


def test_upstream_fingerprint_ignores_downstream_and_the_edited_weight(tiny):
    z = LatentSampler(16).take([0])
    h = HookedLayer(tiny, "layer3.0")
    fp = h.upstream_fingerprint(z)
    with torch.no_grad():
        tiny.layer4[0].weight.add_(1)
        h.weight.add_(1)
    assert h.upstream_fingerprint(z) == fp
    with torch.no_grad():
        tiny.layer2[0].weight.add_(1)
    assert h.upstream_fingerprint(z) != fp
