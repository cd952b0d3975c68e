"""``advise``: which layer and rank to rewrite, measured. For every candidate layer (each rewritable
layer whose resolution holds the request's selections) and rank, the recipe's edit is made as
``fit`` makes it and measured on ``advise.n`` validation samples, disjoint from the selection pool
and the test range, so choosing on them never touches what ``test`` reports.

With a world segmenter: the recipe's efficacy (copy: source pixels that became the target; erase:
source pixels removed), the change outside the source region (masked L1), and classes that appear
where they were not before. Without one: measures that need none — how far the layer's output
moved toward the goal's value at held-out locations whose keys match the context (dᵀk/dᵀk* ≥ ½),
the relative change of the layer's output elsewhere, and how spread the context keys are in
whitened space (the top singular value's share: a cheap prior, rank 1 covers a concentrated
context). Writes ``advise.json``, ``advise.png`` (efficacy against change, the Pareto front and the
recipe's setting marked) and prints a table with the suggested ``edit.layer=… edit.rank=…``."""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from torch import Tensor

from ..atomic import atomic_path, write_text
from ..engine.layer import HookedLayer, flat_keys
from ..engine.request import EditRequest
from ..engine.search import ContextQuery
from ..errors import RewriteError
from ..metrics.functional import region_counts
from ..models.summary import describe_layers
from ..vocabulary import MIN_PIXELS
from .assemble import Model, build_request, load_model
from .measures import EditMeasures
from .rundir import run_directory
from .sampling import draw
from .stats import key_statistics

#: Held-out locations whose key matches the context at least this much (dᵀk / dᵀk*) count as matched.
MATCHED = 0.5
#: An edit whose efficacy is below this does nothing worth choosing: it never joins the front.
MIN_EFFECT = 0.05


def validation_range(cfg: DictConfig) -> range:
    """``advise.n`` samples from ``advise.start`` (default: right after the test range), refused
    when they overlap the selection pool or the test range."""
    start = cfg.advise.start if cfg.advise.start is not None else cfg.test.start + cfg.test.n
    chosen = range(start, start + cfg.advise.n)
    for name, other in (("the selection pool", range(0, cfg.select.pool)),
                        ("the test range", range(cfg.test.start, cfg.test.start + cfg.test.n))):
        if chosen.start < other.stop and other.start < chosen.stop:
            raise RewriteError(f"advise.start={start} with advise.n={cfg.advise.n} overlaps {name} "
                               f"({other.start}–{other.stop - 1}); choose advise.start ≥ {max(other.stop, start)}")
    return chosen


def _selections(request: EditRequest) -> list:
    sel = [s for s in (request.object, request.paste) if s is not None] + request.context
    return sel or [p for p in request.pairs]


def candidates(model: Model, request: EditRequest, asked: list[str]) -> list[dict]:
    """The layers to try: ``asked`` (names or aliases), else every rewritable layer with 2-D maps
    where each selection covers at least one location by half."""
    rows = describe_layers(model.generator)
    if asked:
        known = {n: r for r in rows for n in (r["name"], r["alias"]) if n}
        missing = [a for a in asked if a not in known]
        if missing:
            raise RewriteError(f"advise.layers names {missing[0]!r}, not a rewritable layer; the layers are "
                               + ", ".join(r["alias"] or r["name"] for r in rows))
        return [known[a] for a in asked]
    out = []
    for r in rows:
        if "×" not in r["resolution"]:
            continue
        size = tuple(int(v) for v in r["resolution"].split("×"))
        if all(float(s.resized(size).max()) >= 0.5 for s in _selections(request)):
            out.append(r)
    if not out:
        raise RewriteError("no rewritable layer's resolution holds the request's selections; give advise.layers=[...]")
    return out


@dataclass
class Reference:
    """One layer's unedited output on the validation samples, where their keys match the context
    (dᵀk/dᵀk* ≥ ½, at the output's resolution) and the context's spread: computed once per layer
    and shared by its ranks."""

    values: Tensor
    matched: Tensor  # (locations,) bool
    top_share: float

    @classmethod
    def of(cls, base: HookedLayer, request: EditRequest, model: Model, second_moment: Tensor, z: Tensor) -> "Reference":
        query = ContextQuery.of(request.context_selections(), base, model.latents, second_moment)
        with torch.no_grad():
            inputs = base.inputs(z)
            values = base.layer_forward(inputs)
            score = query.scores(base.keys_from(inputs))
        if score.ndim == 3 and tuple(score.shape[1:]) != tuple(values.shape[2:]):  # an upsampling layer: keys are coarser
            score = torch.nn.functional.interpolate(score[:, None], size=values.shape[2:], mode="nearest")[:, 0]
        return cls(values, score.reshape(-1) >= MATCHED, query.top_share)


