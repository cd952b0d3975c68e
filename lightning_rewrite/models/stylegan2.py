"""StyleGAN2 generator in plain PyTorch, in rosinality's stylegan2-pytorch parameter layout.

No compiled ops: upfirdn2d, blur and the fused leaky ReLU are written with torch ops, so it
runs on any device. The modulated convolution is three steps — modulate the input
(``k = x * s``), a plain convolution with W, demodulate — so W is a linear memory whose
keys are the modulated inputs (the engine's RewritableLayer protocol).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SQRT2 = math.sqrt(2.0)


def make_kernel(k: Sequence[float]) -> Tensor:
    """A normalised 2-D FIR kernel from a 1-D one (outer product)."""
    t = torch.tensor(k, dtype=torch.float32)
    if t.ndim == 1:
        t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample by zero insertion, pad (negative crops), filter with ``kernel``, downsample."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    weight = kernel.flip(0, 1)[None, None].to(x).expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def fused_leaky_relu(x: Tensor, bias: Tensor, negative_slope: float = 0.2, scale: float = SQRT2) -> Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), negative_slope) * scale


class PixelNorm(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weight ~ N(0, 1/lr_mul), scaled at run time)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: str | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = 1 / math.sqrt(in_dim) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class Blur(nn.Module):
    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor**2
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, kernel: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Modulate (k = x·s), convolve with W, demodulate: the same numbers as StyleGAN2's fused
    grouped convolution, with W shared by the batch so that it is one linear memory."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        self.fused = False
        if upsample:
            factor = 2
            p = len(blur_kernel) - factor - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def styles(self, style: Tensor) -> Tensor:
        """s (B, in): the per-sample input-channel scales."""
        return self.modulation(style)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        s = self.styles(style)
        if self.fused:
            return self._fused(x, s)
        w = self.weight[0] * self.scale  # (out, in, k, k)
        out = self._convolve(x * s[:, :, None, None], w)
        if self.demodulate:
            # ‖W_o · s‖ per sample and output channel, as the fused form's demodulation
            demod = torch.rsqrt(torch.einsum("oikl,bi->bo", w.pow(2), s.pow(2)) + 1e-8)
            out = out * demod[:, :, None, None]
        return out

    def _convolve(self, keys: Tensor, w: Tensor) -> Tensor:
        """The plain (or upsampling) convolution of keys with w (out, in, k, k)."""
        if self.upsample:
            return self.blur(F.conv_transpose2d(keys, w.transpose(0, 1), stride=2))
        return F.conv2d(keys, w, padding=self.padding)

    def low_rank(self, x: Tensor, style: Tensor, directions: Tensor) -> Callable[[Tensor], Tensor]:
        """Its output at W0 + ΔW, ΔW[o, i] = Σ_j F[o, j] D[i, j], as a function of the factor
        F (1, out, S, k, k): the W0 convolution and the demodulation's W0 terms computed once
        here, the change convolved through the S channels Dᵀk (a rank-S edit costs S of the
        ``in`` input channels per evaluation)."""
        with torch.no_grad():
            s = self.styles(style)
            keys = x * s[:, :, None, None]
            w0 = self.weight[0] * self.scale
            d = directions.to(keys)
            projected = torch.einsum("bihw,is->bshw", keys, d)
            base = self._convolve(keys, w0)
            s2 = s.pow(2)
            norm0 = torch.einsum("oikl,bi->bo", w0.pow(2), s2)
            cross = torch.einsum("oikl,is,bi->boskl", w0, d, s2)  # Σ_i W0 D s² per sample
            gram = torch.einsum("is,it,bi->bst", d, d, s2)  # Dᵀ diag(s²) D per sample

        def forward(factor: Tensor) -> Tensor:
            f = factor[0] * self.scale  # (out, S, k, k)
            out = base + self._convolve(projected, f)
            if not self.demodulate:
                return out
            norm = norm0 + 2 * torch.einsum("boskl,oskl->bo", cross, f) + \
                torch.einsum("oskl,bst,otkl->bo", f, gram, f)
            return out * torch.rsqrt(norm + 1e-8)[:, :, None, None]
        return forward

    def _fused(self, x: Tensor, s: Tensor) -> Tensor:
        """StyleGAN2's original form: a per-sample modulated (and demodulated) weight applied
        as one grouped convolution. Same numbers; kept for comparison (``fused = True``)."""
        b, cin, h, w = x.shape
        k = self.kernel_size
        weight = self.scale * self.weight * s.view(b, 1, cin, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, -1, 1, 1, 1)
        x = x.reshape(1, b * cin, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * cin, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            return self.blur(out.view(b, self.out_channel, *out.shape[2:]))
        out = F.conv2d(x, weight.reshape(b * self.out_channel, cin, k, k), padding=self.padding, groups=b)
        return out.view(b, self.out_channel, h, w)


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            b, _, h, w = x.shape
            noise = x.new_empty(b, 1, h, w).normal_()
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    """Modulated conv + noise + activation: one rewritable layer (W = ``conv.weight``,
    keys = the modulated input x·s, value = the activated output)."""

    rewrite_weight = "conv.weight"
    rewrite_key_axis = 2

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def rewrite_keys(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        return x * self.conv.styles(style)[:, :, None, None]

    def rewrite_linear(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        return self.conv(x, style)

    def rewrite_low_rank(self, directions: Tensor, x: Tensor, style: Tensor,
                         noise: Tensor | None = None) -> Callable[[Tensor], Tensor]:
        conv = self.conv.low_rank(x, style, directions)
        return lambda factor: self.activate(self.noise(conv(factor), noise))

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, latent: Tensor) -> Tensor:
        return self.input.expand(latent.shape[0], -1, -1, -1)


class ToRGB(nn.Module):
    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def channel_table(size: int, channel_multiplier: int = 2, widths: dict[int, int] | None = None) -> dict[int, int]:
    """Channels per resolution: rosinality's table, or an explicit ``widths`` table."""
    if widths is not None:
        table = {int(k): int(v) for k, v in widths.items()}
        missing = [2**i for i in range(2, int(math.log2(size)) + 1) if 2**i not in table]
        if missing:
            raise ValueError(f"widths table lacks resolutions {missing}")
        return table
    m = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m, 512: 32 * m, 1024: 16 * m}


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 synthesis + mapping, parameters named as rosinality's ``Generator``.

    ``forward(z)`` draws images in [-1, 1] with the fixed noise buffers (deterministic) and
    the generator's ``truncation`` toward ``latent_avg``; ``randomize_noise=True`` draws
    fresh noise. Layers are addressable by the official numbering (``layer2`` is the 4×4
    convolution, then two per resolution) through ``layer_aliases``.
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 widths: dict[int, int] | None = None, blur_kernel: Sequence[float] = (1, 3, 3, 1),
                 lr_mlp: float = 0.01, truncation: float = 1.0) -> None:
        super().__init__()
        log_size = int(math.log2(size))
        if 2**log_size != size or not 8 <= size <= 1024:
            raise ValueError(f"size must be a power of two from 8 to 1024, got {size}")
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.channel_multiplier = channel_multiplier
        self.z_dim = style_dim
        self.truncation = truncation
        self.randomize_noise = False
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp,
                                                              activation="fused_lrelu") for _ in range(n_mlp)])
        self.channels = channel_table(size, channel_multiplier, widths)
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)
        self.log_size = log_size
        self.num_layers = (log_size - 2) * 2 + 1
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_channel = self.channels[4]
        for i in range(3, log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim))
            in_channel = out_channel
        self.n_latent = log_size * 2 - 2
        self.register_buffer("latent_avg", torch.zeros(style_dim))

    @property
    def layer_aliases(self) -> dict[str, str]:
        """The official code's layer names → module paths (``layer2`` = ``conv1``)."""
        names = {"layer2": "conv1"}
        names.update({f"layer{i + 3}": f"convs.{i}" for i in range(len(self.convs))})
        return names

    def set_fused(self, fused: bool = True) -> "StyleGAN2Generator":
        """Run every modulated convolution in the fused (grouped) form instead of the split one."""
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.fused = fused
        return self

    def mean_latent(self, n: int = 4096, seed: int = 0) -> Tensor:
        """The mean w over ``n`` seeded z (to fill ``latent_avg`` for a model that lacks it)."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.style_dim, generator=g).to(self.latent_avg)
        with torch.no_grad():
            return self.style(z).mean(0)

    def forward(self, z: Tensor, truncation: float | None = None, input_is_latent: bool = False) -> Tensor:
        w = z if input_is_latent else self.style(z)
        t = self.truncation if truncation is None else truncation
        if t != 1:
            w = self.latent_avg + t * (w - self.latent_avg)
        noise = [None] * self.num_layers if self.randomize_noise else [
            getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        out = self.input(w)
        out = self.conv1(out, w, noise=noise[0])
        skip = self.to_rgb1(out, w)
        for j, (up, conv, to_rgb) in enumerate(zip(self.convs[::2], self.convs[1::2], self.to_rgbs)):
            out = up(out, w, noise=noise[1 + 2 * j])
            out = conv(out, w, noise=noise[2 + 2 * j])
            skip = to_rgb(out, w, skip)
        return skip
