"""A small residual StyleGAN2-style discriminator (equalised lr, minibatch standard deviation),
used only to train the embedded worlds' generators."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.stylegan2 import EqualLinear, fused_leaky_relu


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate (weight ~ N(0, 1), scaled by 1/√fan_in)."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True, activate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale = 1 / math.sqrt(cin * kernel**2)
        self.padding = kernel // 2
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x, self.weight * self.scale, padding=self.padding)
        if self.activate:
            return fused_leaky_relu(out, self.bias if self.bias is not None else out.new_zeros(out.shape[1]))
        return out + self.bias.view(1, -1, 1, 1) if self.bias is not None else out


class ResBlock(nn.Module):
    """A 3×3 convolution, 2× average pooling, a second 3×3 convolution at the lower resolution
    (4× cheaper than StyleGAN2's full-resolution one), with a pooled 1×1 skip path."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = EqualConv2d(cin, cin, 3)
        self.conv2 = EqualConv2d(cin, cout, 3)
        self.skip = EqualConv2d(cin, cout, 1, bias=False, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.avg_pool2d(self.conv1(x), 2))
        return (out + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2)


class Discriminator(nn.Module):
    """``widths`` from the input resolution down to 4×4, e.g. (32, 64, 128, 128, 128) for 64 px."""

    def __init__(self, size: int = 64, widths: tuple[int, ...] = (32, 64, 128, 128, 128), stddev_group: int = 4) -> None:
        super().__init__()
        if 4 * 2 ** (len(widths) - 1) != size:
            raise ValueError(f"{len(widths)} widths reach 4×4 from {4 * 2 ** (len(widths) - 1)} px, not {size}")
        self.from_rgb = EqualConv2d(3, widths[0], 1)
        self.blocks = nn.Sequential(*[ResBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.stddev_group = stddev_group
        self.final_conv = EqualConv2d(widths[-1] + 1, widths[-1], 3)
        self.final = nn.Sequential(EqualLinear(widths[-1] * 16, widths[-1], activation="fused_lrelu"),
                                   EqualLinear(widths[-1], 1))

    def forward(self, image: Tensor) -> Tensor:
        out = self.blocks(self.from_rgb(image))
        b, c, h, w = out.shape
        group = math.gcd(b, self.stddev_group)
        std = out.view(group, -1, 1, c, h, w)
        std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        out = torch.cat([out, std.repeat(group, 1, h, w)], 1)
        return self.final(self.final_conv(out).flatten(1)).squeeze(1)
