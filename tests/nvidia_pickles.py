"""Write snapshots the way NVIDIA's stylegan2-ada-pytorch does: every network pickled through
``torch_utils.persistence._reconstruct_persistent_obj`` with its source and state, tensors as
torch pickles them, the training kwargs as a ``dnnlib.util.EasyDict``. The NVIDIA modules are
stand-ins registered only while writing, so pickle records their real class paths."""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn


@contextlib.contextmanager
def nvidia_class_paths() -> Iterator[types.SimpleNamespace]:
    """Register ``torch_utils.persistence`` and ``dnnlib.util`` stand-ins while writing a pickle."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta: dict) -> None:
        raise AssertionError("only NVIDIA's own code would run this")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    easydict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    util.EasyDict = easydict
    modules = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
               "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    saved = {k: sys.modules.get(k) for k in modules}
    sys.modules.update(modules)
    try:
        yield types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=easydict)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class Persisted:
    """One network as NVIDIA's ``persistent_class`` pickles it: (reconstruct, (meta,))."""

    def __init__(self, ns: types.SimpleNamespace, class_name: str, params: dict[str, Tensor] | None = None,
                 buffers: dict[str, Tensor] | None = None, modules: dict[str, "Persisted"] | None = None,
                 source: str = "", **init_kwargs: object) -> None:
        self.ns, self.class_name, self.source = ns, class_name, source
        self.state = {
            "training": False,
            "_parameters": OrderedDict((k, nn.Parameter(v.clone(), requires_grad=False)) for k, v in (params or {}).items()),
            "_buffers": OrderedDict((k, v.clone()) for k, v in (buffers or {}).items()),
            "_non_persistent_buffers_set": set(),
            "_modules": OrderedDict(modules or {}),
            "_init_args": (),
            "_init_kwargs": ns.EasyDict(init_kwargs),
            "_orig_module_src": source,
            "_orig_class_name": class_name,
        }

    def __reduce__(self) -> tuple:
        meta = {"type": "class", "version": 4, "module_src": self.source, "class_name": self.class_name,
                "state": self.state}
        return (self.ns.reconstruct, (meta,))


def _fc(ns: types.SimpleNamespace, weight: Tensor, bias: Tensor) -> Persisted:
    return Persisted(ns, "FullyConnectedLayer", {"weight": weight, "bias": bias})


def _layer(ns: types.SimpleNamespace, sd: dict[str, Tensor], prefix: str, noise: Tensor, source: str) -> Persisted:
    """A SynthesisLayer from a rosinality StyledConv's tensors."""
    return Persisted(
        ns, "SynthesisLayer",
        {"weight": sd[f"{prefix}.conv.weight"][0], "bias": sd[f"{prefix}.activate.bias"],
         "noise_strength": sd[f"{prefix}.noise.weight"][0]},
        {"resample_filter": torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1])) / 64,
         "noise_const": noise[0, 0]},
        {"affine": _fc(ns, sd[f"{prefix}.conv.modulation.weight"], sd[f"{prefix}.conv.modulation.bias"])},
        source=source)


def _torgb(ns: types.SimpleNamespace, sd: dict[str, Tensor], prefix: str, source: str) -> Persisted:
    return Persisted(
        ns, "ToRGBLayer", {"weight": sd[f"{prefix}.conv.weight"][0], "bias": sd[f"{prefix}.bias"].reshape(3)},
        modules={"affine": _fc(ns, sd[f"{prefix}.conv.modulation.weight"], sd[f"{prefix}.conv.modulation.bias"])},
        source=source)


def write_nvidia_snapshot(model: nn.Module, path: Path, source: str = "") -> None:
    """Pickle a rosinality-layout StyleGAN2Generator as an NVIDIA snapshot dict (G, D, G_ema, ...),
    naming and shaping its tensors as stylegan2-ada-pytorch's networks do."""
    sd = model.state_dict()
    noise = lambda i: sd[f"noises.noise_{i}"]  # noqa: E731
    with nvidia_class_paths() as ns:
        fcs = {f"fc{i}": _fc(ns, sd[f"style.{i + 1}.weight"], sd[f"style.{i + 1}.bias"]) for i in range(model.n_mlp)}
        mapping = Persisted(ns, "MappingNetwork", buffers={"w_avg": sd["latent_avg"]}, modules=fcs, source=source,
                            z_dim=model.style_dim, c_dim=0, w_dim=model.style_dim, num_ws=model.n_latent)
        blocks = {"b4": Persisted(ns, "SynthesisBlock", {"const": sd["input.input"][0]},
                                  modules={"conv1": _layer(ns, sd, "conv1", noise(0), source),
                                           "torgb": _torgb(ns, sd, "to_rgb1", source)}, source=source)}
        for j in range(len(model.convs) // 2):
            res = 2 ** (j + 3)
            blocks[f"b{res}"] = Persisted(
                ns, "SynthesisBlock",
                buffers={"resample_filter": torch.ones(4, 4) / 16},
                modules={"conv0": _layer(ns, sd, f"convs.{2 * j}", noise(1 + 2 * j), source),
                         "conv1": _layer(ns, sd, f"convs.{2 * j + 1}", noise(2 + 2 * j), source),
                         "torgb": _torgb(ns, sd, f"to_rgbs.{j}", source)}, source=source)
        synthesis = Persisted(ns, "SynthesisNetwork", modules=blocks, source=source, img_resolution=model.size)
        generator = Persisted(ns, "Generator", modules={"mapping": mapping, "synthesis": synthesis}, source=source,
                              z_dim=model.style_dim, c_dim=0, w_dim=model.style_dim, img_resolution=model.size,
                              img_channels=3)
        disc = Persisted(ns, "Discriminator", modules={"b4": Persisted(ns, "DiscriminatorEpilogue", {
            "out.weight": torch.zeros(1, 4)})}, source=source)
        snapshot = {"G": generator, "D": disc, "G_ema": generator, "augment_pipe": None,
                    "training_set_kwargs": ns.EasyDict(path="church.zip", resolution=model.size)}
        with open(path, "wb") as f:
            pickle.dump(snapshot, f)
