"""NVIDIA stylegan2-ada-pytorch / stylegan3 ``.pkl`` files, read without executing pickled code.

Those pickles rebuild each network by calling ``torch_utils.persistence._reconstruct_persistent_obj``
on a record holding the module's *source code* and its state; ordinary unpickling runs that
source. :class:`SafeUnpickler` resolves only the globals it knows (that function, torch's tensor
rebuilders, a few inert containers) and turns every network into a :class:`Persistent`, an inert
holder of its class name and state; the source is never looked at. Any other global is refused
with an error naming it. :func:`stylegan2_from_nvidia` converts a StyleGAN2 ``G_ema`` holder into
our rosinality-layout :class:`StyleGAN2Generator`.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import RewriteError
from .stylegan2 import StyleGAN2Generator

log = logging.getLogger(__name__)

#: Classes of NVIDIA's networks (G, D, augmentation pipe) that may appear in a snapshot.
KNOWN_CLASSES = frozenset({
    "Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer", "ToRGBLayer",
    "FullyConnectedLayer", "Conv2dLayer", "SynthesisInput",
    "Discriminator", "DiscriminatorBlock", "DiscriminatorEpilogue", "MinibatchStdLayer", "AugmentPipe",
})
_NETWORK_MODULES = ("training.networks", "training.networks_stylegan2", "training.networks_stylegan3",
                    "training.augment")


class Persistent:
    """Inert stand-in for one pickled NVIDIA module: its class name and its ``__dict__``."""

    def __init__(self, class_name: str, state: dict | None = None) -> None:
        self.class_name = class_name
        self.state: dict = dict(state or {})

    def __setstate__(self, state: dict) -> None:
        self.__dict__.setdefault("state", {})
        self.__dict__.setdefault("class_name", type(self).__name__)
        self.state.update(state or {})

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})

    def tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """Parameters and buffers of this module and its children, by dotted name."""
        out: dict[str, Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, t in (self.state.get(group) or {}).items():
                if isinstance(t, Tensor):
                    out[prefix + name] = t.detach()
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, Persistent):
                out.update(child.tensors(f"{prefix}{name}."))
        return out

    def __repr__(self) -> str:
        return f"Persistent({self.class_name})"


class EasyDict(dict):
    """Inert stand-in for ``dnnlib.util.EasyDict``."""


def _reconstruct_persistent_obj(meta: dict) -> Persistent:
    """What the pickle calls instead of NVIDIA's: keep the class name and state, ignore the source."""
    kind = meta.get("type") if isinstance(meta, dict) else type(meta).__name__
    if kind != "class":
        raise RewriteError(f"unsupported persistent record {kind!r}; expected a class record of torch_utils.persistence")
    name = meta.get("class_name")
    if name not in KNOWN_CLASSES:
        raise RewriteError(f"refusing persistent class {name!r}: not one of NVIDIA's StyleGAN networks "
                           f"({', '.join(sorted(KNOWN_CLASSES))})")
    return Persistent(name, meta.get("state"))