def layer_measures(reference: Reference, edited: HookedLayer, goal: Any, z: Tensor) -> dict[str, float]:
    """Segmenter-free: the share of the way toward the goal's mean value the layer's output moved at
    held-out locations whose keys match the context, and its relative change elsewhere."""
    matched = reference.matched
    with torch.no_grad():
        g = (goal.target * goal.region).flatten(2).sum(2).sum(0) / goal.region.flatten(2).sum(2).sum(0).clamp_min(1e-12)
        f0, f1 = flat_keys(reference.values), flat_keys(edited.values(z))  # (locations, C)
        toward = g.to(f0)[None] - f0
        reach = ((f1 - f0) * toward).sum(1) / (toward ** 2).sum(1).clamp_min(1e-12)
        elsewhere = (f1 - f0)[~matched].norm(dim=1).mean() / f0[~matched].norm(dim=1).mean().clamp_min(1e-12)
    return {"matched_share": float(matched.float().mean()),
            "reach_at_matches": float(reach[matched].clamp(-1, 2).mean()) if matched.any() else float("nan"),
            "change_elsewhere": float(elsewhere) if (~matched).any() else float("nan"),
            "context_top_share": reference.top_share}


def segmenter_measures(cfg: DictConfig, model: Model, before: Tensor, after: Tensor) -> dict[str, Any]:
    """The recipe's efficacy, masked change and the classes that appeared, from the world segmenter."""
    measures = EditMeasures(cfg, model, quick=True)
    measures.update(before, after)
    m = measures.compute()
    out: dict[str, Any] = {"masked_l1": m["masked_l1"]}
    classes = model.world.classes
    lb, la = model.segmenter.labels(before), model.segmenter.labels(after)
    source = [classes.index(c) for c in cfg.select.source]
    if cfg.edit.kind == "copy":  # source pixels now labelled a target class other than the source (tree; mouth or teeth)
        targets = [classes.index(c) for c in cfg.select.target if c not in cfg.select.source]
        hits, total = region_counts(lb, la, source, targets)
        out["efficacy"] = float(hits) / max(int(total), 1)
    else:  # erase: source pixels removed
        out["efficacy"] = 1 - m["source_pixels_after"] / max(m["source_pixels_before"], 1)
    skip = set(cfg.select.source) | set(cfg.select.target)
    appeared = {}
    for k, name in enumerate(classes):
        if name in skip:
            continue
        was = (lb == k).flatten(1).sum(1) >= MIN_PIXELS
        now = (la == k).flatten(1).sum(1) >= MIN_PIXELS
        appeared[name] = float((now & ~was).float().mean())
    worst = max(appeared, key=appeared.get)
    out.update(appeared=appeared, appeared_most=f"{worst} {appeared[worst]:.3f}")
    for key in ("watermark_any_rate_after", "smiling_rate_after"):
        if key in m:
            out[key.replace("_after", "")] = m[key]
    return out


def pareto(rows: list[dict], x: str, y: str) -> list[dict]:
    """The rows no other row beats on both (``x`` lower, ``y`` higher), by ``x``."""
    front = [r for r in rows if not any(o[x] <= r[x] and o[y] >= r[y] and (o[x] < r[x] or o[y] > r[y]) for o in rows)]
    return sorted(front, key=lambda r: r[x])


def knee(front: list[dict], rows: list[dict], x: str, y: str) -> dict:
    """The front's point farthest above the line of no gain: efficacy minus change, each scaled to [0, 1] over all rows."""
    def scaled(v: float, key: str) -> float:
        lo, hi = min(r[key] for r in rows), max(r[key] for r in rows)
        return (v - lo) / (hi - lo) if hi > lo else 0.0
    return max(front, key=lambda r: scaled(r[y], y) - scaled(r[x], x))


def run(cfg: DictConfig, overrides: list[str], out: Path, console: Console) -> None:
    result = advise(cfg, out / "advise")
    table = Table(title=f"advise {cfg.recipe}: {result['validation']} ({result['seconds']} s) — sorted along the Pareto front")
    x, y = result["change_key"], result["efficacy_key"]
    for col in ("layer", "rank", y, x, "front", "extra"):
        table.add_column(col, justify="left" if col in ("layer", "front", "extra") else "right")
    for r in result["rows"]:
        if "error" in r:
            table.add_row(r["layer"], str(r["rank"]), "-", "-", "", r["error"][:60])
            continue
        extra = r.get("appeared_most", "") or f"context top-1 share {r['context_top_share']:.2f}"
        mark = ("★ " if r is result["suggested_row"] else "") + ("front" if r["front"] else "")
        table.add_row(f"{r['layer']}{' (recipe)' if r['current'] else ''}", str(r["rank"]), f"{r[y]:.3f}", f"{r[x]:.4f}",
                      mark, extra)
    console.print(table)
    console.print(f"suggested: {result['suggested']}   → {out / 'advise'}/advise.json, advise.png", highlight=False)


