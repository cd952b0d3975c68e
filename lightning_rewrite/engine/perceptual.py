"""Perceptual distances for image-space objectives (the ``all_weights`` baseline, Eq. 2–3):
spatial LPIPS when its backbone weights are at hand, else LPIPS's construction over the features
of a network trained on the images' own world (the world's segmenter). Each maps two image
batches in [-1, 1] to a (B, 1, H, W) distance map, differentiable in both."""

from __future__ import annotations

from pathlib import Path
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import RewriteError
from ..vocabulary import PERCEPTUAL

#: torchvision's backbone files, as ``lpips`` finds them in $TORCH_HOME/hub/checkpoints/.
BACKBONES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth", "squeeze": "squeezenet1_1-b8a52dc0.pth"}


def backbone_path(net: str) -> Path:
    """Where ``lpips`` looks for the ``net`` backbone (nothing is ever downloaded)."""
    if net not in BACKBONES:
        raise RewriteError(f"LPIPS net must be one of {', '.join(BACKBONES)}, got {net!r}")
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONES[net]


def lpips_network(net: str = "alex") -> nn.Module:
    """Spatial LPIPS (frozen); the error names the backbone file when it is missing."""
    path = backbone_path(net)
    if not path.is_file():
        raise RewriteError(f"LPIPS needs the {net} backbone weights at {path} (torchvision's {BACKBONES[net]}); "
                           "place the file there (nothing is downloaded)")
    import lpips

    return Frozen(lpips.LPIPS(net=net, spatial=True, verbose=False))


class Frozen(nn.Module):
    """A network used only as a fixed function: no gradients to its weights, and eval mode
    (no dropout, frozen batch-norm statistics) whatever mode its parent is put in."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)

    def forward(self, *args, **kwargs):
        return self.network(*args, **kwargs)

    def train(self, mode: bool = True) -> "Frozen":
        return super().train(False)


class FeatureDistance(Frozen):
    """LPIPS without its learned channel weights (its "baseline" variant) over a network's
    ``features(x) -> list of maps``: per map, unit-normalise each pixel's channel vector, take
    the squared difference averaged over channels, upsample to the image size, and sum."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        out = a.new_zeros(a.shape[0], 1, *a.shape[-2:])
        for fa, fb in zip(self.network.features(a), self.network.features(b)):
            fa, fb = F.normalize(fa, dim=1, eps=1e-10), F.normalize(fb, dim=1, eps=1e-10)
            d = (fa - fb).pow(2).mean(1, keepdim=True)
            out = out + F.interpolate(d, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return out


def perceptual_distance(kind: str, segmenter: nn.Module | None = None, net: str = "alex") -> nn.Module | None:
    """The distance for ``kind``: ``lpips``, ``segmenter`` (the world's segmenter features),
    ``none``, or ``auto`` (LPIPS when its backbone is present, else the segmenter, else none)."""
    if kind not in PERCEPTUAL:
        raise RewriteError(f"unknown perceptual distance {kind!r}; choose one of {', '.join(PERCEPTUAL)}")
    if kind == "none":
        return None
    if kind == "lpips" or (kind == "auto" and backbone_path(net).is_file()):
        return lpips_network(net)
    if segmenter is None or not hasattr(segmenter, "features"):
        if kind == "segmenter":
            raise RewriteError("perceptual=segmenter needs a world's segmenter (model.world=...); "
                               "use perceptual=lpips or perceptual=none")
        return None
    return FeatureDistance(segmenter)


def perceptual_name(distance: nn.Module | None) -> str:
    """What a distance from :func:`perceptual_distance` is, for reports."""
    if distance is None:
        return "none"
    return "segmenter features" if isinstance(distance, FeatureDistance) else "lpips"
