"""HookedLayer: one rewritable layer of any ``nn.Module`` generator, seen as a memory.

The layer's weight W is the memory, its keys are the inputs of its linear operation at
every location, and its values are its output after the nonlinearity. Built-in support
covers ``nn.Conv2d``, ``nn.ConvTranspose2d`` and ``nn.Linear``; any other layer opts in by
implementing :class:`RewritableLayer` (StyleGAN2's modulated convolution does).
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from . import lowrank, memory
from ..errors import RewriteError
from .fingerprint import tensor_fingerprint

log = logging.getLogger(__name__)

#: Elementwise modules that, following a layer in a Sequential, belong to its value.
ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh,
)


@runtime_checkable
class RewritableLayer(Protocol):
    """What a layer implements to be rewritten (beyond Conv2d / ConvTranspose2d / Linear).

    - ``rewrite_weight``: dotted name, relative to the layer, of the parameter W;
    - ``rewrite_key_axis``: the axis of W that multiplies key channels;
    - ``rewrite_keys(*args, **kwargs)``: from the layer's forward inputs, the keys its
      linear operation sees, shaped (B, N, *spatial) (for StyleGAN2: ``x * s``).

    Optional: ``rewrite_linear(*args, **kwargs)``, the output of the linear operation alone
    (before bias, noise, activation), used to warm-start an edit in closed form; and
    ``rewrite_input_axis`` (default 1), the axis of the first input holding key channels;
    ``rewrite_low_rank(directions, *args, **kwargs)``, the layer's output at W0 + ΔW as a
    function of ΔW's factor on the key axis (:mod:`~lightning_rewrite.engine.lowrank`).
    The layer's own output is its value.
    """

    rewrite_weight: str
    rewrite_key_axis: int

    def rewrite_keys(self, *args: Any, **kwargs: Any) -> Tensor: ...


@dataclass
class LayerInputs:
    """The positional and keyword inputs of one call of the layer."""

    args: tuple
    kwargs: dict = field(default_factory=dict)

    def detach(self) -> "LayerInputs":
        det = lambda v: v.detach() if isinstance(v, Tensor) else v  # noqa: E731
        return LayerInputs(tuple(det(a) for a in self.args), {k: det(v) for k, v in self.kwargs.items()})

    @staticmethod
    def cat(parts: list["LayerInputs"]) -> "LayerInputs":
        """Several calls' inputs as one batch: per-sample tensors (batch-first, as long as the
        call's first input) joined on the batch axis; shared ones (fixed noise, constants) kept."""
        sizes = [p.args[0].shape[0] for p in parts]

        def join(vs: list) -> Any:
            per_sample = all(isinstance(v, Tensor) and v.ndim and v.shape[0] == n for v, n in zip(vs, sizes))
            return torch.cat(vs) if per_sample else vs[0]
        first = parts[0]
        return LayerInputs(tuple(join([p.args[i] for p in parts]) for i in range(len(first.args))),
                           {k: join([p.kwargs[k] for p in parts]) for k in first.kwargs})


@dataclass
class _Adapter:
    weight: str
    key_axis: int
    input_axis: int
    keys: Callable[[nn.Module, LayerInputs], Tensor]
    linear: Callable[[nn.Module, LayerInputs], Tensor] | None
    low_rank: Callable[[nn.Module, LayerInputs, Tensor], lowrank.LowRank | None]


def _call(module: nn.Module, inputs: LayerInputs) -> Tensor:
    return module(*inputs.args, **inputs.kwargs)


def _builtin_low_rank(module: nn.Module, inputs: LayerInputs, directions: Tensor) -> lowrank.LowRank | None:
    return lowrank.builtin(module, inputs.args, inputs.kwargs, directions)