def _storage_from_bytes(data: bytes) -> Any:
    """torch's ``_load_from_bytes``, restricted to tensors (weights_only) and the CPU."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_parameter(data: Tensor, requires_grad: bool, backward_hooks: Any, *state: Any) -> Tensor:
    return data


@functools.lru_cache(maxsize=None)
def _holder_class(name: str) -> type:
    return type(name, (Persistent,), {"__module__": __name__})


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "device"): torch.device,
}


_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NAMES = ("_reconstruct", "ndarray", "dtype", "scalar")


def _numpy_global(name: str) -> Any:
    """numpy's own array and scalar rebuilders (inert: their contents pass through find_class)."""
    import numpy as np

    if name in ("ndarray", "dtype"):
        return getattr(np, name)
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    return getattr(multiarray, name)


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only known, inert globals (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module in _NETWORK_MODULES and name in KNOWN_CLASSES:
            return _holder_class(name)
        if module in _NUMPY_MODULES and name in _NUMPY_NAMES:
            return _numpy_global(name)
        raise RewriteError(f"refusing to unpickle {module}.{name}: an NVIDIA checkpoint holds only network "
                           "state, so this loader resolves no other code")


def read_nvidia_pickle(path: str | os.PathLike) -> Any:
    """The unpickled contents of an NVIDIA snapshot, networks as :class:`Persistent` holders."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(512)
    if not head.startswith(b"\x80"):  # protocol ≥ 2 pickles open with PROTO; NVIDIA's use 3 or 4
        text = all(32 <= b < 127 or b in (9, 10, 13) for b in head)
        raise RewriteError(f"{p.name} is {'a text file' if text else 'not a pickle'}, not an NVIDIA snapshot (.pkl)")
    try:
        with open(p, "rb") as f:
            return SafeUnpickler(f).load()
    except RewriteError as e:
        raise RewriteError(f"{p.name}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any malformed pickle is one line
        raise RewriteError(f"{p.name} is not a readable NVIDIA pickle ({type(e).__name__}: {str(e)[:160]})") from None


def generator_holder(obj: Any, name: str = "checkpoint") -> Persistent:
    """``G_ema`` of a snapshot dict (else ``G``), or the object itself when it is a Generator."""
    if isinstance(obj, dict):
        for key in ("G_ema", "G"):
            if isinstance(obj.get(key), Persistent):
                return obj[key]
        raise RewriteError(f"{name}: an NVIDIA snapshot must hold 'G_ema' (or 'G'); it has {sorted(map(str, obj))}")
    if isinstance(obj, Persistent) and obj.class_name == "Generator":
        return obj
    raise RewriteError(f"{name}: holds a {type(obj).__name__}, not an NVIDIA snapshot or Generator")


def _convert_layer(t: dict[str, Tensor], src: str, dst: str, to_rgb: bool = False) -> dict[str, Tensor]:
    out = {f"{dst}.conv.weight": t[f"{src}.weight"][None],
           f"{dst}.conv.modulation.weight": t[f"{src}.affine.weight"],
           f"{dst}.conv.modulation.bias": t[f"{src}.affine.bias"]}
    if to_rgb:
        out[f"{dst}.bias"] = t[f"{src}.bias"].reshape(1, -1, 1, 1)
    else:
        out[f"{dst}.noise.weight"] = t[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = t[f"{src}.bias"]
    return out


def stylegan2_from_nvidia(g: Persistent) -> StyleGAN2Generator:
    """Our StyleGAN2Generator holding the weights of an NVIDIA StyleGAN2 Generator.

    Names map as NVIDIA's and rosinality's converters both define them (``mapping.fcI`` →
    ``style.I+1``, ``synthesis.b4.conv1`` → ``conv1``, ``bR.conv0/conv1`` → ``convs.2j/2j+1``,
    ``bR.torgb`` → ``to_rgbs.j``, ``noise_const`` → ``noises.noise_*``, ``mapping.w_avg`` →
    ``latent_avg``). NVIDIA's activation clamp (``conv_clamp``) is not applied.
    """
    t = g.tensors()
    if any(k.startswith("synthesis.input.") for k in t):
        raise RewriteError("StyleGAN3 (alias-free) generators are not supported; a StyleGAN2 G_ema from "
                           "stylegan2-ada-pytorch or stylegan3 (--cfg=stylegan2) loads")
    if "mapping.embed.weight" in t:
        raise RewriteError("conditional generators (mapping.embed, c_dim > 0) are not supported")
    n_mlp = len([k for k in t if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    res = sorted(int(m.group(1)) for k in t if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k)))
    if not n_mlp or not res or res[0] != 4:
        raise RewriteError("not an NVIDIA StyleGAN2 Generator: it lacks mapping.fc0 or synthesis.b4")
    z_dim = t["mapping.fc0.weight"].shape[1]
    style_dim = t[f"mapping.fc{n_mlp - 1}.weight"].shape[0]
    if z_dim != style_dim:
        raise RewriteError(f"z_dim {z_dim} differs from w_dim {style_dim}; only z_dim = w_dim StyleGAN2 models load")
    widths = {r: t[f"synthesis.b{r}.conv1.weight"].shape[0] for r in res}
    model = StyleGAN2Generator(res[-1], style_dim, n_mlp, widths=widths)
    state = dict(model.state_dict())
    used = {"mapping.w_avg"}
    new: dict[str, Tensor] = {}
    for i in range(n_mlp):
        new[f"style.{i + 1}.weight"] = t[f"mapping.fc{i}.weight"]
        new[f"style.{i + 1}.bias"] = t[f"mapping.fc{i}.bias"]
    new["input.input"] = t["synthesis.b4.const"][None]
    new.update(_convert_layer(t, "synthesis.b4.conv1", "conv1"))
    new.update(_convert_layer(t, "synthesis.b4.torgb", "to_rgb1", to_rgb=True))
    new["noises.noise_0"] = t["synthesis.b4.conv1.noise_const"][None, None]
    for j, r in enumerate(res[1:]):
        for k, part in enumerate(("conv0", "conv1")):
            new.update(_convert_layer(t, f"synthesis.b{r}.{part}", f"convs.{2 * j + k}"))
            new[f"noises.noise_{1 + 2 * j + k}"] = t[f"synthesis.b{r}.{part}.noise_const"][None, None]
        new.update(_convert_layer(t, f"synthesis.b{r}.torgb", f"to_rgbs.{j}", to_rgb=True))
    if "mapping.w_avg" in t:
        new["latent_avg"] = t["mapping.w_avg"]
    mapped = _source_names(n_mlp, res)
    used |= mapped
    unused = sorted(k for k in t if k not in used and not k.endswith("resample_filter"))
    if unused:
        raise RewriteError(f"NVIDIA Generator has tensors this converter does not place: {', '.join(unused[:6])}"
                           f"{' …' if len(unused) > 6 else ''} ({len(unused)}); only the 'skip' StyleGAN2 "
                           "architecture loads")
    misshaped = [f"{k} {tuple(v.shape)}≠{tuple(state[k].shape)}" for k, v in new.items()
                 if tuple(v.shape) != tuple(state[k].shape)]
    if misshaped:
        raise RewriteError(f"NVIDIA Generator does not convert: mis-shaped {', '.join(misshaped[:6])}")
    state.update(new)
    model.load_state_dict(state)
    return model


def _source_names(n_mlp: int, res: list[int]) -> set[str]:
    names = {f"mapping.fc{i}.{p}" for i in range(n_mlp) for p in ("weight", "bias")}
    names.add("synthesis.b4.const")
    layer = ("weight", "bias", "affine.weight", "affine.bias")
    for r in res:
        parts = ("conv1",) if r == 4 else ("conv0", "conv1")
        for part in parts:
            names |= {f"synthesis.b{r}.{part}.{p}" for p in (*layer, "noise_strength", "noise_const")}
        names |= {f"synthesis.b{r}.torgb.{p}" for p in layer}
    return names
