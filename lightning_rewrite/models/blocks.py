"""A small generator with layout, for the quickstart, the tests and the engine benchmark: its
random weights draw nothing real, but its keys have the structure the method relies on (alike
on one kind of object, across samples), and it builds in milliseconds."""

from __future__ import annotations

import torch
from torch import nn

from ..engine.latents import LatentSampler
from ..engine.request import EditRequest


class BlocksGenerator(nn.Module):
    """A generator with layout, like a scene GAN's: z places a "dome" block (class 1) and a
    "tree" block (class 2) on an 8×8 background grid; each class has its own feature
    vector, tinted by z; conv layers then render 16×16 RGB.

    ``layer2`` is a 1×1 convolution, so the keys of ``layer3.0`` are alike inside a block
    and across samples (as a trained GAN's keys are alike on one kind of object), and a
    rank-one rewrite of ``layer3.0`` can turn every dome into a tree. ``layout(z)`` gives the
    8×8 label map.
    """

    def __init__(self, z_dim: int = 16, width: int = 32, seed: int = 0, tint: float = 0.3) -> None:
        super().__init__()
        self.tint_scale = tint
        g = torch.Generator().manual_seed(seed)
        self.z_dim = z_dim
        self.register_buffer("embed", torch.randn(3, width, generator=g))
        self.tint = nn.Linear(2, width)  # a colour tint from two latent coordinates
        self.layer2 = nn.Sequential(nn.Conv2d(width, width, 1), nn.LeakyReLU(0.2), nn.Upsample(scale_factor=2))
        self.layer3 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.layer4 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.output = nn.Sequential(nn.Conv2d(width, 3, 1), nn.Tanh())
        with torch.no_grad():
            for p in self.parameters():
                if p.ndim > 1:
                    p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5))
                else:
                    p.zero_()

    def layout(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 8, 8) labels: 0 background, 1 dome (2×2 block), 2 tree (2×2 block)."""
        corner = (torch.sigmoid(z[:, :4]) * 2.999).floor().long() * 3  # block corners in {0, 3, 6}
        rows = torch.arange(8, device=z.device)[None, :, None]
        cols = torch.arange(8, device=z.device)[None, None, :]
        labels = torch.zeros(z.shape[0], 8, 8, dtype=torch.long, device=z.device)
        for cls, top, left in ((1, corner[:, 0], corner[:, 1]), (2, corner[:, 2], corner[:, 3])):
            top, left = top[:, None, None], left[:, None, None]
            inside = (rows >= top) & (rows < top + 2) & (cols >= left) & (cols < left + 2)
            labels = torch.where(inside & (labels == 0), torch.full_like(labels, cls), labels)
        return labels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        labels = self.layout(z)
        x = self.embed[labels].permute(0, 3, 1, 2) + self.tint_scale * self.tint(z[:, 4:6])[:, :, None, None]
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return self.output(x)


def block_mask(labels: torch.Tensor, cls: int) -> torch.Tensor:
    """The 16×16 image-resolution mask of one class of a BlocksGenerator layout."""
    m = (labels == cls).float()[None, None]
    return torch.nn.functional.interpolate(m, scale_factor=2, mode="nearest")[0, 0]


def domes_to_trees(generator: BlocksGenerator, n_context: int = 4):
    """The paper's dome→tree request on a BlocksGenerator: copy a whole tree, paste it on
    a dome, point at the domes of a few more samples."""
    labels = generator.layout(LatentSampler(generator.z_dim).take(range(50)))
    domes = [i for i in range(50) if (labels[i] == 1).sum() == 4]
    trees = [i for i in range(50) if (labels[i] == 2).sum() == 4]
    paste, context = domes[0], domes[:n_context]
    tree = next(i for i in trees if i != paste)
    return EditRequest.copy(object=(tree, block_mask(labels[tree], 2)),
                            paste=(paste, block_mask(labels[paste], 1)),
                            context=[(i, block_mask(labels[i], 1)) for i in context])
