"""From a resolved configuration to the parts of a run: the generator (with its stack of edits),
the embedded world and its segmenter, and the edit request (a file, or the recipe's selection
among the world's samples). Every bad input fails here, before anything is written."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..engine.latents import LatentSampler
from ..engine.edit import Edit, apply_edits
from ..errors import RewriteError
from ..engine.fingerprint import module_fingerprint
from ..engine.layer import HookedLayer
from ..limits import MAX_SAMPLES
from ..engine.request import EditRequest

log = logging.getLogger(__name__)


@dataclass
class Model:
    """A generator ready to edit or sample, with what it came from."""

    generator: nn.Module
    source: Path | None  # the checkpoint file (None: the world's shipped generator)
    base_fingerprint: str  # of the generator as loaded, before any edits
    edits: list[Edit] = field(default_factory=list)
    world: object | None = None
    segmenter: nn.Module | None = None

    @property
    def latents(self) -> LatentSampler:
        return LatentSampler.for_model(self.generator)

    def image_size(self) -> tuple[int, int]:
        with torch.no_grad():
            return tuple(self.generator(self.latents.take([0]).to(_device_of(self.generator))).shape[-2:])


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def load_model(cfg: DictConfig, with_segmenter: bool = True) -> Model:
    """The configured generator (a checkpoint, else the world's), truncation set, edits applied."""
    from ..models.loading import load_generator
    from ..worlds import get_world

    world = get_world(cfg.model.world) if cfg.model.world else None
    if cfg.model.checkpoint:
        source = Path(cfg.model.checkpoint)
        generator = load_generator(source)
    else:
        source = None
        generator = world.load_generator()
    if cfg.model.truncation is not None:
        if not hasattr(generator, "truncation"):
            raise RewriteError(f"model.truncation applies to StyleGAN2 generators; {type(generator).__name__} has none")
        generator.truncation = float(cfg.model.truncation)
    base = module_fingerprint(generator)
    edits = apply_edits(generator, list(cfg.model.edits), force=cfg.model.force)
    segmenter = world.load_segmenter().eval() if (world is not None and with_segmenter) else None
    return Model(generator.eval(), source, base, edits, world, segmenter)


def check_layer(model: Model, layer: str) -> HookedLayer:
    """The HookedLayer, or one error line listing the valid layer names."""
    return HookedLayer(model.generator, layer)


def _check_mask(mask: torch.Tensor, size: tuple[int, int], what: str) -> None:
    """A mask of any size whose shape is the image's (each is resized to a layer's resolution on
    its own, as the official code does: its interface saved 256×256 masks for 1024-px models)."""
    (h, w), (height, width) = tuple(mask.shape), tuple(size)
    if h * width != w * height:
        raise RewriteError(f"{what} mask is {h}×{w}, but the generator's images are {height}×{width}: draw it at "
                           f"{height}×{width} or at any size of that aspect ratio")
    if float(mask.max()) <= 0:
        raise RewriteError(f"{what} mask is empty; select the region to change (white where selected)")
    if float(mask.min()) >= 1:
        raise RewriteError(f"{what} mask selects the whole image; select only the region to change")


def check_request(request: EditRequest, size: tuple[int, int]) -> None:
    """Complete, masks of the image's aspect ratio, neither empty nor everything; sample indices in range."""
    missing = request.missing()
    if missing:
        raise RewriteError(missing)
    named = [("object", request.object), ("paste", request.paste)] + [(f"key[{i}]", s) for i, s in enumerate(request.context)]
    for what, sel in named:
        if sel is not None:
            _check_mask(sel.mask, size, what)
    for i, p in enumerate(request.pairs):
        _check_mask(p.mask, size, f"pairs[{i}]")
    bad = [s for s in request.samples() if isinstance(s, int) and not 0 <= s < MAX_SAMPLES]
    if bad:
        raise RewriteError(f"sample index {bad[0]} is out of range: indices name samples 0 … {MAX_SAMPLES - 1:,} "
                           "of the seed-1 latent set")


def build_request(cfg: DictConfig, model: Model) -> EditRequest:
    """The edit request: ``edit.request`` (an official or our JSON file), else the recipe's selection."""
    e = cfg.edit
    if e.request:
        units = OmegaConf.to_container(e.units) if OmegaConf.is_list(e.units) else e.units
        request = EditRequest.from_json(e.request, kind=e.kind if e.kind != "copy" else None, units=units)
        intervene_with_segmenter(request, model)
        check_request(request, model.image_size())
        return request
    stored = stored_request(cfg, model)
    if stored is not None:
        return stored
    return select_request(cfg, model)


def intervene_with_segmenter(request: EditRequest, model: Model) -> None:
    """Reflection pairs read from the official ``posneg.json`` name no window units: with a world
    segmenter that knows windows they are chosen as GAN Dissection chose them (the 20 units of the
    intervention layer that best match the segmenter's window pixels); without one ``edit.units``
    must list them."""
    pending = [p.intervention for p in request.pairs if p.intervention is not None and not p.intervention.units]
    if not pending or model.segmenter is None or "window" not in model.world.classes:
        return
    from ..worlds.selections import class_units

    units = class_units(model.generator, model.segmenter, model.world.classes, "window", pending[0].layer)
    log.info("window units of %s chosen by dissection with the %s segmenter: %s", pending[0].layer, model.world.name, units)
    for cut in pending:
        cut.units = units


def stored_request_path(recipe: str) -> Path:
    """Where a recipe's selections, chosen on its world's shipped generator, are kept."""
    from .config import recipes_dir

    return recipes_dir() / "requests" / f"{recipe}.json"


def stored_request(cfg: DictConfig, model: Model) -> EditRequest | None:
    """The recipe's stored request, when the model is the world generator it was chosen on."""
    path = stored_request_path(cfg.recipe)
    if cfg.model.checkpoint or cfg.recipe_file or not path.is_file():  # a recipe file chooses its own selections
        return None
    request = EditRequest.from_json(path, units=cfg.edit.units if cfg.edit.kind == "erase" else None)
    chosen_on = request.extra.get("generator_fingerprint")
    if chosen_on != model.base_fingerprint:
        log.info("the stored selections of %s were chosen on generator %s, this one is %s: choosing anew",
                 cfg.recipe, chosen_on, model.base_fingerprint)
        return None
    if request.extra.get("select") != OmegaConf.to_container(cfg.select):
        log.info("select.* differs from the settings the stored selections of %s were made with: choosing anew", cfg.recipe)
        return None
    return request


def chosen_request(cfg: DictConfig, model: Model) -> EditRequest:
    """A fresh selection, labelled with the generator and settings it was chosen with (to store)."""
    request = select_request(cfg, model)
    request.extra.update(generator_fingerprint=model.base_fingerprint, select=OmegaConf.to_container(cfg.select))
    return request


def select_request(cfg: DictConfig, model: Model) -> EditRequest:
    """The recipe's selection rules applied to the model's seed-1 samples, read by the segmenter."""
    e, s = cfg.edit, cfg.select
    if model.world is None or model.segmenter is None:
        raise RewriteError("edit.request=PATH is needed: without an embedded world (model.world) there is no "
                           "segmenter to choose selections with")
    from ..worlds import selections

    classes = model.world.classes
    unknown = [c for c in [*s.source, *s.target, *s.require, *s.exclude] if c not in classes]
    if unknown:
        raise RewriteError(f"unknown class {unknown[0]!r} in select; {model.world.name} has: {', '.join(classes)}")
    if not s.source:
        raise RewriteError("select.source must name the class(es) to change, e.g. select.source=[dome]")
    pool = range(s.pool)
    if e.kind == "copy":
        if not s.target:
            raise RewriteError("a copy recipe needs select.target, the class to copy, e.g. select.target=[tree]")
        return selections.copy_paste_request(model.generator, model.segmenter, classes, tuple(s.source), tuple(s.target),
                                             pool, s.context, s.min_pixels, require=tuple(s.require),
                                             exclude=tuple(s.exclude))
    if e.kind == "erase":
        if e.units is None:
            raise RewriteError("an erase recipe needs edit.units, the number of key channels to zero (the paper: 30 or 60)")
        return selections.erase_request(model.generator, model.segmenter, classes, tuple(s.source), e.units, pool,
                                        s.context, s.min_pixels)
    return selections.paired_request(model.generator, model.segmenter, classes, tuple(s.source), pool, s.pairs,
                                     s.min_pixels)