@dataclass
class Sweep:
    """What every candidate edit shares: the configuration, model and request, the validation
    samples (latents and unedited images) and each layer's :class:`Reference`."""

    cfg: DictConfig
    model: Model
    request: EditRequest
    val: range
    z: Tensor
    before: Tensor
    with_segmenter: bool
    root: Path
    references: dict[str, Reference] = field(default_factory=dict)

    def measure(self, layer: dict, rank: int) -> dict[str, Any]:
        """Make the recipe's edit at ``layer`` with ``rank`` as ``fit`` does, and measure it on the validation samples."""
        from .fit import edit_trainer, make_module

        cfg, model = self.cfg, self.model
        run_cfg = copy.deepcopy(cfg)
        OmegaConf.update(run_cfg, "edit.layer", layer["name"])
        OmegaConf.update(run_cfg, "edit.rank", rank)
        run_cfg.progress = False
        module = make_module(run_cfg, model, self.request)
        moment = None
        if module.needs_statistics:
            moment = key_statistics(run_cfg, module.hooked, module.latents)[0].moment
            module.set_key_moment(moment)
        start = time.perf_counter()
        edit_trainer(run_cfg, None, self.root, module.method.projects, []).fit(module)
        edited = module.edited_generator().eval()
        row: dict[str, Any] = {"layer": layer["alias"] or layer["name"], "module": layer["name"],
                               "resolution": layer["resolution"], "rank": rank,
                               "edit_seconds": round(time.perf_counter() - start, 2),
                               "current": layer["name"] == HookedLayer(model.generator, cfg.edit.layer).name
                               and rank == cfg.edit.rank}
        row.update({k: v for k, v in module.method.report().items() if isinstance(v, (int, float))})
        if moment is not None:
            if layer["name"] not in self.references:
                base = HookedLayer(model.generator, layer["name"])
                self.references[layer["name"]] = Reference.of(base, self.request, model, moment.moment(), self.z)
            row.update(layer_measures(self.references[layer["name"]], module.hooked, module.goal, self.z))
        if self.with_segmenter:
            (after,) = draw([edited], model.latents, self.val, cfg.stats.batch_size, progress=False)
            row.update(segmenter_measures(cfg, model, self.before, after))
        return row