def _adapter_for(module: nn.Module) -> _Adapter | None:
    """How to read keys and weight from ``module``, or None when it is not rewritable."""
    if isinstance(module, RewritableLayer):
        linear = getattr(module, "rewrite_linear", None)
        low_rank = getattr(module, "rewrite_low_rank", None)
        return _Adapter(
            weight=module.rewrite_weight,
            key_axis=module.rewrite_key_axis,
            input_axis=getattr(module, "rewrite_input_axis", 1),
            keys=lambda m, i: m.rewrite_keys(*i.args, **i.kwargs),
            linear=(lambda m, i: m.rewrite_linear(*i.args, **i.kwargs)) if linear is not None else None,
            low_rank=(lambda m, i, d: m.rewrite_low_rank(d, *i.args, **i.kwargs)) if low_rank is not None
            else lambda m, i, d: None,
        )
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.groups == 1:
        axis = 1 if isinstance(module, nn.Conv2d) else 0
        return _Adapter("weight", axis, 1, lambda m, i: i.args[0], _call, _builtin_low_rank)
    if isinstance(module, nn.Linear):
        def linear_keys(m: nn.Module, i: LayerInputs) -> Tensor:
            x = i.args[0]
            return x if x.ndim <= 2 else x.movedim(-1, 1)
        return _Adapter("weight", 1, -1, linear_keys, _call, _builtin_low_rank)
    return None


def rewritable_layers(model: nn.Module) -> list[str]:
    """Dotted names of every layer of ``model`` that HookedLayer can rewrite (the parts of a
    RewritableLayer, such as its style modulation, are not listed separately)."""
    names: list[str] = []
    inside: list[str] = []
    for name, m in model.named_modules():
        if not name or any(name.startswith(p + ".") for p in inside):
            continue
        if _adapter_for(m) is not None:
            names.append(name)
            if isinstance(m, RewritableLayer):
                inside.append(name)
    return names


def _names_like(typed: str, model: nn.Module, aliases: dict[str, str]) -> list[str]:
    """The rewritable layers, in the naming the user typed: official aliases (``layer8``) when
    the model has them and the name is not a module path, else module paths."""
    paths = rewritable_layers(model)
    if aliases and "." not in typed:
        return [a for a, path in aliases.items() if path in paths] or paths
    return paths


def _nearest(name: str, names: list[str], n: int = 5) -> str:
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.0)
    return ", ".join(close) if close else "(none)"


def flat_keys(keys: Tensor) -> Tensor:
    """(B, N, *spatial) keys as rows (B·∏spatial, N)."""
    return keys.movedim(1, -1).reshape(-1, keys.shape[1])


class _Stop(Exception):
    """Raised inside a hook to end a forward pass early."""


@dataclass
class Captured:
    inputs: LayerInputs | None = None
    value: Tensor | None = None
    output: Any = None


