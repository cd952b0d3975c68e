"""Drawing the unedited and the edited generator with the part before the edited layer run
once: the images are bitwise those of two full runs; a copy edited before the layer, or a
module shared across the layer, is handled by running in full."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import TinyGenerator
from lightning_rewrite import LatentSampler
from lightning_rewrite.engine.prefix import SharedPrefix
from lightning_rewrite.models import StyleGAN2Generator


def _edited(generator: nn.Module, parameter: str) -> nn.Module:
    edited = copy.deepcopy(generator)
    with torch.no_grad():
        edited.get_parameter(parameter).mul_(1.5)
    return edited


def _check(generator: nn.Module, layer: str, parameter: str, z: torch.Tensor) -> SharedPrefix:
    edited = _edited(generator, parameter)
    prefix = SharedPrefix(layer)
    with torch.no_grad():
        a, b = prefix.draw([generator, edited], z)
        assert torch.equal(a, generator(z)) and torch.equal(b, edited(z)) and not torch.equal(a, b)
    return prefix


@pytest.mark.bitwise
def test_an_edit_at_a_layer_reuses_everything_before_it_bitwise():
    tiny = TinyGenerator().eval()
    assert _check(tiny, "layer3.0", "layer3.0.weight", LatentSampler(16).take(range(4))).full_runs == 0
    torch.manual_seed(0)
    style = StyleGAN2Generator(32, style_dim=16, n_mlp=2, widths={4: 16, 8: 16, 16: 16, 32: 8}).eval()
    for layer in ("convs.2.conv", "convs.3.conv"):  # upsampling and plain
        assert _check(style, layer, f"{layer}.weight", LatentSampler.for_model(style).take(range(3))).full_runs == 0


def test_a_copy_edited_before_the_layer_is_drawn_in_full():
    tiny = TinyGenerator().eval()
    prefix = _check(tiny, "layer3.0", "layer1.0.weight", LatentSampler(16).take(range(4)))
    assert prefix.full_runs == 1


class Shared(nn.Module):
    """One activation module called before and after the edited layer."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.act = nn.Linear(8, 8), nn.Linear(8, 8), nn.Tanh()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.act(self.b(self.act(self.a(z))))


def test_a_module_called_on_both_sides_of_the_layer_runs_each_time():
    torch.manual_seed(0)
    _check(Shared().eval(), "b", "b.weight", torch.randn(5, 8))
