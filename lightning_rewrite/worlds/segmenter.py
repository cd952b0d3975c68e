"""A small fully convolutional segmenter per world (a two-level U-Net), trained on fresh renders
with blur/noise/colour augmentation so that it also reads a generator's softer samples; it is
what scores every edited generator's images."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.progress import Progress
from safetensors.torch import save_file
from torch import Tensor, nn

from ..atomic import atomic_path, write_text
from ..errors import RewriteError
from ..paths import existing_file
from .registry import get_world

log = logging.getLogger(__name__)
WIDTH = 24
#: Fresh renders for evaluation come from seeds at and above this (training uses others).
EVAL_SEED = 5_000_000


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Segmenter(nn.Module):
    """Images in [-1, 1] (B, 3, H, W) → class logits (B, C, H, W)."""

    def __init__(self, n_classes: int, width: int = WIDTH) -> None:
        super().__init__()
        w = width
        self.enc1, self.enc2, self.enc3 = _block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w)
        self.dec2, self.dec1 = _block(6 * w, 2 * w), _block(3 * w, w)
        self.head = nn.Conv2d(w, n_classes, 1)

    def features(self, x: Tensor) -> list[Tensor]:
        """The encoder's three levels (full, half and quarter resolution): what a perceptual
        distance over this world compares."""
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        return [e1, e2, self.enc3(F.max_pool2d(e2, 2))]

    def forward(self, x: Tensor) -> Tensor:
        e1, e2, e3 = self.features(x)
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], 1))
        return self.head(d1)

    @torch.no_grad()
    def labels(self, images: Tensor, batch_size: int = 128) -> Tensor:
        """(B, H, W) predicted class per pixel."""
        was = self.training
        self.eval()
        out = torch.cat([self(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])
        self.train(was)
        return out


def augment(images: Tensor, g: torch.Generator) -> Tensor:
    """Random blur (as soft as a small generator's samples), pixel noise and colour gain."""
    b = images.shape[0]
    sigma = torch.rand(b, generator=g) * 1.2
    k = torch.arange(-2, 3, dtype=torch.float32)
    kern = torch.exp(-(k[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    kern = kern / kern.sum(1, keepdim=True)  # (B, 5)
    x = images.reshape(1, b * 3, *images.shape[2:])
    kx = kern.repeat_interleave(3, 0).view(b * 3, 1, 1, 5)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), kx, groups=b * 3)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), kx.transpose(2, 3), groups=b * 3)
    x = x.view_as(images)
    gain = 1 + 0.1 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5)
    return (x * gain + 0.04 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def paste_objects(images: Tensor, labels: Tensor, classes: tuple[str, ...], names: tuple[str, ...],
                  g: torch.Generator, p: float = 0.5, max_shift: int = 24) -> tuple[Tensor, Tensor]:
    """Copy-paste augmentation: into each image, with probability ``p``, paste the pixels of one
    object class (``names``) of another image of the batch, shifted at random — so a tree on a
    roof reads as a tree, as a rewritten generator draws it, not as what usually sits there."""
    if not names:
        return images, labels
    b = len(images)
    images, labels = images.clone(), labels.clone()
    donors = torch.roll(torch.arange(b), 1)
    pick = torch.randint(len(names) * 12, (b,), generator=g)  # any of the donor's objects
    shifts = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=g)
    chosen = torch.rand(b, generator=g) < p
    ids = [classes.index(n) for n in names]
    for i in torch.nonzero(chosen).flatten().tolist():
        j = int(donors[i])
        present = [c for c in ids if (labels[j] == c).any()]
        if not present:
            continue
        cls = present[int(pick[i]) % len(present)]
        mask = labels[j] == cls
        dy, dx = (int(v) for v in shifts[i])
        mask = torch.roll(mask, (dy, dx), (0, 1))
        src = torch.roll(images[j], (dy, dx), (1, 2))
        images[i] = torch.where(mask, src, images[i])
        labels[i] = torch.where(mask, torch.full_like(labels[i], cls), labels[i])
    return images, labels


def iou(pred: Tensor, target: Tensor, n_classes: int) -> Tensor:
    """(C,) intersection over union per class over all pixels (NaN where a class never occurs)."""
    out = torch.full((n_classes,), float("nan"))
    for c in range(n_classes):
        p, t = pred == c, target == c
        union = (p | t).sum()
        if union:
            out[c] = (p & t).sum() / union
    return out