def advise(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Make and measure every candidate edit; write ``advise.json`` and ``advise.png`` under ``out``."""
    began = time.perf_counter()
    model = load_model(cfg)
    request = build_request(cfg, model)
    val = validation_range(cfg)
    layers = candidates(model, request, list(cfg.advise.layers))
    with_segmenter = model.segmenter is not None and bool(cfg.select.source) and cfg.edit.kind in ("copy", "erase")
    (before,) = draw([model.generator], model.latents, val, cfg.stats.batch_size, progress=False)
    sweep = Sweep(cfg, model, request, val, model.latents.take(list(val)), before, with_segmenter, out.parent)
    rows = []
    engine_log = logging.getLogger("lightning_rewrite.engine")
    level = engine_log.level
    engine_log.setLevel(logging.WARNING)  # one warm-start line per candidate would bury the table
    try:
        for layer, rank in ((layer, rank) for layer in layers for rank in cfg.advise.ranks):
            try:
                rows.append(sweep.measure(layer, int(rank)))
            except RewriteError as e:  # this layer cannot take this edit (e.g. fewer key channels than units)
                rows.append({"layer": layer["alias"] or layer["name"], "module": layer["name"], "rank": int(rank),
                             "resolution": layer["resolution"], "current": False, "error": str(e)})
    finally:
        engine_log.setLevel(level)
    y, x = ("efficacy", "masked_l1") if with_segmenter else ("reach_at_matches", "change_elsewhere")
    scored = [r for r in rows if "error" not in r and r.get(x) == r.get(x) and r.get(y) == r.get(y) and r[y] >= MIN_EFFECT]
    front = pareto(scored, x, y)
    if not front:
        raise RewriteError(f"no candidate edit reached {y} ≥ {MIN_EFFECT}: try other advise.layers or advise.ranks")
    best = knee(front, scored, x, y)
    for r in rows:
        r["front"] = r in front
    rows.sort(key=lambda r: ("error" in r, not r["front"], r[x] if r["front"] else -r.get(y, 0)))
    result = {"recipe": cfg.recipe, "validation": f"samples {val.start}–{val.stop - 1}", "n": len(val),
              "efficacy_key": y, "change_key": x, "rows": rows, "suggested_row": best,
              "suggested": f"edit.layer={best['layer']} edit.rank={best['rank']}",
              "rule": "the Pareto front's knee: efficacy minus change, each scaled to [0, 1] over the rows",
              "seconds": round(time.perf_counter() - began, 1)}
    with run_directory(out, "advise", nested=True) as tmp:
        write_text(tmp / "advise.json", json.dumps({**result, "suggested_row": None, "rows": rows}, indent=1) + "\n")
        plot(rows, front, best, x, y, f"{cfg.recipe}: {len(rows)} edits on {result['validation']}", tmp / "advise.png")
    return result


def plot(rows: list[dict], front: list[dict], best: dict, x: str, y: str, title: str, path: Path) -> None:
    """Efficacy against change, drawn with Pillow: a point per layer × rank (the rank by shape, the
    layer written beside it), the Pareto front joined, the recipe's setting ringed in red and the
    suggestion in gold."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    w, h, left, right, top, bottom = 760, 520, 70, 170, 40, 60
    image = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(image)
    pts = [r for r in rows if "error" not in r and r[x] == r[x] and r[y] == r[y]]
    xs, ys = [r[x] for r in pts], [r[y] for r in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x0, x1 = x0 - 0.05 * (x1 - x0 or 1), x1 + 0.05 * (x1 - x0 or 1)
    y0, y1 = y0 - 0.05 * (y1 - y0 or 1), y1 + 0.05 * (y1 - y0 or 1)

    def at(r: dict) -> tuple[float, float]:
        return (left + (r[x] - x0) / (x1 - x0) * (w - left - right), h - bottom - (r[y] - y0) / (y1 - y0) * (h - top - bottom))
    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    draw.text((left, 10), title.replace("–", "-"), fill="black", font=font)  # the default font has no en dash
    for k in range(5):
        vx, vy = x0 + (x1 - x0) * k / 4, y0 + (y1 - y0) * k / 4
        px, py = left + (w - left - right) * k / 4, h - bottom - (h - top - bottom) * k / 4
        draw.text((px - 15, h - bottom + 4), f"{vx:.3g}", fill="black", font=font)
        draw.text((8, py - 6), f"{vy:.3g}", fill="black", font=font)
    draw.text((left, h - 28), f"{x}: collateral change (lower is better)", fill="black", font=font)
    draw.text((8, top - 18), f"{y} (higher is better)", fill="black", font=font)
    line = [at(r) for r in front]
    for a, b in zip(line, line[1:]):
        draw.line([a, b], fill=(90, 90, 90), width=2)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    ranks = sorted({r["rank"] for r in rows})
    for r in pts:
        cx, cy = at(r)
        c = colours[ranks.index(r["rank"]) % len(colours)]
        shape = ranks.index(r["rank"]) % 3
        if shape == 0:
            draw.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], fill=c)
        elif shape == 1:
            draw.rectangle([cx - 5, cy - 5, cx + 5, cy + 5], fill=c)
        else:
            draw.polygon([(cx, cy - 6), (cx - 6, cy + 5), (cx + 6, cy + 5)], fill=c)
        draw.text((cx + 7, cy - 7), r["layer"], fill=(60, 60, 60), font=font)
        if r["current"]:
            draw.ellipse([cx - 11, cy - 11, cx + 11, cy + 11], outline=(220, 0, 0), width=2)
    def star(cx: float, cy: float, r: float) -> None:
        points = [(cx + (r if k % 2 == 0 else r * 0.4) * math.sin(k * math.pi / 5),
                   cy - (r if k % 2 == 0 else r * 0.4) * math.cos(k * math.pi / 5)) for k in range(10)]
        draw.polygon(points, fill=(255, 200, 0), outline="black")
    star(*at(best), 13)
    lx, ly = w - right + 12, top
    for k, rank in enumerate(ranks):
        c = colours[k % len(colours)]
        draw.ellipse([lx, ly + 3, lx + 9, ly + 12], fill=c) if k % 3 == 0 else (
            draw.rectangle([lx, ly + 3, lx + 9, ly + 12], fill=c) if k % 3 == 1 else
            draw.polygon([(lx + 5, ly + 2), (lx, ly + 12), (lx + 10, ly + 12)], fill=c))
        draw.text((lx + 15, ly), f"rank {rank}", fill="black", font=font)
        ly += 18
    draw.line([lx, ly + 8, lx + 10, ly + 8], fill=(90, 90, 90), width=2)
    draw.text((lx + 15, ly), "Pareto front", fill="black", font=font)
    draw.ellipse([lx - 1, ly + 19, lx + 11, ly + 31], outline=(220, 0, 0), width=2)
    draw.text((lx + 15, ly + 18), "recipe's setting", fill="black", font=font)
    star(lx + 5, ly + 43, 7)
    draw.text((lx + 15, ly + 36), f"suggested: {best['layer']} r{best['rank']}", fill="black", font=font)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