class HookedLayer:
    """A generator plus the dotted name of one layer to rewrite (or a name from the model's
    ``layer_aliases``, such as StyleGAN2's official ``layer8``).

    ``value_layer`` names the module whose output is the value; by default it is the layer
    itself, or the activation that directly follows it in a Sequential.
    """

    def __init__(self, model: nn.Module, layer: str, value_layer: str | None = None) -> None:
        modules = dict(model.named_modules())
        aliases = getattr(model, "layer_aliases", None) or {}
        self.alias = layer if layer in aliases else None
        layer = aliases.get(layer, layer)
        if layer not in modules:
            raise RewriteError(
                f"{type(model).__name__} has no layer {layer!r}; nearest rewritable layers: "
                f"{_nearest(layer, _names_like(layer, model, aliases))}"
            )
        module = modules[layer]
        adapter = _adapter_for(module)
        if adapter is None:
            raise RewriteError(
                f"layer {layer!r} is a {type(module).__name__}, which has no weight to rewrite; "
                f"nearest rewritable layers: {_nearest(layer, rewritable_layers(model))}"
            )
        self.model = model
        self.name = layer
        self.module = module
        self._adapter = adapter
        self.weight_name = f"{layer}.{adapter.weight}"
        self.key_axis = adapter.key_axis
        self.post = self._post_modules(modules, value_layer)
        self.value_name = value_layer or (self._sibling_names[-1] if self.post else layer)
        self.value_module = self.post[-1] if self.post else module

    def _post_modules(self, modules: dict[str, nn.Module], value_layer: str | None) -> list[nn.Module]:
        """The modules between the layer and its value (siblings in a Sequential)."""
        parent_name, _, child = self.name.rpartition(".")
        parent = self.model.get_submodule(parent_name)
        siblings = list(parent.named_children()) if isinstance(parent, nn.Sequential) else []
        names = [n for n, _ in siblings]
        prefix = f"{parent_name}." if parent_name else ""
        self._sibling_names = []
        if value_layer is None or value_layer == self.name:
            if siblings and child in names:
                i = names.index(child)
                if i + 1 < len(siblings) and isinstance(siblings[i + 1][1], ACTIVATIONS):
                    self._sibling_names = [prefix + names[i + 1]]
                    log.info("value of %s read after its activation %s", self.name, self._sibling_names[0])
                    return [siblings[i + 1][1]]
            return []
        later = [prefix + n for n in names[names.index(child) + 1:]] if child in names else []
        if value_layer not in later:
            raise RewriteError(
                f"value_layer {value_layer!r} must follow {self.name!r} in the same Sequential; "
                f"choose one of: {', '.join(later) or '(none: leave value_layer unset)'}"
            )
        self._sibling_names = later[: later.index(value_layer) + 1]
        return [modules[n] for n in self._sibling_names]

    # -- the weight as a memory -------------------------------------------------------------

    @property
    def weight(self) -> nn.Parameter:
        return self.model.get_parameter(self.weight_name)

    @property
    def key_dim(self) -> int:
        """N, the key dimension."""
        return self.weight.shape[self.key_axis]

    @property
    def memory_shape(self) -> tuple[int, int]:
        """(M, N) of the weight seen as a memory."""
        n = self.key_dim
        return self.weight.numel() // n, n

    def memory(self, weight: Tensor | None = None) -> Tensor:
        """The weight (or a substitute of the same shape) as an (M, N) memory."""
        return memory.as_memory(self.weight if weight is None else weight, self.key_axis)

    # -- forward passes ----------------------------------------------------------------------

    def capture(
        self,
        z: Tensor,
        weight: Tensor | None = None,
        stop: str | None = "value",
        override: Callable[[Tensor], Tensor] | None = None,
    ) -> Captured:
        """Run the generator on ``z`` (with W substituted by ``weight`` if given), record the
        layer's inputs and value, and stop after the layer's ``"input"`` or ``"value"``
        (``stop=None`` runs to the end). ``override`` replaces the value downstream."""
        got = Captured()

        def pre_hook(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            got.inputs = LayerInputs(args, kwargs)
            if stop == "input":
                raise _Stop

        def post_hook(_m: nn.Module, _args: tuple, output: Tensor) -> Tensor | None:
            if got.inputs is None or got.value is not None:  # a shared module used elsewhere
                return None
            got.value = output
            if stop == "value":
                raise _Stop
            return override(output) if override is not None else None

        handles = [
            self.module.register_forward_pre_hook(pre_hook, with_kwargs=True),
            self.value_module.register_forward_hook(post_hook),
        ]
        try:
            got.output = self._forward(z, weight)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        if got.inputs is None:
            raise RewriteError(f"layer {self.name!r} was not called when the generator ran; pick a layer on its forward path")
        return got

    def _forward(self, z: Tensor, weight: Tensor | None) -> Any:
        if weight is None:
            return self.model(z)
        return functional_call(self.model, {self.weight_name: weight}, (z,), strict=False)

    def inputs(self, z: Tensor) -> LayerInputs:
        """The layer's inputs for latents ``z`` (the rest of the generator is not run)."""
        return self.capture(z, stop="input").inputs

    def keys(self, z: Tensor) -> Tensor:
        """Keys (B, N, *spatial) at every location, for latents ``z``."""
        return self.keys_from(self.inputs(z))

    def keys_from(self, inputs: LayerInputs) -> Tensor:
        return self._adapter.keys(self.module, inputs)

    def values(self, z: Tensor, weight: Tensor | None = None) -> Tensor:
        """Values (the layer's output after its nonlinearity) for latents ``z``."""
        return self.capture(z, weight, stop="value").value

    def layer_forward(self, inputs: LayerInputs, weight: Tensor | None = None) -> Tensor:
        """The value f(k; W) computed from the layer's inputs alone."""
        if weight is None:
            out = _call(self.module, inputs)
        else:
            out = functional_call(self.module, {self._adapter.weight: weight}, inputs.args, inputs.kwargs, strict=False)
        for m in self.post:
            out = m(out)
        return out

    def low_rank_forward(self, inputs: LayerInputs, directions: Tensor) -> Callable[[Tensor], Tensor] | None:
        """f(Λ) = the value at W0 + Λ Dᵀ (Λ: M × S, W0: the weight now) for these inputs,
        evaluated through the S projected keys (:mod:`~lightning_rewrite.engine.lowrank`);
        None when the layer offers no such evaluation (use :meth:`layer_forward`)."""
        forward = self._adapter.low_rank(self.module, inputs, directions)
        if forward is None:
            return None
        shape = list(self.weight.shape)
        shape[self.key_axis] = directions.shape[1]

        def value(lam: Tensor) -> Tensor:
            out = forward(memory.from_memory(lam, shape, self.key_axis))
            for m in self.post:
                out = m(out)
            return out
        return value

    @property
    def has_linear(self) -> bool:
        return self._adapter.linear is not None

    def linear_forward(self, inputs: LayerInputs, weight: Tensor | None = None) -> Tensor:
        """The output of the layer's linear operation alone (before its nonlinearity)."""
        if self._adapter.linear is None:
            raise RewriteError(f"layer {self.name!r} does not expose its linear operation (rewrite_linear)")
        if weight is None:
            return self._adapter.linear(self.module, inputs)
        call = _LinearCall(self.module, self._adapter.linear)
        return functional_call(call, {f"layer.{self._adapter.weight}": weight}, inputs.args, inputs.kwargs, strict=False)

    def render(self, z: Tensor, weight: Tensor | None = None) -> Any:
        """The generator's full output for ``z``, with W substituted by ``weight`` if given
        (the model's own weight is left untouched)."""
        return self._forward(z, weight)

    def render_with_value(self, z: Tensor, override: Callable[[Tensor], Tensor]) -> Any:
        """The generator's output when the layer's value is replaced by ``override(value)``."""
        return self.capture(z, stop=None, override=override).output

    def zero_key_units(self, inputs: LayerInputs, units: Tensor | list[int]) -> LayerInputs:
        """The same inputs with the given key channels zeroed (GAN Dissection's ablation)."""
        x = inputs.args[0].clone()
        index = [slice(None)] * x.ndim
        index[self._adapter.input_axis] = torch.as_tensor(units, dtype=torch.long, device=x.device)
        x[tuple(index)] = 0
        return LayerInputs((x, *inputs.args[1:]), dict(inputs.kwargs))

    def upstream_fingerprint(self, z: Tensor) -> str:
        """Fingerprint of every weight that can influence the keys: modules that finished
        before the layer ran, the enclosing modules' own tensors, and the layer's tensors
        other than W. Used to key cached key statistics."""
        finished: list[nn.Module] = []
        names = {m: n for n, m in self.model.named_modules()}

        def record(m: nn.Module, _a: tuple, _o: Any) -> None:
            finished.append(m)

        handles = [m.register_forward_hook(record) for m in self.model.modules() if m is not self.module]
        try:
            with torch.no_grad():
                self.capture(z[:1], stop="input")
        finally:
            for h in handles:
                h.remove()
        tensors: dict[str, Tensor] = {}
        for m in finished:
            for n, t in [*m.named_parameters(), *m.named_buffers()]:
                tensors[f"{names[m]}.{n}"] = t
        parts = self.name.split(".")
        for depth in range(len(parts)):
            prefix = ".".join(parts[:depth])
            anc = self.model.get_submodule(prefix)
            for n, t in [*anc.named_parameters(recurse=False), *anc.named_buffers(recurse=False)]:
                tensors[f"{prefix}.{n}"] = t
        for n, t in [*self.module.named_parameters(), *self.module.named_buffers()]:
            if n != self._adapter.weight:
                tensors[f"{self.name}.{n}"] = t
        return tensor_fingerprint(tensors.items())


class _LinearCall(nn.Module):
    """Wraps a layer so that ``functional_call`` can run its linear operation alone."""

    def __init__(self, layer: nn.Module, linear: Callable[[nn.Module, LayerInputs], Tensor]) -> None:
        super().__init__()
        self.layer = layer
        self._linear = linear

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self._linear(self.layer, LayerInputs(args, kwargs))
