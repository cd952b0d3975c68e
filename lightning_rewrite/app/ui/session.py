"""What the browser interface holds between requests: the model and its stack of edits, the
selections painted so far, the rendered images, and the one edit that may run at a time. The
server turns HTTP into calls of :class:`Session`; the work is the engine's and ``fit``'s (the same
request, goal, method, key statistics, Trainer and edit files as the command line)."""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from ...engine import images
from ...engine.edit import FORMAT, Edit
from ...engine.fingerprint import module_fingerprint
from ...engine.layer import HookedLayer
from ...engine.masks import bounding_box, mask_to_data_url
from ...engine.request import EditRequest, Selection
from ...engine.search import ContextQuery
from ...errors import RewriteError
from ...limits import MAX_SAMPLES
from ...models.summary import describe_layers
from ...vocabulary import METHODS, SOLVERS
from ..assemble import Model, check_request
from ..rundir import run_directory
from .render import Renderer

#: The settings the page may change, and the configuration key each one sets.
SETTING_KEYS = {"layer": "edit.layer", "rank": "edit.rank", "method": "edit.method", "solver": "edit.solver",
                "steps": "trainer.max_steps", "units": "edit.units"}


@dataclass
class Progress:
    """The running (or last) edit, as the page polls it."""

    running: bool = False
    kind: str = ""
    step: int = 0
    steps: int = 0
    loss: float | None = None
    seconds: float | None = None
    error: str | None = None


