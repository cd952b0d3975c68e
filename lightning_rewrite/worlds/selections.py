"""Edit requests chosen from a world generator's own samples, as a user of the interface would
choose them: the segmenter finds an object to copy, a place to paste it and a few context
regions, among the official seed-1 samples."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data import LatentSampler
from ..errors import RewriteError
from ..request import EditRequest
from .segmenter import Segmenter


def segment_samples(generator: nn.Module, segmenter: Segmenter, indices: range, batch_size: int = 50,
                    seed: int = 1) -> tuple[Tensor, Tensor]:
    """Images and predicted label maps of the generator's samples ``indices`` (seeded set)."""
    z = LatentSampler.for_model(generator, seed=seed).take(indices)
    with torch.no_grad():
        images = torch.cat([generator(z[i:i + batch_size]) for i in range(0, len(z), batch_size)]).clamp(-1, 1)
    return images, segmenter.labels(images)


def _one_side(mask: Tensor) -> Tensor:
    """The larger of the mask's left and right halves (one tree when there are two)."""
    half = mask.shape[-1] // 2
    left, right = mask.clone(), mask.clone()
    left[..., half:] = 0
    right[..., :half] = 0
    return left if left.sum() >= right.sum() else right


def class_mask(labels: Tensor, classes: tuple[str, ...], names: str | tuple[str, ...]) -> Tensor:
    """(B, H, W) float mask of the pixels labelled with any of ``names``."""
    names = (names,) if isinstance(names, str) else names
    return torch.stack([labels == classes.index(n) for n in names]).any(0).float()


def copy_paste_request(generator: nn.Module, segmenter: Segmenter, classes: tuple[str, ...],
                       source: str | tuple[str, ...], target: str | tuple[str, ...], pool: range = range(100),
                       n_context: int = 4, min_pixels: int = 60, one_side: bool = True) -> EditRequest:
    """Copy the largest ``target`` object (one side of the image when ``one_side``), paste it over
    the largest ``source`` region of another sample, and use ``n_context`` further ``source``
    regions as the context. ``source``/``target`` may name several classes (a smile: mouth + teeth)."""
    _, labels = segment_samples(generator, segmenter, pool)
    src = class_mask(labels, classes, source)
    tgt = class_mask(labels, classes, target)
    if one_side:
        tgt = torch.stack([_one_side(m) for m in tgt])
    src_px, tgt_px = src.flatten(1).sum(1), tgt.flatten(1).sum(1)
    with_source = [i for i in src_px.argsort(descending=True).tolist() if src_px[i] >= min_pixels]
    if len(with_source) < n_context + 1:
        raise RewriteError(f"only {len(with_source)} of {len(pool)} samples show a {source} of {min_pixels}+ pixels; "
                           f"need {n_context + 1}: use a larger pool")
    paste = with_source[0]
    obj = next((i for i in tgt_px.argsort(descending=True).tolist() if i != paste and tgt_px[i] >= min_pixels), None)
    if obj is None:
        raise RewriteError(f"no sample in the pool shows a {target} of {min_pixels}+ pixels to copy")
    context = [i for i in with_source[1:] if i != obj][:n_context]
    return EditRequest.copy(object=(pool[obj], tgt[obj]), paste=(pool[paste], src[paste]),
                            context=[(pool[i], src[i]) for i in context])
