"""Progressive GAN generator in GAN Dissection's layout (``layer1`` … ``layerK``, ``output_RxR``).

A Sequential of blocks, each pixel norm → (nearest 2× upsampling) → convolution without bias →
equalised-lr scale and bias → leaky ReLU; the output block is a 1×1 convolution to RGB. The
parameter names (``layerN.conv.weight``, ``layerN.wscale.b``) are those of GAN Dissection's
converted Karras models, so their ``.pth`` files load unchanged. Every block is a rewritable
layer: W is ``conv.weight``, keys are the pixel-normed (upsampled) inputs, the value is the
block's activated output.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .stylegan2 import PixelNorm


class WScale(nn.Module):
    """Equalised learning rate: multiply by ``gain / sqrt(fan_in)``, add the bias ``b``."""

    def __init__(self, channels: int, fan_in: int, gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.scale = gain / math.sqrt(fan_in)
        self.b = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.b.view(1, -1, 1, 1)


class Upscale2x(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")


class ProGANBlock(nn.Module):
    """Pixel norm, optional 2× upsampling, convolution, equalised-lr bias, leaky ReLU."""

    rewrite_weight = "conv.weight"
    rewrite_key_axis = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int,
                 upsample: bool = False) -> None:
        super().__init__()
        self.norm = PixelNorm()
        self.up = Upscale2x() if upsample else nn.Identity()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, 1, padding, bias=False)
        nn.init.normal_(self.conv.weight)
        # GAN Dissection's fan-in is the input channel count with gain √2/k, i.e. √2/√(in·k²)
        self.wscale = WScale(out_channels, in_channels, gain=math.sqrt(2) / kernel_size)
        self.relu = nn.LeakyReLU(0.2)

    def rewrite_keys(self, x: Tensor) -> Tensor:
        return self.up(self.norm(x))

    def rewrite_linear(self, x: Tensor) -> Tensor:
        return self.wscale(self.conv(self.rewrite_keys(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.rewrite_linear(x))


class ProGANOutput(nn.Module):
    """Pixel norm and a 1×1 convolution to RGB (gain 1); optionally clamped to [-1, 1]."""

    rewrite_weight = "conv.weight"
    rewrite_key_axis = 1

    def __init__(self, in_channels: int, clamp: bool = False) -> None:
        super().__init__()
        self.norm = PixelNorm()
        self.conv = nn.Conv2d(in_channels, 3, 1, bias=False)
        nn.init.normal_(self.conv.weight)
        self.wscale = WScale(3, in_channels, gain=1.0)
        self.clamp = clamp

    def rewrite_keys(self, x: Tensor) -> Tensor:
        return self.norm(x)

    def rewrite_linear(self, x: Tensor) -> Tensor:
        return self.wscale(self.conv(self.norm(x)))

    def forward(self, x: Tensor) -> Tensor:
        out = self.rewrite_linear(x)
        return out.clamp(-1, 1) if self.clamp else out


#: Channel depths [z, 4×4, 8×8, …] of Karras et al.'s released models, by resolution.
DEFAULT_SIZES = {
    8: [512, 512, 512],
    16: [512, 512, 512, 512],
    32: [512, 512, 512, 512, 256],
    64: [512, 512, 512, 512, 256, 128],
    128: [512, 512, 512, 512, 256, 128, 64],
    256: [512, 512, 512, 512, 256, 128, 64, 32],
    1024: [512, 512, 512, 512, 512, 256, 128, 64, 32, 16],
}


class ProgressiveGenerator(nn.Sequential):
    """``sizes`` = [z dim, 4×4 depth, 8×8 depth, …]; output resolution 2·2^len(sizes).

    ``forward(z)`` takes (B, z_dim) or (B, z_dim, 1, 1) latents and returns images in about
    [-1, 1]. ``output_name`` is the output block's name (``output_RxR`` by default, as GAN
    Dissection names it; ``output`` for the older files).
    """

    def __init__(self, sizes: list[int], output_name: str | None = None, clamp: bool = False) -> None:
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least [z_dim, 4x4 depth], got {sizes}")
        blocks: list[tuple[str, nn.Module]] = [
            ("layer1", ProGANBlock(sizes[0], sizes[1], kernel_size=4, padding=3)),
            ("layer2", ProGANBlock(sizes[1], sizes[1], kernel_size=3, padding=1)),
        ]
        for si, so in zip(sizes[1:-1], sizes[2:]):
            blocks.append((f"layer{len(blocks) + 1}", ProGANBlock(si, so, 3, 1, upsample=True)))
            blocks.append((f"layer{len(blocks) + 1}", ProGANBlock(so, so, 3, 1)))
        resolution = 4 * 2 ** (len(sizes) - 2)
        self.output_name = output_name or f"output_{resolution}x{resolution}"
        blocks.append((self.output_name, ProGANOutput(sizes[-1], clamp=clamp)))
        super().__init__(OrderedDict(blocks))
        self.sizes = list(sizes)
        self.z_dim = sizes[0]
        self.resolution = resolution

    @property
    def layer_aliases(self) -> dict[str, str]:
        return {"output": self.output_name} if self.output_name != "output" else {}

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Latent shape with a leading batch axis, as the official code reads it."""
        return (1, self.z_dim, 1, 1)

    def forward(self, z: Tensor) -> Tensor:
        return super().forward(z.reshape(z.shape[0], z.shape[1], 1, 1))


def proggan_sizes(state: dict[str, Tensor]) -> list[int]:
    """[z dim, 4×4 depth, 8×8 depth, …] read from ``layerN.conv.weight`` shapes."""
    sizes: list[int] = []
    n = 0
    while f"layer{n + 1}.conv.weight" in state:
        w = state[f"layer{n + 1}.conv.weight"]
        if n == 0:
            sizes.append(w.shape[1])
        if n % 2 == 0:
            sizes.append(w.shape[0])
        n += 1
    return sizes


def from_old_layout(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The oldest GAN Dissection files name blocks ``features.N``: rename them ``layerN+1``."""
    out = {}
    for k, v in state.items():
        m = re.match(r"features\.(\d+)\.(.*)", k)
        out[f"layer{int(m.group(1)) + 1}.{m.group(2)}" if m else k] = v
    return out


def output_name_of(state: dict[str, Tensor]) -> str | None:
    """The output block's name in a state dict (``output_256x256`` or ``output``)."""
    names = {k.split(".")[0] for k in state if k.startswith("output")}
    return names.pop() if len(names) == 1 else None