class ReportProgress(pl.Callback):
    """Copies the edit's step and loss into the session's :class:`Progress` after each step."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        self.progress.step = trainer.global_step
        self.progress.loss = float(loss) if loss is not None else None


def _selection_json(sel: Selection | None) -> dict | None:
    return None if sel is None else {"sample": sel.sample, "mask": sel.url or mask_to_data_url(sel.mask)}


class Session:
    """The interface's state over one model. Every public method is safe to call from the
    server's worker threads; a bad input raises :class:`RewriteError` with the page's line."""

    def __init__(self, cfg: DictConfig, model: Model, out: Path) -> None:
        self.cfg = copy.deepcopy(cfg)
        self.cfg.progress = False
        self.model = model
        self.out = out
        self.latents = model.latents
        self.layers = describe_layers(model.generator)
        self.size = model.image_size()
        self.settings = {"layer": self._layer_name(cfg.edit.layer), "rank": int(cfg.edit.rank), "method": cfg.edit.method,
                         "solver": cfg.edit.solver, "steps": int(cfg.trainer.max_steps),
                         "units": cfg.edit.units if isinstance(cfg.edit.units, int) else 30}
        self.object: Selection | None = None
        self.paste: Selection | None = None
        self.context: list[Selection] = []
        self.stack: list[Edit] = []
        self.progress = Progress()
        self._lock = threading.RLock()
        self._worker: threading.Thread | None = None
        self._queries: dict[tuple, ContextQuery] = {}
        self.renderer = Renderer(model.generator, self.latents)
        self._changed()

    # -- what the page shows ----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything the page needs to draw itself after a load or a reload."""
        with self._lock:
            return {
                "recipe": self.cfg.recipe, "image_size": list(self.size), "start": int(self.cfg.sample.start),
                "page": int(self.cfg.ui.page), "search": int(self.cfg.ui.search), "max_index": MAX_SAMPLES - 1,
                "layers": [{"name": r["name"], "alias": r["alias"], "resolution": r["resolution"]} for r in self.layers],
                "methods": list(METHODS), "solvers": list(SOLVERS), "settings": dict(self.settings),
                "object": _selection_json(self.object), "paste": _selection_json(self.paste),
                "context": [_selection_json(s) for s in self.context],
                "stack": [{"label": self._label(e), "kind": e.spec.get("kind"),
                           "steps": (e.spec.get("solver") or {}).get("steps")} for e in self.stack],
                "state": self.renderer.state, "progress": asdict(self.progress),
            }

    def image(self, index: int, original: bool) -> bytes:
        """The PNG of sample ``index``: unedited (``original``) or with every edit of the stack."""
        self._check_index(index)
        with self._lock:
            return self.renderer.png(index, original)

    def page(self, indices: list[int], original: bool) -> None:
        """Render a page of samples in one batch (so the images that follow are cache hits)."""
        for i in indices:
            self._check_index(i)
        with self._lock:
            self.renderer.render(indices, original)

    def matches(self, index: int, original: bool) -> bytes:
        """The PNG of sample ``index`` darkened, with where the context's key fires in red (Fig. 2c)."""
        self._check_index(index)
        with self._lock:
            query, hooked = self._query()
            score = query.score_map(hooked, self.latents.take([index]))
            image = images.unit(self.renderer.images([index], original))
            return images.png_bytes(images.heat_overlays(image, score)[0])

    def search(self, start: int, n: int) -> dict[str, Any]:
        """Samples ``start`` … ``start + n - 1`` ranked by how strongly the context key fires."""
        n = max(1, min(int(n), int(self.cfg.ui.search)))
        self._check_index(start)
        self._check_index(start + n - 1)
        began = time.perf_counter()
        with self._lock:
            query, hooked = self._query()
            ranked = query.rank(hooked, self.latents, range(start, start + n))
        top = ranked[:int(self.cfg.ui.page)]
        return {"indices": [i for i, _ in top], "scores": [round(s, 3) for _, s in top],
                "searched": n, "seconds": round(time.perf_counter() - began, 2)}

    # -- selections ---------------------------------------------------------------------------

    def copy(self, sample: int, mask: str) -> None:
        """The painted region of ``sample`` becomes the object; a paste of an earlier object is dropped."""
        sel = self._selection(sample, mask, "the copied region")
        with self._lock:
            self.object, self.paste = sel, None

    def paste_at(self, sample: int, y: int, x: int) -> None:
        """Place the copied object on ``sample`` with its centre at pixel (y, x)."""
        self._check_index(sample)
        if self.object is None:
            raise RewriteError("Paste needs a copied object: paint a region on one sample and press Copy first")
        h, w = self.size
        if not (0 <= y < h and 0 <= x < w):
            raise RewriteError(f"the paste point ({x}, {y}) lies outside the {w}×{h} image")
        mask = self.object.mask
        t, l, b, r = bounding_box(mask)
        top = min(max(0, y - (b - t) // 2), h - (b - t))
        left = min(max(0, x - (r - l) // 2), w - (r - l))
        placed = torch.zeros_like(mask)
        placed[top:top + b - t, left:left + r - l] = mask[t:b, l:r]
        with self._lock:
            self.paste = Selection(sample, placed)

    def add_context(self, sample: int, mask: str) -> None:
        sel = self._selection(sample, mask, "the context region")
        with self._lock:
            self.context.append(sel)
            self._queries.clear()

    def remove_context(self, k: int) -> None:
        with self._lock:
            if not 0 <= k < len(self.context):
                raise RewriteError(f"there is no context region {k + 1}; the tray holds {len(self.context)}")
            del self.context[k]
            self._queries.clear()

    def clear(self) -> None:
        """Forget the copy, paste and context (the edits stay)."""
        with self._lock:
            self.object, self.paste, self.context = None, None, []
            self._queries.clear()

    def set_settings(self, values: dict[str, Any]) -> None:
        """Change layer, rank, method, solver, steps or units; each is checked as the command line checks it."""
        unknown = sorted(set(values) - set(SETTING_KEYS))
        if unknown:
            raise RewriteError(f"unknown setting {unknown[0]!r}; the settings are {', '.join(SETTING_KEYS)}")
        new = {**self.settings, **values}
        new["layer"] = self._layer_name(str(new["layer"]))
        try:
            new.update(rank=int(new["rank"]), steps=int(new["steps"]), units=int(new["units"]))
        except (TypeError, ValueError):
            raise RewriteError("rank, steps and units must be whole numbers") from None
        try:  # checked as the command line checks it, for an edit of either kind (dissect only erases)
            self._config("copy", new)
        except RewriteError:
            self._config("erase", new)
        with self._lock:
            self.settings = new
            self._changed()

    # -- edits --------------------------------------------------------------------------------

    def execute(self, kind: str = "copy") -> None:
        """Start the edit the selections ask for (``copy``, or ``erase`` of the context) in the
        background; the page polls :attr:`progress`. One edit at a time."""
        with self._lock:
            if self.progress.running:
                raise RewriteError("an edit is already running: wait for it to finish (one edit at a time)")
            request = self.request(kind)
            cfg = self._config(kind, self.settings)
            self.progress = Progress(running=True, kind=kind, steps=int(cfg.trainer.max_steps))
            self._worker = threading.Thread(target=self._edit, args=(cfg, request), daemon=True)
            self._worker.start()

    def wait(self, timeout: float | None = None) -> Progress:
        """Block until the running edit (if any) ends; its final progress."""
        if self._worker is not None:
            self._worker.join(timeout)
        return self.progress

    def request(self, kind: str) -> EditRequest:
        """The EditRequest of the current selections."""
        if kind == "erase":
            if not self.context:
                raise RewriteError("Erase needs context: paint what to erase on one or more samples and add them to Context")
            paste = self.paste if self.object is None else None  # a loaded erase request's own paste
            request = EditRequest("erase", paste=paste, context=list(self.context), units=int(self.settings["units"]))
        elif kind == "copy":
            if self.object is None:
                raise RewriteError("Execute needs a copied object: paint a region and press Copy, then Paste it")
            if self.paste is None:
                raise RewriteError("Execute needs a paste: press Paste and click where the object goes on another sample")
            request = EditRequest("copy", self.object, self.paste, list(self.context))
        else:
            raise RewriteError(f"unknown edit kind {kind!r}: the interface makes copy and erase edits")
        check_request(request, self.size)
        return request

    def _edit(self, cfg: DictConfig, request: EditRequest) -> None:
        from ..fit import edit_trainer, make_module, spec_of
        from ..stats import key_statistics

        began = time.perf_counter()
        try:
            base = module_fingerprint(self.model.generator)
            module = make_module(cfg, self.model, request)
            if module.needs_statistics:
                module.set_key_moment(key_statistics(cfg, module.hooked, module.latents)[0].moment)
            trainer = edit_trainer(cfg, None, self.out, module.method.projects, [ReportProgress(self.progress)])
            trainer.fit(module)
            edited = module.edited_generator()
            spec = {**spec_of(cfg, ["ui"], self.model, module), "made_with": "ui"}
            edit = Edit(module.changes(), base, module_fingerprint(edited), spec)
            with self._lock:
                self._push(edit)
        except RewriteError as e:
            self.progress.error = str(e)
        except Exception as e:  # noqa: BLE001 - the page shows it; the server keeps serving
            self.progress.error = f"the edit failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        finally:
            self.progress.seconds = round(time.perf_counter() - began, 2)
            self.progress.running = False

    def _push(self, edit: Edit) -> None:
        edit.apply(self.model.generator)
        self.stack.append(edit)
        self._changed()

    def revert(self) -> None:
        """Undo the last edit of the stack; the weights are bitwise those before it."""
        with self._lock:
            if self.progress.running:
                raise RewriteError("an edit is running: Revert when it has finished")
            if not self.stack:
                raise RewriteError("there is no edit to revert")
            self.stack.pop().revert(self.model.generator)
            self._changed()

    # -- files --------------------------------------------------------------------------------

    def save(self) -> list[str]:
        """Write the stack's edit files, the selections as an official request and a labelled
        before/after picture of the first page into ``out/ui`` (replacing an earlier Save)."""
        with self._lock:
            if not self.stack:
                raise RewriteError("there is no edit to save: Execute an edit first")
            n_edits = len(self.stack)
            names = ["edit.safetensors"] if n_edits == 1 else [f"edit_{k + 1}.safetensors" for k in range(n_edits)]
            start, n = int(self.cfg.sample.start), int(self.cfg.ui.page)
            indices = list(range(start, start + n))
            before, after = (images.unit(self.renderer.images(indices, o)) for o in (True, False))
            request = self._saved_request()
            with run_directory(self.out / "ui", "ui", nested=True) as tmp:
                for edit, name in zip(self.stack, names):
                    edit.save(tmp / name)
                if request is not None:
                    request.save(tmp / "request.json")
                labels = ", ".join(e.describe() for e in self.stack)
                rows = images.before_after(before, after, indices, per_row=min(n, 8))
                images.save_png(images.figure(rows, f"{self.cfg.recipe} in the interface: {labels}"), tmp / "before_after.png")
            written = [*names, *(n.replace(".safetensors", ".json") for n in names),
                       *(["request.json"] if request is not None else []), "before_after.png"]
            return [str(self.out / "ui" / w) for w in written]

    def _saved_request(self) -> EditRequest | None:
        if self.object is not None:
            return EditRequest("copy", self.object, self.paste, list(self.context))
        if self.context:
            return EditRequest("erase", paste=self.paste, context=list(self.context), units=int(self.settings["units"]))
        return None

    def load(self, name: str, data: bytes) -> str:
        """An official request JSON (or ours) sets the selections; an edit file joins the stack.
        Only JSON and safetensors are read, never pickle; nothing is written."""
        if data[:1] == b"{" or name.endswith(".json"):
            try:
                parsed = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise RewriteError(f"{name} is not valid JSON ({e}); Load takes an edit request .json or an edit "
                                   ".safetensors") from None
            if isinstance(parsed, dict) and parsed.get("format") == FORMAT:
                raise RewriteError(f"{name} is an edit's description; Load its .safetensors to apply the edit")
            request = EditRequest.from_json(data.decode("utf-8"))
            return self._use_request(request, name)
        edit = Edit.from_bytes(data, name)
        with self._lock:
            if self.progress.running:
                raise RewriteError("an edit is running: Load an edit file when it has finished")
            self._push(edit)
        return f"applied {name}: {edit.describe()}"

    def _use_request(self, request: EditRequest, name: str) -> str:
        if request.kind == "paired":
            raise RewriteError(f"{name} is a paired (reflection) request: run it with fit edit.request=…; "
                               "the interface makes copy and erase edits")
        for sel in [s for s in (request.object, request.paste) if s is not None] + request.context:
            if not isinstance(sel.sample, int):
                raise RewriteError(f"{name} names a sample by its latent; the interface shows samples by index")
            self._check_index(sel.sample)
        if request.missing() is None:
            check_request(request, self.size)
        with self._lock:
            self.object, self.paste, self.context = request.object, request.paste, list(request.context)
            if request.kind == "erase" and isinstance(request.units, int):
                self.settings["units"] = request.units
            self._queries.clear()
        return (f"loaded {name}: {'an object, ' if request.object else ''}{'a paste, ' if request.paste else ''}"
                f"{len(request.context)} context region(s)")

    # -- helpers ------------------------------------------------------------------------------

    def _changed(self) -> None:
        """The weights or the layer changed: cached queries go, the renderer learns the new state."""
        self._queries.clear()
        weight = HookedLayer(self.model.generator, self.settings["layer"]).weight_name
        self.renderer.changed(self.stack, weight.rsplit(".", 1)[0])

    def _label(self, edit: Edit) -> str:
        """The edit in words, its layer by the name the settings show (``layer6``, not ``convs.3``)."""
        alias = next((r["alias"] for r in self.layers if r["name"] == edit.layer and r["alias"]), None)
        return edit.describe().replace(f" at {edit.layer}", f" at {alias}") if alias else edit.describe()

    def _check_index(self, index: int) -> None:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < MAX_SAMPLES:
            raise RewriteError(f"sample index {index!r} is out of range: indices are 0 … {MAX_SAMPLES - 1:,}")

    def _layer_name(self, layer: str) -> str:
        """The layer's module name (an official alias such as ``layer6`` is accepted)."""
        for r in self.layers:
            if layer in (r["name"], r["alias"]):
                return r["name"]
        names = ", ".join(r["alias"] or r["name"] for r in self.layers)
        raise RewriteError(f"unknown layer {layer!r}; the rewritable layers are {names}")

    def _resolution(self) -> tuple[int, int] | None:
        res = next(r["resolution"] for r in self.layers if r["name"] == self.settings["layer"])
        return tuple(int(v) for v in res.split("×")) if "×" in res else None

    def _selection(self, sample: int, mask: str, what: str) -> Selection:
        self._check_index(sample)
        if not isinstance(mask, str) or not mask.startswith("data:image/png;base64,"):
            raise RewriteError(f"{what} must be a PNG data URL (data:image/png;base64,…)")
        sel = Selection.of(sample, mask, what)
        if tuple(sel.mask.shape) != tuple(self.size):
            raise RewriteError(f"{what} is {sel.mask.shape[1]}×{sel.mask.shape[0]}; it must be the image's "
                               f"{self.size[1]}×{self.size[0]}")
        if float(sel.mask.max()) <= 0:
            raise RewriteError(f"{what} is empty: paint over the part of sample {sample} you mean first")
        res = self._resolution()
        if res is not None and float(sel.resized(res).max()) < 0.5:  # no location of the layer half covered
            raise RewriteError(f"{what} is too small for {self.settings['layer']} ({res[0]}×{res[1]}): paint a region of "
                               f"at least {self.size[0] // res[0]}×{self.size[1] // res[1]} pixels, or choose a finer layer")
        return sel

    def _config(self, kind: str, settings: dict[str, Any]) -> DictConfig:
        """The run configuration of an edit with the page's settings, checked as the command line checks it."""
        from ..config import validate

        cfg = copy.deepcopy(self.cfg)
        for key, path in SETTING_KEYS.items():
            OmegaConf.update(cfg, path, settings[key] if key != "units" or kind == "erase" else cfg.edit.units)
        cfg.edit.kind = kind
        if kind == "erase":
            cfg.edit.units = int(settings["units"])
        if settings["solver"] == "official":
            raise RewriteError("the official schedule (2001 Adam steps) is a command-line setting: edit.solver=official")
        validate(cfg)
        return cfg

    def _query(self) -> tuple[ContextQuery, HookedLayer]:
        """The context's query at the current layer of the current generator (cached until either changes)."""
        from ..stats import key_statistics

        if not self.context:
            raise RewriteError("Search and Show Context Matches need context: paint regions and add them to Context")
        hooked = HookedLayer(self.model.generator, self.settings["layer"])
        key = (self.settings["layer"], self.renderer.state)
        if key not in self._queries:
            cfg = self._config("copy", self.settings)
            moment = key_statistics(cfg, hooked, self.latents)[0].moment.moment()
            self._queries[key] = ContextQuery.of(self.context, hooked, self.latents, moment)
        return self._queries[key], hooked
