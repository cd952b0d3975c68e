"""``load_generator``: a checkpoint file → a generator module, with no network access and
without executing pickled code.

Recognised: rosinality stylegan2-pytorch checkpoints (``{"g_ema": ..., "latent_avg": ...}``) and
their bare state dicts; NVIDIA stylegan2-ada / stylegan3 ``.pkl`` snapshots (StyleGAN2 ``G_ema``,
read by a restricted unpickler); GAN Dissection Progressive GAN state dicts (``layerN.conv.weight``,
also wrapped in ``{"state_dict": ...}`` or in the older ``features.N`` names). ``.pt``/``.pth`` are
read with ``weights_only=True``; ``.safetensors`` too. The architecture is inferred from the tensors.
"""

from __future__ import annotations

import argparse
import os
import pickletools
import re
import warnings
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import RewriteError
from .nvidia import generator_holder, read_nvidia_pickle, stylegan2_from_nvidia
from .proggan import ProgressiveGenerator, from_old_layout, output_name_of, proggan_sizes
from .stylegan2 import StyleGAN2Generator
from ..paths import existing_file


def read_state(path: str | os.PathLike) -> dict:
    """The contents of a checkpoint file, without executing pickled code (an NVIDIA pickle comes
    back as ``{"nvidia": contents}``)."""
    p = existing_file(path, "checkpoint", "the path of a .pt, .pth, .pkl or .safetensors file")
    if p.stat().st_size == 0:
        raise RewriteError(f"checkpoint {p.name} is empty (0 bytes); give a .pt, .pth, .pkl or .safetensors file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as e:  # noqa: BLE001 - SafetensorError and OSError alike are one line
            raise RewriteError(f"{p.name} is not a readable safetensors file: it is truncated or damaged "
                               f"({str(e).strip().splitlines()[0][:120]})") from None
    if p.suffix == ".pkl":
        return {"nvidia": read_nvidia_pickle(p)}
    try:
        # rosinality's training script saves its argparse.Namespace beside the weights: inert, allowed
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the pickle-protocol notice: we explain refusals below
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - report any unreadable file in one line
        raise RewriteError(f"{p.name} {why_unreadable(p)}") from None


#: Globals a PyTorch checkpoint may name: torch's own rebuilders and types, and inert containers.
SAFE_GLOBAL = re.compile(r"^(torch(\.[\w.]+)?|collections\.OrderedDict|argparse\.Namespace|builtins\.(set|frozenset|slice))$")


def pickle_globals(data: bytes) -> list[str]:
    """The callables a pickle would look up, read from its opcodes without running any of them."""
    found, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - a truncated stream: report what was read before it ended
        pass
    return found


def why_unreadable(path: Path) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``, in the words a user can act on."""
    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(name) if name else b""
        except (zipfile.BadZipFile, OSError, KeyError):
            return "is a damaged or truncated zip archive, not a readable PyTorch checkpoint"
    elif not data.startswith(b"\x80"):
        text = all(32 <= b < 127 or b in (9, 10, 13) for b in data[:512])
        return ("is a text file, not a PyTorch checkpoint" if text else
                "is not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    unsafe = [g for g in pickle_globals(data) if not SAFE_GLOBAL.match(g)]
    if unsafe:
        return (f"would call {unsafe[0]} when unpickled: refused, and nothing in it was run "
                "(a checkpoint holds tensors; load only files that hold weights)")
    return "is not a readable PyTorch checkpoint (a truncated or unsupported pickle)"


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
    if latent_avg is not None:  # saved as (D,) by the converter, as (1, D) by scripts storing mean_latent()
        if latent_avg.numel() != style_dim:
            raise RewriteError(f"latent_avg has shape {tuple(latent_avg.shape)}; it must hold the {style_dim} "
                               "values of one style vector, (D,) or (1, D)")
        state = {**state, "latent_avg": latent_avg.reshape(style_dim)}
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


def proggan_from_state(state: dict[str, Tensor]) -> ProgressiveGenerator:
    """A ProgressiveGenerator whose depths fit a GAN Dissection state dict."""
    if "features.0.conv.weight" in state:
        state = from_old_layout(state)
    sizes = proggan_sizes(state)
    output = output_name_of(state)
    if len(sizes) < 2 or output is None:
        raise RewriteError("not a GAN Dissection Progressive GAN state dict: it needs layer1.conv.weight, "
                           "layer2.conv.weight and one output block (output_RxR.* or output.*)")
    model = ProgressiveGenerator(sizes, output_name=output)
    load_checked(model, state)
    return model


def load_generator(path: str | os.PathLike) -> nn.Module:
    """Load a generator from a checkpoint file (see the module docstring for the formats)."""
    state = read_state(path)
    name = Path(path).name
    if not isinstance(state, dict):
        raise RewriteError(f"{name} holds a {type(state).__name__}, not a state dict")
    if "nvidia" in state:
        model = stylegan2_from_nvidia(generator_holder(state["nvidia"], name))
    elif "g_ema" in state:
        model = stylegan2_from_state(state["g_ema"], state.get("latent_avg"))
    elif "style.1.weight" in state:
        model = stylegan2_from_state({k: v for k, v in state.items() if k != "latent_avg"}, state.get("latent_avg"))
    elif isinstance(state.get("state_dict"), dict):
        model = proggan_from_state(state["state_dict"])
    elif "layer1.conv.weight" in state or "features.0.conv.weight" in state:
        model = proggan_from_state(state)
    else:
        sample = ", ".join(list(state)[:4])
        raise RewriteError(f"{name}: unrecognised checkpoint layout (first keys: {sample}); expected a rosinality "
                           "StyleGAN2 checkpoint ('g_ema') or state dict, an NVIDIA .pkl, or a GAN Dissection "
                           "ProGAN state dict ('layer1.conv.weight')")
    return model.eval()
