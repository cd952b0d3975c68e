"""Drawing an unedited generator and its edited copies on the same latents with the part before
the edited layer computed once: the first generator runs in full and the outputs of the modules
that finish before the layer starts are kept; in each copy those modules return the kept outputs
instead of running. A copy whose weights before the layer differ (an edit of every weight), or
whose modules are called in another order, is drawn in full. The images are bitwise the ones a
full run draws."""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import Tensor, nn


def _clone(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_clone(v) for v in value)
    return value


class Exhausted(Exception):
    """A copy called a kept module more often than the first generator did."""


class SharedPrefix:
    """``draw(generators, z)``: each generator's output for ``z``; ``generators[1:]`` reuse the
    first one's computation up to the module ``layer`` (a dotted name)."""

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.full_runs = 0  # copies drawn in full (for reports and tests)
        self._same: dict[int, bool] = {}  # per copy: whether its kept modules' weights are the first's

    def record(self, model: nn.Module, z: Tensor) -> tuple[Any, dict[str, list[Any]]]:
        """``model(z)`` and the kept outputs of the modules that finish before the layer starts."""
        names = {m: n for n, m in model.named_modules()}
        layer = model.get_submodule(self.layer)
        parts = self.layer.split(".")
        ancestors = {model.get_submodule(".".join(parts[:i])) for i in range(len(parts))}
        stack: list[nn.Module] = []
        kept: dict[str, list[Any]] = {}
        late: set[str] = set()
        state = {"started": False}

        def pre(m: nn.Module, _args: Any) -> None:
            if m is layer:
                state["started"] = True
            stack.append(m)

        def post(m: nn.Module, _args: Any, out: Any) -> None:
            stack.pop()
            name = names[m]
            if state["started"]:
                late.add(name)
            elif m not in ancestors and (not stack or stack[-1] in ancestors):
                kept.setdefault(name, []).append(_clone(out))
        handles = [h for m in model.modules() for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
        try:
            out = model(z)
        finally:
            for h in handles:
                h.remove()
        return out, {n: outs for n, outs in kept.items() if n not in late}

    @staticmethod
    def same_weights(a: nn.Module, b: nn.Module) -> bool:
        """Whether two modules hold bitwise the same parameters and buffers."""
        ta = [*a.parameters(), *a.buffers()]
        tb = [*b.parameters(), *b.buffers()]
        return len(ta) == len(tb) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(ta, tb))

    def replay(self, model: nn.Module, z: Tensor, kept: dict[str, list[Any]]) -> Any:
        """``model(z)`` with the kept modules returning their recorded outputs (raises
        :class:`Exhausted` when the model calls them more often than the recording did)."""
        patched = []

        def replay(queue: Iterator[Any]) -> Any:
            def forward(*_args: Any, **_kwargs: Any) -> Any:
                try:
                    return _clone(next(queue))
                except StopIteration:
                    raise Exhausted from None
            return forward
        queues = {}
        try:
            for name, outs in kept.items():
                module = model.get_submodule(name)
                queues[name] = iter(outs)
                module.forward = replay(queues[name])
                patched.append(module)
            out = model(z)
            if any(next(q, None) is not None for q in queues.values()):
                raise Exhausted
            return out
        finally:
            for module in patched:
                del module.forward

    def draw(self, generators: list[nn.Module], z: Tensor) -> list[Any]:
        first, kept = self.record(generators[0], z)
        out = [first]
        for g in generators[1:]:
            if id(g) not in self._same:
                self._same[id(g)] = all(self.same_weights(generators[0].get_submodule(n), g.get_submodule(n))
                                        for n in kept)
            same = bool(kept) and self._same[id(g)]
            try:
                out.append(self.replay(g, z, kept) if same else g(z))
            except Exhausted:
                out.append(g(z))
                same = False
            self.full_runs += not same
        return out
