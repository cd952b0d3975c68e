"""A rank-S edit evaluated through the S projected keys: the values and the gradient in Λ equal
the layer's own forward at W0 + Λ Dᵀ (within 1e-5 relative) for every layer kind that offers
it, and a RankS edit uses it (its loss is the direct computation's)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import TinyGenerator, box_mask
from lightning_rewrite import EditRequest, HookedLayer, LatentSampler
from lightning_rewrite.engine import memory
from lightning_rewrite.engine.layer import LayerInputs
from lightning_rewrite.engine.methods import Method, Settings, make_method
from lightning_rewrite.engine.goal import goal_of
from lightning_rewrite.models import StyleGAN2Generator


def _stylegan() -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(32, style_dim=16, n_mlp=2, widths={4: 16, 8: 16, 16: 16, 32: 8}).eval()


class _Builtins(nn.Module):
    """A transposed convolution, a strided dilated convolution and a linear map over channels."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.ConvTranspose2d(6, 5, 4, stride=2, padding=1)
        self.conv = nn.Conv2d(5, 7, 3, stride=2, padding=2, dilation=2)
        self.mix = nn.Linear(7, 4)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.up(z.view(-1, 6, 3, 3)))
        return self.mix(x.movedim(1, -1))


CASES = [("conv 3×3 + activation", TinyGenerator, "layer3.0", 16, 2),
         ("stylegan2 modulated", _stylegan, "layer6", 16, 1),
         ("stylegan2 upsampling", _stylegan, "layer5", 16, 3),
         ("conv transpose", _Builtins, "up", 54, 2),
         ("strided dilated conv", _Builtins, "conv", 54, 1),
         ("linear", _Builtins, "mix", 54, 2)]


@pytest.mark.parametrize("name,make,layer,z_dim,rank", CASES, ids=[c[0] for c in CASES])
def test_low_rank_values_and_gradient_equal_the_layers_own_forward(name, make, layer, z_dim, rank):
    generator = make().eval()
    hooked = HookedLayer(generator, layer)
    z = torch.randn(3, z_dim, generator=torch.Generator().manual_seed(2))
    inputs = hooked.inputs(z).detach()
    m, n = hooked.memory_shape
    d = torch.linalg.qr(torch.randn(n, rank, generator=torch.Generator().manual_seed(3)))[0]
    lam = (0.5 * torch.randn(m, rank, generator=torch.Generator().manual_seed(4))).requires_grad_(True)
    fast = hooked.low_rank_forward(inputs, d)
    assert fast is not None
    probe = torch.randn_like(hooked.layer_forward(inputs))
    direct = hooked.layer_forward(inputs, memory.low_rank_weight(hooked.weight.detach(), lam, d, hooked.key_axis))
    (direct_grad,) = torch.autograd.grad((direct * probe).sum(), lam)
    values = fast(lam)
    (grad,) = torch.autograd.grad((values * probe).sum(), lam)
    assert (values - direct).norm() <= 1e-5 * direct.norm()
    assert (grad - direct_grad).norm() <= 1e-5 * direct_grad.norm()
    assert (direct - hooked.layer_forward(inputs)).norm() > 0.05 * direct.norm()  # the change is no rounding


def test_a_layer_without_it_falls_back_to_its_own_forward():
    conv = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
    hooked = HookedLayer(nn.Sequential(conv), "0")
    assert hooked.low_rank_forward(LayerInputs((torch.randn(1, 4, 5, 5),)), torch.randn(4, 1)) is None


def test_rank_s_edit_uses_the_low_rank_path_with_the_direct_loss():
    generator = _stylegan()
    hooked = HookedLayer(generator, "layer6")
    latents = LatentSampler.for_model(generator)
    paste = box_mask(32, 18, 16, 26, 24)
    request = EditRequest.copy(object=(0, box_mask(32, 4, 4, 12, 12)), paste=(1, paste), context=[(1, paste), (2, paste)])
    method = make_method("rank_s", hooked, Settings(latents=latents))
    c = torch.eye(hooked.key_dim)  # C = I: D from the context keys alone; the equality does not depend on it
    method.prepare(goal_of(request, hooked, latents, c), c)
    assert method.low_rank
    with torch.no_grad():
        method.lam.normal_(0, 0.3)
    direct = Method.goal_values(method)
    assert (method.goal_values() - direct).norm() <= 1e-5 * direct.norm()
