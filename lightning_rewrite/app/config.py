"""Typed configuration of every command: dataclass schemas merged as OmegaConf structured
configs, so a recipe YAML or a ``key=value`` override naming an unknown field, or a value of the
wrong type, is an error. Recipe commands (``fit``, ``test``, ``sample``, ``select``, ``stats``,
``layers``) read :class:`RunConfig`; the world commands read :class:`PretrainConfig` and
:class:`SegmenterConfig`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import RewriteError, shortened
from ..limits import MAX_SAMPLES
from ..vocabulary import (ACCELERATORS, DEFAULT_LR, KINDS, LOGGERS, LOSSES, METHODS, PARAMETRIZATIONS, PERCEPTUAL,
                          PRODUCTS, SCHEDULES, SOLVERS, choices)


def setting(default: Any = None, meaning: str = "", factory: Any = None) -> Any:
    """A schema field and its one-line meaning (what ``--help`` says of it)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": meaning})
    return field(default=default, metadata={"help": meaning})


@dataclass
class ModelConfig:
    """The generator: an embedded world's (default) or a checkpoint the user supplies."""

    world: Optional[str] = setting("churches", "embedded world (churches, faces, kitchens): its generator is the "
                                   "default model, its segmenter chooses selections and scores samples")
    checkpoint: Optional[str] = setting(None, "your generator instead: a .pt / .pth / .pkl / .safetensors file")
    truncation: Optional[float] = setting(None, "StyleGAN2 truncation ψ for sampling (the paper samples at 0.5)")
    edits: list[str] = setting(meaning="edit files applied in order before anything else: [a.safetensors,b.safetensors]",
                               factory=list)
    force: bool = setting(False, "apply edits even to a model whose fingerprint differs from the one they were made on")


@dataclass
class SelectConfig:
    """How a recipe picks its request among the world's seed-1 samples, by segmenter labels."""

    source: list[str] = setting(meaning="classes to change (the paste, erase or pair region)", factory=list)
    target: list[str] = setting(meaning="classes to copy (copy requests)", factory=list)
    require: list[str] = setting(meaning="classes the copied sample must show", factory=list)
    exclude: list[str] = setting(meaning="classes the paste and context samples must not show", factory=list)
    pool: int = setting(100, "samples 0 … pool-1 are searched")
    context: int = setting(4, "context regions besides the paste")
    min_pixels: int = setting(60, "smallest region (pixels) a selection may use")
    pairs: int = setting(15, "pairs of a paired request")


