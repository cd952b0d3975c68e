"""A rank-S change evaluated through S channels: the layer's value at W0 + Λ Dᵀ as a function
of Λ alone, with the W0 part computed once and the change applied to the S projected keys
Dᵀk. For a layer linear in W (a convolution, a linear map) f(k; W0 + ΔW) = f(k; W0) + f(k; ΔW)
and f(k; F ⊗ Dᵀ) = f(Dᵀk; F), so an evaluation of a rank-1 edit of a 512-channel layer reads one
channel instead of 512. The numbers are the direct computation's up to rounding.

Built in for ``nn.Conv2d`` (zero padding), ``nn.ConvTranspose2d`` and ``nn.Linear``; a
:class:`~lightning_rewrite.engine.layer.RewritableLayer` opts in with ``rewrite_low_rank``
(StyleGAN2's modulated convolution folds its demodulation in)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: The value as a function of the change's factor F (the weight's layout, S on the key axis).
LowRank = Callable[[Tensor], Tensor]


def builtin(module: nn.Module, args: tuple, kwargs: dict, directions: Tensor) -> LowRank | None:
    """The low-rank evaluation of a built-in layer called with ``args``, or None when it has
    none (padding modes other than zeros, extra call arguments)."""
    convolution = isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))
    if kwargs or len(args) != 1 or not (isinstance(module, nn.Linear) or
                                        convolution and module.padding_mode == "zeros"):
        return None
    x, d = args[0], directions.to(args[0])
    with torch.no_grad():
        base = module(x)
        projected = torch.einsum("bihw,is->bshw", x, d) if convolution else x @ d
    if isinstance(module, nn.Linear):
        return lambda factor: base + F.linear(projected, factor)
    if isinstance(module, nn.Conv2d):
        return lambda factor: base + F.conv2d(projected, factor, None, module.stride, module.padding, module.dilation)
    return lambda factor: base + F.conv_transpose2d(projected, factor, None, module.stride, module.padding,
                                                    module.output_padding, 1, module.dilation)
