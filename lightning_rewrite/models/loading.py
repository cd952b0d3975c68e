"""``load_generator``: a checkpoint file → a generator module, with no network access.

Recognised so far: rosinality stylegan2-pytorch checkpoints (``{"g_ema": ..., "latent_avg":
...}``), and plain StyleGAN2 state dicts in ``.pt``/``.pth`` (read with ``weights_only=True``)
or ``.safetensors``. The architecture is inferred from the tensors.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import RewriteError
from ..layer import HookedLayer, rewritable_layers
from .stylegan2 import StyleGAN2Generator


def read_state(path: str | os.PathLike) -> dict:
    """The tensors of a checkpoint file, without executing pickled code."""
    p = Path(path)
    if not p.is_file():
        raise RewriteError(f"checkpoint {os.fspath(path)!r} does not exist; give the path of a .pt, .pth or .safetensors file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    if p.suffix == ".pkl":
        raise RewriteError(f"{p.name}: NVIDIA .pkl checkpoints are not supported yet; convert to a state dict (.pt)")
    try:
        # rosinality's training script saves its argparse.Namespace beside the weights: inert, allowed
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any unreadable file in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RewriteError(f"{p.name} is not a readable PyTorch checkpoint ({first[:200]})") from None


def stylegan2_from_state(state: dict[str, Tensor], latent_avg: Tensor | None = None) -> StyleGAN2Generator:
    """A StyleGAN2Generator whose size, style dim, mapping depth and widths fit ``state``."""
    try:
        style_dim = state["style.1.weight"].shape[1]
        n_mlp = len([k for k in state if re.fullmatch(r"style\.\d+\.weight", k)])
        n_rgb = len([k for k in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
        widths = {4: state["input.input"].shape[1]}
        for j in range(n_rgb):
            widths[2 ** (j + 3)] = state[f"convs.{2 * j}.conv.weight"].shape[1]
    except KeyError as e:
        raise RewriteError(f"not a StyleGAN2 (rosinality) state dict: it lacks {e.args[0]!r}") from None
    model = StyleGAN2Generator(2 ** (n_rgb + 2), style_dim, n_mlp, widths=widths)
    if latent_avg is not None:
        state = {**state, "latent_avg": latent_avg}
    load_checked(model, state)
    return model


def load_checked(model: nn.Module, state: dict[str, Tensor]) -> None:
    """``load_state_dict`` that fails with one line naming missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    optional = {"latent_avg"}
    missing = sorted(k for k in own if k not in state and k not in optional)
    unexpected = sorted(k for k in state if k not in own)
    misshaped = sorted(f"{k} {tuple(state[k].shape)}≠{tuple(own[k].shape)}" for k in state
                       if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or misshaped:
        parts = [f"{label}: {', '.join(keys[:6])}{' …' if len(keys) > 6 else ''} ({len(keys)})"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)) if keys]
        raise RewriteError(f"checkpoint does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)


def load_generator(path: str | os.PathLike) -> nn.Module:
    """Load a generator from a checkpoint file (see the module docstring for the formats)."""
    state = read_state(path)
    if not isinstance(state, dict):
        raise RewriteError(f"{Path(path).name} holds a {type(state).__name__}, not a state dict")
    if "g_ema" in state:
        model = stylegan2_from_state(state["g_ema"], state.get("latent_avg"))
    elif "style.1.weight" in state:
        model = stylegan2_from_state({k: v for k, v in state.items() if k != "latent_avg"}, state.get("latent_avg"))
    else:
        sample = ", ".join(list(state)[:4])
        raise RewriteError(f"{Path(path).name}: unrecognised checkpoint layout (first keys: {sample}); "
                           "expected a rosinality StyleGAN2 checkpoint ('g_ema') or its state dict")
    return model.eval()


def describe_layers(model: nn.Module, z: Tensor) -> list[dict]:
    """For each rewritable layer: name, official alias, key dimension N, value shape and
    resolution — what a user needs to pick a layer. ``z`` is one latent batch to run."""
    aliases = {v: k for k, v in (getattr(model, "layer_aliases", None) or {}).items()}
    rows = []
    for name in rewritable_layers(model):
        hooked = HookedLayer(model, name)
        with torch.no_grad():
            value = hooked.values(z[:1])
        rows.append({"name": name, "alias": aliases.get(name), "key_dim": hooked.key_dim,
                     "memory": list(hooked.memory_shape), "value_shape": list(value.shape[1:]),
                     "resolution": "×".join(str(s) for s in value.shape[2:]) or "-"})
    return rows
