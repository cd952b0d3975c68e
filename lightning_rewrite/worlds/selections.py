"""Edit requests chosen from a world generator's own samples, as a user of the interface would
choose them: the segmenter finds an object to copy, a place to paste it and a few context
regions, among the official seed-1 samples."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..engine.latents import LatentSampler
from ..errors import RewriteError
from ..engine.request import EditRequest
from .segmenter import Segmenter


def segment_samples(generator: nn.Module, segmenter: Segmenter, indices: range, batch_size: int = 50,
                    seed: int = 1) -> tuple[Tensor, Tensor]:
    """Images and predicted label maps of the generator's samples ``indices`` (seeded set)."""
    z = LatentSampler.for_model(generator, seed=seed).take(indices)
    with torch.no_grad():
        images = torch.cat([generator(z[i:i + batch_size]) for i in range(0, len(z), batch_size)]).clamp(-1, 1)
    return images, segmenter.labels(images)


def largest_component(mask: Tensor) -> Tensor:
    """The largest 4-connected component of a binary (H, W) mask: one object to copy, without
    stray pixels elsewhere that would stretch its bounding box."""
    on = mask > 0.5
    if not on.any():
        return mask.clone()
    h, w = on.shape
    big = h * w + 1
    ids = torch.where(on, torch.arange(h * w, dtype=torch.float32).view(h, w), torch.full((h, w), float(big)))
    while True:  # propagate the smallest index through each component
        padded = torch.nn.functional.pad(ids[None, None], (1, 1, 1, 1), value=float(big))[0, 0]
        neighbours = torch.stack([padded[1:-1, 1:-1], padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        new = torch.where(on, neighbours.min(0).values, ids)
        if torch.equal(new, ids):
            break
        ids = new
    labels, counts = ids[on].unique(return_counts=True)
    return (ids == labels[counts.argmax()]).float() * mask


def class_mask(labels: Tensor, classes: tuple[str, ...], names: str | tuple[str, ...]) -> Tensor:
    """(B, H, W) float mask of the pixels labelled with any of ``names``."""
    names = (names,) if isinstance(names, str) else names
    return torch.stack([labels == classes.index(n) for n in names]).any(0).float()


def _ranked(mask: Tensor, min_pixels: int, allowed: Tensor) -> list[int]:
    """Indices of the samples whose mask has ``min_pixels``+ pixels, largest first."""
    px = mask.flatten(1).sum(1)
    return [i for i in px.argsort(descending=True).tolist() if px[i] >= min_pixels and allowed[i]]


def _shows(labels: Tensor, classes: tuple[str, ...], names: tuple[str, ...] | list[str], min_pixels: int = 10) -> Tensor:
    """(B,) whether each sample shows any of ``names`` (all False when ``names`` is empty)."""
    if not names:
        return torch.zeros(len(labels), dtype=torch.bool)
    return class_mask(labels, classes, tuple(names)).flatten(1).sum(1) >= min_pixels


def copy_paste_request(generator: nn.Module, segmenter: Segmenter, classes: tuple[str, ...],
                       source: str | tuple[str, ...], target: str | tuple[str, ...], pool: range = range(100),
                       n_context: int = 4, min_pixels: int = 60,
                       require: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> EditRequest:
    """Copy the largest ``target`` object (its largest connected component) of a sample
    showing every class in ``require``, paste it over the largest ``source`` region of another
    sample, and use ``n_context`` further ``source`` regions as the context; paste and context
    samples show none of ``exclude``. ``source``/``target`` may name several classes (a smile:
    lips + mouth + teeth)."""
    _, labels = segment_samples(generator, segmenter, pool)
    src = class_mask(labels, classes, source)
    tgt = class_mask(labels, classes, target)
    tgt = torch.stack([largest_component(m) for m in tgt])
    has_all = torch.ones(len(labels), dtype=torch.bool)
    for name in require:
        has_all &= _shows(labels, classes, (name,))
    with_source = _ranked(src, min_pixels, ~_shows(labels, classes, exclude))
    if len(with_source) < n_context + 1:
        raise RewriteError(f"only {len(with_source)} of {len(pool)} samples show a {source} of {min_pixels}+ pixels"
                           f"{' without ' + '/'.join(exclude) if exclude else ''}; need {n_context + 1}: "
                           "use a larger select.pool or a smaller select.min_pixels")
    paste = with_source[0]
    obj = next((i for i in _ranked(tgt, min_pixels, has_all) if i != paste), None)
    if obj is None:
        raise RewriteError(f"no sample in the pool shows a {target} of {min_pixels}+ pixels to copy; "
                           "use a larger select.pool")
    context = [i for i in with_source[1:] if i != obj][:n_context]
    return EditRequest.copy(object=(pool[obj], tgt[obj]), paste=(pool[paste], src[paste]),
                            context=[(pool[i], src[i]) for i in context])


def erase_request(generator: nn.Module, segmenter: Segmenter, classes: tuple[str, ...], source: tuple[str, ...],
                  units: int, pool: range = range(1000), n_context: int = 4, min_pixels: int = 20) -> EditRequest:
    """Erase ``source`` (a watermark): the paste is the sample showing most of it, the context
    the next ``n_context``; the target zeroes the ``units`` key channels most tied to them."""
    _, labels = segment_samples(generator, segmenter, pool)
    src = class_mask(labels, classes, source)
    ranked = _ranked(src, min_pixels, torch.ones(len(labels), dtype=torch.bool))
    if len(ranked) < n_context + 1:
        raise RewriteError(f"only {len(ranked)} of {len(pool)} samples show a {'/'.join(source)} of {min_pixels}+ pixels; "
                           f"need {n_context + 1}: use a larger select.pool or a smaller select.min_pixels")
    return EditRequest.erase(paste=(pool[ranked[0]], src[ranked[0]]), units=units,
                             context=[(pool[i], src[i]) for i in ranked[1:n_context + 1]])


def paired_request(generator: nn.Module, segmenter: Segmenter, classes: tuple[str, ...], source: tuple[str, ...],
                   pool: range = range(200), n_pairs: int = 15, min_pixels: int = 20, grow: int = 2) -> EditRequest:
    """Swap the table tops of scenes that show ``source`` (a window's reflection) with those of
    scenes showing none: pair i is (i-th largest reflection, i-th scene without one), masked by
    the reflection grown by ``grow`` pixels. The pairs differ in more than the window (a
    generator gives no exact twins); the rank-1 constraint keeps what they share."""
    _, labels = segment_samples(generator, segmenter, pool)
    src = class_mask(labels, classes, source)
    everyone = torch.ones(len(labels), dtype=torch.bool)
    lit = _ranked(src, min_pixels, everyone)
    no_window = ~_shows(labels, classes, ("window",))
    dark = [i for i in range(len(labels)) if src[i].sum() == 0 and no_window[i]]
    n = min(n_pairs, len(lit), len(dark))
    if n < 1:
        raise RewriteError(f"found {len(lit)} samples with a {'/'.join(source)} of {min_pixels}+ pixels and {len(dark)} "
                           f"without any in {len(pool)}; need at least one of each: use a larger select.pool")
    grown = torch.nn.functional.max_pool2d(src[:, None], 2 * grow + 1, stride=1, padding=grow)[:, 0]
    return EditRequest.paired([(pool[lit[i]], pool[dark[i]], grown[lit[i]]) for i in range(n)])


def class_units(generator: nn.Module, segmenter: Segmenter, classes: tuple[str, ...], name: str, layer: str,
                count: int = 20, indices: range = range(200), quantile: float = 0.99) -> list[int]:
    """GAN Dissection's units for a class at ``layer``: each unit thresholded at its ``quantile``
    activation over the samples, ranked by the IoU of that region with the segmenter's ``name``
    pixels (label maps pooled to the layer's resolution); the ``count`` best."""
    from ..engine.layer import HookedLayer

    if name not in classes:
        raise RewriteError(f"class {name!r} is not among the segmenter's classes: {', '.join(classes)}")
    hooked = HookedLayer(generator, layer)
    _, labels = segment_samples(generator, segmenter, indices)
    z = LatentSampler.for_model(generator).take(indices)
    with torch.no_grad():
        acts = torch.cat([hooked.values(z[i:i + 50]) for i in range(0, len(z), 50)])
    if acts.ndim != 4 or count > acts.shape[1]:
        raise RewriteError(f"cannot choose {count} units from {layer}'s output of shape {tuple(acts.shape[1:])}")
    target = torch.nn.functional.adaptive_avg_pool2d(class_mask(labels, classes, name)[:, None], acts.shape[2:]) > 0.5
    flat = acts.transpose(0, 1).flatten(1)  # (units, samples·locations)
    threshold = torch.quantile(flat[:, :: max(1, flat.shape[1] // 100_000)], quantile, dim=1)
    on = flat > threshold[:, None]
    want = target.transpose(0, 1).flatten(1)
    iou = (on & want).sum(1) / (on | want).sum(1).clamp_min(1)
    return iou.argsort(descending=True)[:count].tolist()