def evaluate(segmenter: Segmenter, world: str, n: int = 1000, pasted: bool = False) -> dict[str, float]:
    """IoU per class on ``n`` fresh renders (seeds never used in training), and the accuracy of
    each per-image flag read from the predicted labels (faces: ``smiling_accuracy``).
    ``pasted``: every render gets an object of another pasted somewhere (a tree on a roof)."""
    from .measures import presence

    w = get_world(world)
    r = w.render(n, seed=EVAL_SEED)
    images, labels = r.images, r.labels
    if pasted:
        images, labels = paste_objects(images, labels, w.classes, w.paste_objects,
                                       torch.Generator().manual_seed(EVAL_SEED), p=1.0)
    pred = segmenter.labels(images)
    out = {name: round(float(s), 4) for name, s in zip(w.classes, iou(pred, labels, len(w.classes)))}
    if pasted:  # the flags belong to the renders as drawn, not to the pasted ones
        return out
    for flag, cls in w.flags.items():
        out[f"{flag}_accuracy"] = round(float((presence(pred, w.classes, cls) == r.extras[flag]).float().mean()), 4)
    return out


def train_segmenter(world: str, steps: int = 1500, batch_size: int = 32, seed: int = 0,
                    export: str | Path | None = None, progress: bool = True,
                    init: str | Path | None = None, lr: float = 3e-3) -> tuple[Segmenter, dict]:
    """Train the world's segmenter on fresh renders (with the world's copy-paste objects pasted
    at random places); evaluate IoU on 1,000 more; export weights and card (default: the
    package's ``worlds/weights/<world>_segmenter.safetensors``). ``init``: fine-tune from these
    weights (``shipped``: the package's own)."""
    w = get_world(world)
    with torch.random.fork_rng(devices=[]):  # the weights from ``seed``, the caller's RNG untouched
        torch.manual_seed(seed)
        model = Segmenter(len(w.classes))
    previous = None
    if init:
        path = w.weights("segmenter") if str(init) == "shipped" else Path(init)
        model = load_segmenter(world, path).train()
        card_path = path.with_suffix(".json")
        previous = json.loads(card_path.read_text()) if card_path.is_file() else None
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    start = time.time()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"segmenter {world}", total=steps)
        for step in range(steps):
            r = w.render(batch_size, seed=20_000_000 + seed * 1_000_000 + step)
            images, labels = paste_objects(r.images, r.labels, w.classes, w.paste_objects, g)
            loss = F.cross_entropy(model(augment(images, g)), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.advance(task)
            if step % 100 == 0:
                log.info("segmenter %s step %d loss %.4f", world, step, loss.item())
    seconds = time.time() - start
    scores = evaluate(model, world)
    card = {"world": world, "kind": "segmenter", "seed": seed, "steps": steps, "batch_size": batch_size,
            "train_seconds": round(seconds, 1), "classes": list(w.classes), "width": WIDTH,
            "paste_objects": list(w.paste_objects), "iou_fresh_renders_n1000": scores}
    if w.paste_objects:
        card["iou_pasted_renders_n1000"] = evaluate(model, world, pasted=True)
    if previous is not None:
        card["fine_tuned_from"] = {k: previous[k] for k in ("steps", "train_seconds", "seed", "fine_tuned_from")
                                   if k in previous}
    path = Path(export) if export else w.weights("segmenter")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    write_text(path.with_suffix(".json"), json.dumps(card, indent=1) + "\n")
    log.info("segmenter %s IoU on fresh renders: %s", world, scores)
    return model.eval(), card


def load_segmenter(world: str, path: str | Path | None = None) -> Segmenter:
    """The shipped segmenter of ``world`` (or one at ``path``)."""
    from ..models.loading import load_checked, read_state

    w = get_world(world)
    p = Path(path) if path else w.weights("segmenter")
    if not path and not p.is_file():
        raise RewriteError(f"no segmenter for {world!r} at {p}; train one with "
                           f"`python -m lightning_rewrite segmenter world={world}`")
    p = existing_file(p, "segmenter weights", "a .safetensors file a segmenter run exported")
    if p.suffix != ".safetensors":
        raise RewriteError(f"segmenter weights {os.fspath(p)!r} must be a .safetensors file (a segmenter run exports one)")
    model = Segmenter(len(w.classes))
    load_checked(model, read_state(p))  # the checkpoints' safe reader: one line for a damaged or foreign file
    return model.eval()
