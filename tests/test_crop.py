"""The goal on its crop: the loss and its gradient equal the full map's (within 1e-6 relative)
for copy, erase and paired goals, on a plain convolution and on StyleGAN2's modulated
convolutions (with and without upsampling), while the window is a fraction of the map."""

from __future__ import annotations

import pytest
import torch

from conftest import TinyGenerator, box_mask
from lightning_rewrite import EditRequest, HookedLayer, LatentSampler
from lightning_rewrite.engine.crop import cropped, find_crop
from lightning_rewrite.engine.goal import goal_of
from lightning_rewrite.engine.methods import masked_loss
from lightning_rewrite.models import StyleGAN2Generator


def _requests(size: int) -> dict[str, EditRequest]:
    s = size // 16
    obj, paste = box_mask(size, 2 * s, 2 * s, 6 * s, 6 * s), box_mask(size, 9 * s, 8 * s, 13 * s, 12 * s)
    return {
        "copy": EditRequest.copy(object=(0, obj), paste=(1, paste), context=[(1, paste), (2, obj)]),
        "erase": EditRequest.erase(paste=(1, paste), units=[0, 3, 5], context=[(1, paste)]),
        "paired": EditRequest.paired([(0, 1, paste), (2, 3, box_mask(size, 8 * s, 7 * s, 12 * s, 11 * s))]),
    }


def _loss_and_grad(hooked: HookedLayer, goal, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w = weight.clone().requires_grad_(True)
    loss = masked_loss(hooked.layer_forward(goal.inputs, w), goal.target, goal.region)
    (grad,) = torch.autograd.grad(loss, w)
    return loss.detach(), grad


def _stylegan() -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(32, style_dim=16, n_mlp=2, widths={4: 16, 8: 16, 16: 16, 32: 8}).eval()


CASES = [("conv 3×3", lambda: TinyGenerator().eval(), "layer3.0", 16, LatentSampler(16)),
         ("stylegan2, upsampling", _stylegan, "layer5", 32, None),
         ("stylegan2", _stylegan, "layer6", 32, None)]


@pytest.mark.parametrize("kind", ["copy", "erase", "paired"])
@pytest.mark.parametrize("name,make,layer,size,latents", CASES, ids=[c[0] for c in CASES])
def test_the_crop_gives_the_full_maps_loss_and_gradient(kind, name, make, layer, size, latents):
    generator = make()
    hooked = HookedLayer(generator, layer)
    latents = latents or LatentSampler.for_model(generator)
    goal = goal_of(_requests(size)[kind], hooked, latents)
    crop = find_crop(hooked, goal)
    assert crop is not None and crop.share < 0.6
    torch.manual_seed(1)
    weight = hooked.weight.detach() * (1 + 0.3 * torch.randn_like(hooked.weight))  # an edit under way
    full_loss, full_grad = _loss_and_grad(hooked, goal, weight)
    crop_loss, crop_grad = _loss_and_grad(hooked, cropped(goal, crop), weight)
    assert full_loss > 0 and abs(crop_loss - full_loss) <= 1e-6 * full_loss
    assert (crop_grad - full_grad).norm() <= 1e-6 * full_grad.norm()


def test_a_layer_without_a_spatial_map_keeps_the_full_goal():
    generator = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.Tanh(), torch.nn.Linear(24, 8))
    hooked = HookedLayer(generator, "2")
    request = EditRequest.paired([(0, 1, torch.ones(1, 1))])
    assert find_crop(hooked, goal_of(request, hooked, LatentSampler(16))) is None