@dataclass
class EditConfig:
    """The rewrite: request, layer, method, rank and solver settings."""

    kind: str = setting("copy", choices(KINDS))
    request: Optional[str] = setting(None, "an official edit JSON file (the 2020 interface's) instead of the recipe's selection")
    layer: str = setting("layer6", "the layer whose weight is rewritten (official names layer2 … or a module path; "
                                   "`layers` lists them)")
    method: str = setting("rank_s", choices(METHODS))
    rank: int = setting(1, "S, the number of context directions the change may use: 1 changes one rule, more "
                           "follow more varied context at more collateral change")
    units: Any = setting(None, "erase: key channels zeroed in the target, a count (the paper: 30 / 60; official "
                               "files: 30) or a list; posneg.json pairs: the window units, a list")
    solver: str = setting("auto", choices(SOLVERS))
    lr: Optional[float] = setting(None, "the solver's rate; default: lbfgs 1 (its line search's first step), adam by "
                                        "method: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_LR["adam"].items()))
    crop: bool = setting(True, "compute the goal on the smallest exact window of the layer's input around the region")
    low_rank: bool = setting(True, "rank_s: evaluate the goal through the S projected keys Dᵀk (the same numbers up "
                                   "to rounding, far fewer operations); false: the layer's own forward (bitwise as 0.1)")
    warm_start: bool = setting(True, "rank_s with adam: start Λ from the closed-form insert of the layer's linear "
                                     "part (lbfgs starts from Λ = 0, and from the insert only if its first step stalls)")
    loss: str = setting("l1", "the goal's distance: " + choices(LOSSES))
    parametrization: str = setting("lambda", "rank_s: " + choices(PARAMETRIZATIONS))
    lr_schedule: str = setting("cosine", choices(SCHEDULES))
    project_every: int = setting(10, "projected / svd: project every N steps")
    perceptual: str = setting("auto", "all_weights' image distance besides L1: " + choices(PERCEPTUAL))
    perceptual_weight: float = setting(1.0, "all_weights: ℓ = L1 + perceptual_weight · perceptual")
    smooth_weight: float = setting(1.0, "all_weights: weight of L_smooth (unchanged output on fresh latents)")


@dataclass
class StatsConfig:
    """The key statistics C = E[kkᵀ] of the edited layer: how many latents, in what batches, and
    whether they are cached."""

    samples: int = setting(1000, "latents the statistics C = E[kkᵀ] stream over (every location a key)")
    batch_size: int = setting(50, "latents per forward pass (statistics, advise; sample draws each sample alone)")
    cache: bool = setting(True, "cache C under $LIGHTNING_REWRITE_CACHE (default ~/.cache/lightning_rewrite)")
    products: str = setting("float32", "precision of each batch's products kkᵀ (summed in float64): " + choices(PRODUCTS))


@dataclass
class TrainerConfig:
    """Passed to ``pl.Trainer``."""

    max_steps: int = setting(400, "the most optimiser steps of the edit: the default L-BFGS stops before, once a step "
                                  "gains < 1 % (adam and official run them all; the paper: 2001)")
    accelerator: str = setting("auto", "Lightning's accelerator: " + choices(ACCELERATORS))
    devices: int = setting(1, "Lightning's device count (test and sample: processes that share the samples)")
    num_nodes: int = setting(1, "test and sample: machines that share the samples (Lightning's num_nodes)")
    strategy: str = setting("auto", "test and sample: Lightning's strategy (auto; ddp for several CPU processes)")
    precision: str = setting("32-true", "test and sample: Lightning's precision (32-true, 16-mixed, bf16-mixed, …)")


@dataclass
class SampleConfig:
    """``sample``: which latents, and how the images are written."""

    n: int = setting(16, "images to draw")
    start: int = setting(1000, "first sample index (0 … 99 are where recipes choose their selections)")
    grid: bool = setting(True, "write samples.png, a labelled grid")
    folder: bool = setting(False, "write samples/NNNNNN.png, one file per sample")


@dataclass
class TestConfig:
    """``test``: held-out samples drawn with and without the edit."""

    n: int = setting(1000, "held-out samples measured")
    start: int = setting(1000, "first sample index measured")
    batch_size: int = setting(50, "samples per forward pass")
    edit: Optional[str] = setting(None, "the edit file to measure (default: the run's out/edit.safetensors)")


@dataclass
class AdviseConfig:
    """``advise``: the layers and ranks tried, and the validation samples they are measured on."""

    layers: list[str] = setting(meaning="layers to try (names or aliases; default: every layer whose resolution holds "
                                        "the selections)", factory=list)
    ranks: list[int] = setting(meaning="ranks to try", factory=lambda: [1, 2, 4])
    n: int = setting(100, "validation samples each edit is measured on")
    start: Optional[int] = setting(None, "first validation sample (default: right after the test range); never "
                                         "inside the selection pool or the test range")


@dataclass
class UiConfig:
    """``ui``: the browser interface's server."""

    host: str = setting("127.0.0.1", "address to serve on; anything but loopback lets other machines edit (a warning)")
    port: int = setting(8765, "port to serve on (0: a free one)")
    page: int = setting(12, "samples per page of the grid")
    search: int = setting(1000, "samples Search ranks (from the grid's first index)")
    max_upload_mb: int = setting(256, "largest file Load accepts (MB)")


@dataclass
class RunConfig:
    recipe: str = setting(MISSING, "the edit to make: a recipe name (listed above) or a recipe file of your own "
                                   "(PATH.yaml); required")
    recipe_file: Optional[str] = setting(None, "(set when recipe= names a file: its path)")
    description: str = setting("", "(set by the recipe: what it does)")
    out: Optional[str] = setting(None, "run directory (default runs/<recipe>); the tool writes only a new one "
                                       "or one it wrote")
    overwrite: bool = setting(False, "fit: replace a run directory even though it holds test/, sample/ or select/ results")
    logger: str = setting("wandb", choices(LOGGERS))
    progress: bool = setting(True, "show progress bars")
    print_config: bool = setting(False, "print the resolved configuration and exit")
    needs: dict[str, str] = setting(meaning="(set by the recipe: keys you must give, and what they are)", factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    test: TestConfig = field(default_factory=TestConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    advise: AdviseConfig = field(default_factory=AdviseConfig)


#: Keys a recipe sets for itself: not settings a user gives.
RECIPE_ONLY = ("description", "needs", "recipe_file")


#: ``edit.solver=official``: the 2020 code's schedule, as the settings it stands for (a key the
#: user gives keeps the user's value).
OFFICIAL = {"edit.parametrization": "projected", "edit.warm_start": False, "edit.lr": 0.05,
            "edit.lr_schedule": "constant", "edit.project_every": 10, "trainer.max_steps": 2001}


def official_schedule(cfg: DictConfig, given: set[str]) -> None:
    """Expand ``edit.solver=official`` into :data:`OFFICIAL` (keys in ``given`` excepted) and Adam."""
    if cfg.edit.solver != "official":
        return
    for key, value in OFFICIAL.items():
        if key not in given:
            OmegaConf.update(cfg, key, value)
    cfg.edit.solver = "adam"  # what the schedule runs; the run's overrides still say official


def recipes_dir() -> Path:
    return Path(str(resources.files("lightning_rewrite.recipes")))


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def recipe_summaries() -> dict[str, str]:
    """Each recipe's one-line description."""
    return {name: str(OmegaConf.load(recipes_dir() / f"{name}.yaml").get("description", "")) for name in recipe_names()}


def field_help(schema: type = RunConfig, prefix: str = "") -> dict[str, tuple[Any, str]]:
    """Every configuration field (dotted name) with its default and its one-line meaning."""
    out: dict[str, tuple[Any, str]] = {}
    for f in fields(schema):
        if is_dataclass(f.type) or (isinstance(f.type, str) and f.type.endswith("Config")):
            out.update(field_help(type(f.default_factory()), f"{prefix}{f.name}."))
            continue
        default = f.default_factory() if callable(f.default_factory) else f.default
        out[f"{prefix}{f.name}"] = (default, f.metadata.get("help", ""))
    return out


def field_defaults() -> dict[str, Any]:
    """Every configuration field with its default (dotted names), for --help."""
    base = OmegaConf.to_container(OmegaConf.structured(RunConfig), resolve=False, throw_on_missing=False)
    flat: dict[str, Any] = {}

    def walk(d: dict, prefix: str = "") -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v
    walk(base)
    return flat


def _omegaconf_message(e: Exception) -> str:
    """The first line of OmegaConf's message, led by the key it concerns."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    key = getattr(e, "full_key", None)
    return shortened(f"{key}: {first}" if key else first, 160)


#: Keys whose value is a list: a bare value (model.edits=a.safetensors) means a list of one.
LIST_KEYS = ("model.edits", "advise.layers", "advise.ranks", "select.source", "select.target", "select.require", "select.exclude")


def _as_list(item: str, keys: tuple[str, ...]) -> str:
    key, _, value = item.partition("=")
    if key.lstrip("+") in keys and value and not value.lstrip().startswith("["):
        return f"{key}=[{value}]"
    return item


def unknown_key(key: str, valid: list[str], where: str = "") -> RewriteError:
    """One line for an unknown key: the nearest valid keys, and the keys of its section."""
    near = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    section = key.rpartition(".")[0]
    same = [k for k in valid if section and k.startswith(section + ".")]
    hint = f"did you mean {' or '.join(repr(k) for k in near)}?" if near else (
        f"{section}'s keys: {', '.join(same)}" if same else "python -m lightning_rewrite --help lists every key")
    return RewriteError(f"unknown key {shortened(key, 60)!r}{where}; {hint}")


#: Keys naming a place to write or a file to read with a default when not given: an empty value is a mistake.
PATH_KEYS = ("out", "export", "init")


def dotlist(overrides: list[str], example: str) -> DictConfig:
    """``key=value`` items as a config, each value read as YAML; a value YAML cannot read or an
    interpolation (``${…}``, which would read other keys or the environment) is one line."""
    for item in overrides:
        if "=" not in item:
            raise RewriteError(f"argument {shortened(item, 60)!r} is not key=value (e.g. {example})")
        key, _, value = item.partition("=")
        if key in PATH_KEYS and not value.strip():
            raise RewriteError(f"{key}= is empty; give a path, or leave {key}= out for its default")
        if "${" in value:
            raise RewriteError(f"{key}: values may not hold ${{…}} interpolations, got {shortened(value, 60)!r}; "
                               "give the value itself")
        try:
            OmegaConf.from_dotlist([item])
        except (OmegaConfBaseException, yaml.YAMLError, ValueError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            example = f" (e.g. {key}='{value}')" if len(value) <= 40 else ""
            raise RewriteError(f"{key}={shortened(value, 60)} is not a value YAML can read ({shortened(reason, 80)}); "
                               f"quote it as a string{example}") from None
    conf = OmegaConf.from_dotlist(overrides)
    for item in overrides:  # a path is the text typed: `out=~` is the home directory, not YAML's null
        key, _, value = item.partition("=")
        if key in PATH_KEYS:
            OmegaConf.update(conf, key, value, force_add=True)
    return conf


def load_config(overrides: list[str], require_recipe: bool = True) -> DictConfig:
    """The recipe's YAML over the schema's defaults, then the ``key=value`` overrides."""
    fields = field_defaults()
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+")
        if "=" in item and key not in fields and not key.startswith("needs."):
            raise unknown_key(key, list(fields))
    overrides = [_as_list(item, LIST_KEYS) for item in overrides]
    cli = dotlist(overrides, "recipe=domes_to_trees edit.rank=2")
    schema = OmegaConf.structured(RunConfig)
    name = cli.get("recipe")
    if name is None:
        if require_recipe:
            raise RewriteError(f"this command needs recipe=NAME; recipes: {', '.join(recipe_names())}")
        name = "domes_to_trees"
    name, recipe, recipe_file = _recipe(str(name), fields)
    try:
        cfg = OmegaConf.merge(schema, recipe, cli, {"recipe": name, "recipe_file": recipe_file})
    except (OmegaConfBaseException, ValueError) as e:
        raise RewriteError(f"bad configuration: {_omegaconf_message(e)}") from None
    official_schedule(cfg, {item.split("=", 1)[0].lstrip("+") for item in overrides} | _keys(recipe))
    validate(cfg)
    return cfg


def is_recipe_file(name: str) -> bool:
    """Whether ``recipe=`` names a YAML file (a path) rather than a shipped recipe."""
    return name.endswith((".yaml", ".yml")) or "/" in name


def _recipe(name: str, fields: dict[str, Any]) -> tuple[str, DictConfig, str | None]:
    """The recipe's name, its YAML and, for a file, its path. A file's keys are checked against
    the schema (one line, the nearest key), and the paths it gives are relative to the file."""
    if not is_recipe_file(name):
        if name not in recipe_names():
            near = difflib.get_close_matches(name, recipe_names(), n=2, cutoff=0.6)
            hint = f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""
            raise RewriteError(f"unknown recipe {shortened(name, 60)!r}; {hint}recipes: {', '.join(recipe_names())} "
                               "(or recipe=PATH.yaml, a recipe file of your own)")
        return name, OmegaConf.load(recipes_dir() / f"{name}.yaml"), None
    from ..paths import existing_file

    path = existing_file(name, "recipe file", "a YAML file of key: value settings (README: Your own recipes)")
    try:
        recipe = OmegaConf.load(path)
    except (OmegaConfBaseException, yaml.YAMLError, ValueError, UnicodeDecodeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RewriteError(f"recipe file {name} is not YAML ({shortened(reason, 100)})") from None
    if not OmegaConf.is_dict(recipe):
        raise RewriteError(f"recipe file {name} must hold key: value settings (a mapping), not a list or a value")
    for key in sorted(_keys(recipe)):
        if key and key not in fields and not key.startswith("needs.") and key not in ("description", "needs"):
            raise unknown_key(key, list(fields), f" in recipe file {name}")
    for key in ("edit.request", "model.checkpoint"):
        given = OmegaConf.select(recipe, key)
        if isinstance(given, str) and given and not Path(given).expanduser().is_absolute():
            OmegaConf.update(recipe, key, str(path.parent / Path(given)))
    edits = OmegaConf.select(recipe, "model.edits")
    if OmegaConf.is_list(edits):
        OmegaConf.update(recipe, "model.edits", [e if Path(str(e)).expanduser().is_absolute() else str(path.parent / str(e))
                                                 for e in edits])
    return path.stem, recipe, str(path)


def _keys(node: Any, prefix: str = "") -> set[str]:
    """The dotted keys a YAML node sets."""
    if not OmegaConf.is_dict(node):
        return {prefix.rstrip(".")}
    return set().union(*(_keys(v, f"{prefix}{k}.") for k, v in node.items())) if len(node) else set()


@dataclass
class PretrainConfig:
    """``pretrain``: train a world's generator (the defaults are :func:`worlds.pretrain.pretrain`'s)."""

    world: str = setting("churches", "the world whose generator to train: churches, faces, kitchens")
    out: Optional[str] = setting(None, "training directory (default runs/pretrain/<world>); resumes one pretrain wrote")
    iterations: int = setting(10_000, "G/D iterations to reach (a resumed run continues to this count)")
    batch_size: int = setting(16, "renders per batch")
    seed: int = setting(0, "seed of the weights and the render stream")
    sample_every: int = setting(250, "iterations between sample grids (samples/iter_N.png)")
    checkpoint_every: int = setting(100, "iterations between resumable checkpoints")
    progress: bool = setting(True, "show a progress bar")
    export: Optional[str] = setting(None, "where the EMA generator goes (default out/generator.safetensors)")
    oversample: Optional[str] = setting(None, "FLAG:SHARE[,FLAG:SHARE…]: real batches drawn so a rare rule shows "
                                              "at that share")
    lr: float = setting(2e-3, "Adam's rate (applies to a resumed run too)")
    blur: float = setting(0.0, "σ in pixels of the blur D judges through (a stage that teaches a fine rule)")


@dataclass
class SegmenterConfig:
    """``segmenter``: train a world's segmenter (the defaults are :func:`worlds.segmenter.train_segmenter`'s)."""

    world: str = setting("churches", "the world whose segmenter to train")
    steps: int = setting(1500, "optimiser steps")
    batch_size: int = setting(32, "renders per step")
    seed: int = setting(0, "seed of the weights and the render stream")
    export: Optional[str] = setting(None, "where the weights go (default runs/segmenter/<world>_segmenter.safetensors; "
                                          "the shipped file only when named)")
    progress: bool = setting(True, "show a progress bar")
    init: Optional[str] = setting(None, "weights to fine-tune from: a path, or 'shipped'")
    lr: float = setting(3e-3, "the one-cycle schedule's peak rate")


#: Each world command's schema.
WORLD_SCHEMAS: dict[str, type] = {"pretrain": PretrainConfig, "segmenter": SegmenterConfig}


def load_world_config(command: str, overrides: list[str]) -> dict[str, Any]:
    """A world command's settings: its schema's defaults, then the ``key=value`` overrides."""
    schema = WORLD_SCHEMAS[command]
    names = [f.name for f in fields(schema)]
    for item in overrides:
        key = item.split("=", 1)[0]
        if "=" in item and key not in names:
            raise unknown_key(key, names, f" for {command}")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), dotlist(overrides, WORLD_EXAMPLES[command]))
    except (OmegaConfBaseException, ValueError) as e:
        raise RewriteError(f"bad {command} setting: {_omegaconf_message(e)}") from None
    settings = OmegaConf.to_container(cfg)
    for ok, message in WORLD_CHECKS[command](settings):
        if not ok:
            raise RewriteError(message)
    for key in PATH_KEYS:
        if settings.get(key) is not None:
            check_path_text(settings[key], key)
    return settings


def _world_checks_pretrain(c: dict[str, Any]) -> list[tuple[bool, str]]:
    return [(c["iterations"] >= 1, f"iterations must be ≥ 1, got {c['iterations']}"),
            (c["batch_size"] >= 1, f"batch_size must be ≥ 1, got {c['batch_size']}"),
            (c["sample_every"] >= 1 and c["checkpoint_every"] >= 1,
             f"sample_every and checkpoint_every must be ≥ 1, got {c['sample_every']} and {c['checkpoint_every']}"),
            (c["lr"] > 0, f"lr must be > 0, got {c['lr']}"),
            (c["blur"] >= 0, f"blur must be ≥ 0, got {c['blur']}")]


def _world_checks_segmenter(c: dict[str, Any]) -> list[tuple[bool, str]]:
    return [(c["steps"] >= 1, f"steps must be ≥ 1, got {c['steps']}"),
            (c["batch_size"] >= 1, f"batch_size must be ≥ 1, got {c['batch_size']}"),
            (c["lr"] > 0, f"lr must be > 0, got {c['lr']}")]


#: A command line of each world command, for messages.
WORLD_EXAMPLES = {"pretrain": "world=churches iterations=2000", "segmenter": "world=churches steps=500"}
#: Each world command's value checks (the schema checks types).
WORLD_CHECKS = {"pretrain": _world_checks_pretrain, "segmenter": _world_checks_segmenter}


def check_path_text(text: str, key: str) -> None:
    """A path given as a value: not empty, no component longer than a file name may be."""
    if not str(text).strip():
        raise RewriteError(f"{key}= is empty; give a path (or leave {key} out for its default)")
    longest = max((len(part.encode()) for part in Path(str(text)).parts), default=0)
    if longest > 255 or len(str(text).encode()) > 4096:
        raise RewriteError(f"{key}= is too long ({len(str(text)):,} characters; a file name holds at most 255 bytes "
                           "and a path 4,096); give a shorter path")


def validate(cfg: DictConfig) -> None:
    """Values the schema's types cannot check: one error line naming what would be right."""
    for key, what in cfg.needs.items():
        if OmegaConf.select(cfg, key) is None:
            raise RewriteError(f"recipe {cfg.recipe} needs {key}=PATH: {what}")
    checks = [
        (cfg.edit.rank >= 1, f"edit.rank must be ≥ 1, got {cfg.edit.rank}"),
        (cfg.edit.kind in KINDS, f"edit.kind must be one of {', '.join(KINDS)}, got {cfg.edit.kind!r}"),
        (cfg.edit.method in METHODS, f"edit.method must be one of {', '.join(METHODS)}, got {cfg.edit.method!r}"),
        (cfg.edit.method != "dissect" or cfg.edit.kind == "erase",
         f"edit.method=dissect zeroes units for an erase recipe (watermark); recipe {cfg.recipe} is a {cfg.edit.kind} edit"),
        (cfg.edit.lr is None or cfg.edit.lr > 0, f"edit.lr must be > 0, got {cfg.edit.lr}"),
        *((getattr(cfg.edit, key) in names, f"edit.{key} must be one of {', '.join(names)}, got {getattr(cfg.edit, key)!r}")
          for key, names in (("loss", LOSSES), ("parametrization", PARAMETRIZATIONS), ("lr_schedule", SCHEDULES),
                             ("solver", SOLVERS))),
        (cfg.stats.products in PRODUCTS, f"stats.products must be one of {', '.join(PRODUCTS)}, got {cfg.stats.products!r}"),
        (cfg.edit.perceptual in PERCEPTUAL,
         f"edit.perceptual must be one of {', '.join(PERCEPTUAL)}, got {cfg.edit.perceptual!r}"),
        (cfg.edit.smooth_weight >= 0 and cfg.edit.perceptual_weight >= 0,
         "edit.smooth_weight and edit.perceptual_weight must be ≥ 0"),
        (cfg.logger in LOGGERS, f"logger must be one of {', '.join(LOGGERS)}, got {cfg.logger!r}"),
        (cfg.trainer.max_steps >= 1, f"trainer.max_steps must be ≥ 1, got {cfg.trainer.max_steps}"),
        (cfg.stats.samples >= 1, f"stats.samples must be ≥ 1, got {cfg.stats.samples}"),
        (cfg.sample.n >= 1, f"sample.n must be ≥ 1, got {cfg.sample.n}"),
        (cfg.sample.start >= 0, f"sample.start must be ≥ 0, got {cfg.sample.start}"),
        (cfg.sample.start + cfg.sample.n <= MAX_SAMPLES,
         f"sample.start + sample.n must be ≤ {MAX_SAMPLES:,} (the latent set's size), got {cfg.sample.start + cfg.sample.n:,}"),
        (cfg.test.start >= 0 and cfg.test.start + cfg.test.n <= MAX_SAMPLES,
         f"test.start must be ≥ 0 and test.start + test.n ≤ {MAX_SAMPLES:,}, got {cfg.test.start:,} + {cfg.test.n:,}"),
        (cfg.stats.batch_size >= 1, f"stats.batch_size must be ≥ 1, got {cfg.stats.batch_size}"),
        (cfg.test.batch_size >= 1, f"test.batch_size must be ≥ 1, got {cfg.test.batch_size}"),
        (cfg.trainer.devices >= 1 and cfg.trainer.num_nodes >= 1,
         f"trainer.devices and trainer.num_nodes must be ≥ 1, got {cfg.trainer.devices} and {cfg.trainer.num_nodes}"),
        (cfg.trainer.accelerator in ACCELERATORS,
         f"trainer.accelerator must be one of {', '.join(ACCELERATORS)}, got {cfg.trainer.accelerator!r}"),
        (cfg.edit.project_every >= 1, f"edit.project_every must be ≥ 1, got {cfg.edit.project_every}"),
        (cfg.select.context >= 0 and cfg.select.min_pixels >= 1 and cfg.select.pairs >= 1,
         "select.context must be ≥ 0, select.min_pixels and select.pairs ≥ 1"),
        (cfg.test.n >= 1, f"test.n must be ≥ 1, got {cfg.test.n}"),
        (cfg.select.pool >= 1, f"select.pool must be ≥ 1, got {cfg.select.pool}"),
        (_units_ok(cfg.edit.units), f"edit.units must be a count ≥ 1 or a list of channel indices ≥ 0, got {cfg.edit.units}"),
        (0 <= cfg.ui.port <= 65535, f"ui.port must be 0 … 65535 (0: a free port), got {cfg.ui.port}"),
        (1 <= cfg.ui.page <= 100 and 1 <= cfg.ui.search <= 100_000,
         f"ui.page must be 1 … 100 and ui.search 1 … 100,000, got {cfg.ui.page} and {cfg.ui.search}"),
        (cfg.advise.n >= 1 and all(r >= 1 for r in cfg.advise.ranks) and len(cfg.advise.ranks) >= 1,
         f"advise.n and every rank of advise.ranks must be ≥ 1, got {cfg.advise.n} and {list(cfg.advise.ranks)}"),
        (cfg.ui.max_upload_mb >= 1, f"ui.max_upload_mb must be ≥ 1, got {cfg.ui.max_upload_mb}"),
        (cfg.model.world is not None or cfg.model.checkpoint is not None,
         "give model.checkpoint=PATH or model.world=NAME (churches, faces, kitchens)"),
        (str(cfg.trainer.precision) in PRECISIONS,
         f"trainer.precision must be one of {', '.join(PRECISIONS)}, got {shortened(cfg.trainer.precision, 40)!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise RewriteError(message)
    if cfg.trainer.strategy not in COMMON_STRATEGIES and cfg.trainer.strategy not in strategies():
        raise RewriteError(f"trainer.strategy must be one of {', '.join(COMMON_STRATEGIES)} or another of Lightning's "
                           f"registered strategies, got {shortened(cfg.trainer.strategy, 40)!r}")
    for key in ("out", "model.checkpoint", "edit.request"):
        value = OmegaConf.select(cfg, key)
        if value is not None:
            check_path_text(value, key)


#: Lightning's precision names (``trainer.precision``).
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true",
              "transformer-engine", "transformer-engine-float16")


#: The strategies a user of these commands names most (checked without importing Lightning).
COMMON_STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "fsdp", "deepspeed", "single_device")


def strategies() -> list[str]:
    """Lightning's strategy names (``trainer.strategy``)."""
    from pytorch_lightning.strategies import StrategyRegistry

    return ["auto", *StrategyRegistry.available_strategies()]


def _units_ok(units: Any) -> bool:
    if units is None:
        return True
    if isinstance(units, int) and not isinstance(units, bool):
        return units >= 1
    items = list(units) if OmegaConf.is_list(units) or isinstance(units, (list, tuple)) else None
    return bool(items) and all(isinstance(u, int) and not isinstance(u, bool) and u >= 0 for u in items)


def out_dir(cfg: DictConfig) -> Path:
    return Path(cfg.out or f"runs/{cfg.recipe}").expanduser()


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)
