"""StyleGAN2: the split modulated convolution equals the fused one; rosinality's layout loads."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_rewrite import HookedLayer, LatentSampler
from lightning_rewrite.models import load_generator
from lightning_rewrite.models.stylegan2 import ModulatedConv2d, StyleGAN2Generator


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_split_modulated_conv_equals_the_fused_form(upsample, demodulate, dtype):
    torch.manual_seed(0)
    conv = ModulatedConv2d(12, 10, 3, style_dim=16, demodulate=demodulate, upsample=upsample).to(dtype)
    x = torch.randn(3, 12, 8, 8, dtype=dtype, requires_grad=True)
    style = torch.randn(3, 16, dtype=dtype, requires_grad=True)
    grads = []
    outs = []
    for fused in (False, True):  # split (ours) vs StyleGAN2's grouped convolution of a modulated weight
        conv.fused = fused
        out = conv(x, style)
        outs.append(out)
        g = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum(),
                                [x, style, conv.weight])
        grads.append(g)
    assert outs[0].shape == ((3, 10, 16, 16) if upsample else (3, 10, 8, 8))
    assert (outs[0] - outs[1]).abs().max() <= 1e-5 * outs[1].abs().max()
    for a, b in zip(*grads):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()


@pytest.mark.bitwise
def test_the_generator_draws_the_same_images_with_fused_convolutions():
    torch.manual_seed(1)
    model = StyleGAN2Generator(32, style_dim=16, n_mlp=2, widths={4: 16, 8: 12, 16: 8, 32: 8}).eval()
    z = LatentSampler(16).take([0, 1])
    with torch.no_grad():
        split = model(z)
        fused = model.set_fused(True)(z)
        assert torch.equal(model.set_fused(False)(z), split)
    assert (split - fused).abs().max() <= 1e-5 * split.abs().max()


def rosinality_layout(size: int, style_dim: int, n_mlp: int, channel_multiplier: int) -> dict[str, tuple[int, ...]]:
    """Key → shape of rosinality's ``Generator.state_dict()``, from its documented format."""
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
          256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(1, n_mlp + 1):
        shapes[f"style.{i}.weight"] = (style_dim, style_dim)
        shapes[f"style.{i}.bias"] = (style_dim,)
    shapes["input.input"] = (1, ch[4], 4, 4)

    def styled(prefix: str, cin: int, cout: int, up: bool) -> None:
        shapes[f"{prefix}.conv.weight"] = (1, cout, cin, 3, 3)
        shapes[f"{prefix}.conv.modulation.weight"] = (cin, style_dim)
        shapes[f"{prefix}.conv.modulation.bias"] = (cin,)
        if up:
            shapes[f"{prefix}.conv.blur.kernel"] = (4, 4)
        shapes[f"{prefix}.noise.weight"] = (1,)
        shapes[f"{prefix}.activate.bias"] = (cout,)

    def to_rgb(prefix: str, cin: int, up: bool) -> None:
        shapes[f"{prefix}.conv.weight"] = (1, 3, cin, 1, 1)
        shapes[f"{prefix}.conv.modulation.weight"] = (cin, style_dim)
        shapes[f"{prefix}.conv.modulation.bias"] = (cin,)
        shapes[f"{prefix}.bias"] = (1, 3, 1, 1)
        if up:
            shapes[f"{prefix}.upsample.kernel"] = (4, 4)

    styled("conv1", ch[4], ch[4], False)
    to_rgb("to_rgb1", ch[4], False)
    log_size = int(math.log2(size))
    cin = ch[4]
    for j, i in enumerate(range(3, log_size + 1)):
        cout = ch[2**i]
        styled(f"convs.{2 * j}", cin, cout, True)
        styled(f"convs.{2 * j + 1}", cout, cout, False)
        to_rgb(f"to_rgbs.{j}", cout, True)
        cin = cout
    for i in range((log_size - 2) * 2 + 1):
        res = 2 ** ((i + 5) // 2)
        shapes[f"noises.noise_{i}"] = (1, 1, res, res)
    return shapes


@pytest.mark.slow
def test_a_full_size_256px_rosinality_checkpoint_loads_and_samples_deterministically(tmp_path):
    layout = rosinality_layout(256, 512, 8, 2)
    assert len(layout) == 135
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=g) * 0.5 for k, shape in layout.items()}
    path = tmp_path / "stylegan2-church-config-f.pt"
    torch.save({"g_ema": state, "latent_avg": torch.randn(512, generator=g)}, path)
    model = load_generator(path)  # raises on any missing, unexpected or mis-shaped key
    assert (model.size, model.style_dim, model.n_mlp, model.channels[64]) == (256, 512, 8, 512)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "latent_avg"}
    assert own == layout
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    z = LatentSampler(512).take([0, 1])
    with torch.no_grad():
        a, b = model(z), model(z)
    assert a.shape == (2, 3, 256, 256)
    assert torch.equal(a, b)


def test_official_layer_numbering_and_modulated_keys():
    model = StyleGAN2Generator(32, style_dim=16, n_mlp=2, widths={4: 8, 8: 8, 16: 6, 32: 4}).eval()
    h = HookedLayer(model, "layer6")  # the watermark layer of the paper: 16×16
    assert h.name == "convs.3" and h.alias == "layer6"
    z = LatentSampler(16).take([0, 1])
    keys = h.keys(z)
    assert keys.shape == (2, 6, 16, 16) and h.memory_shape == (6 * 9, 6)
    inputs = h.inputs(z)
    x, w = inputs.args[0], inputs.args[1]
    assert torch.allclose(keys, x * model.convs[3].conv.modulation(w)[:, :, None, None])
    assert h.values(z).shape == (2, 6, 16, 16)
    assert HookedLayer(model, "layer2").name == "conv1"


@pytest.mark.slow
def test_a_rank_one_edit_of_a_modulated_layer_moves_it_toward_the_goal():
    from conftest import box_mask, quiet_trainer
    from lightning_rewrite import EditRequest, RewriteModule
    from lightning_rewrite.callbacks import KeyCovariance

    torch.manual_seed(0)
    model = StyleGAN2Generator(32, style_dim=16, n_mlp=2, widths={4: 16, 8: 16, 16: 16, 32: 8}).eval()
    request = EditRequest.copy(object=(0, box_mask(32, 4, 4, 16, 16)), paste=(1, box_mask(32, 16, 16, 28, 28)),
                               context=[(1, box_mask(32, 16, 16, 28, 28)), (2, box_mask(32, 8, 8, 20, 20))])
    module = RewriteModule(model, "layer6", request, rank=1)
    quiet_trainer(1, [KeyCovariance(samples=64, progress=False)]).fit(module)
    goal = module.goal

    def error() -> float:
        with torch.no_grad():
            v = module.hooked.layer_forward(goal.inputs, module.method.current_weight())
        return float(((v - goal.target) * goal.region).norm() / (goal.target * goal.region).norm())

    with torch.no_grad():
        base = module.hooked.layer_forward(goal.inputs, module.method.weight0)
    unedited = float(((base - goal.target) * goal.region).norm() / (goal.target * goal.region).norm())
    quiet_trainer(200).fit(module)
    assert error() < 0.95 * unedited  # random weights: a rank-1 change reaches only part of an arbitrary goal
    (change,) = module.changes()
    delta = change.lam @ change.directions.T
    assert torch.linalg.matrix_rank(delta.double(), rtol=1e-6).item() == 1
