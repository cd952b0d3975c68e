"""What the callbacks may ask of the LightningModule they are attached to (RewriteModule
provides it; a module of your own that does can use the callbacks too)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from lightning_rewrite.engine.goal import Goal
from lightning_rewrite.engine.latents import LatentSampler
from lightning_rewrite.engine.layer import HookedLayer
from lightning_rewrite.engine.memory import SecondMoment
from lightning_rewrite.engine.request import EditRequest


@runtime_checkable
class Rewriting(Protocol):
    """A module that rewrites one layer of a generator."""

    hooked: HookedLayer
    latents: LatentSampler
    request: EditRequest
    key_moment: SecondMoment | None

    @property
    def device(self) -> object: ...

    @property
    def goal(self) -> Goal | None: ...

    @property
    def directions(self) -> Tensor | None:
        """D (N, S) when the change is constrained to context directions, else None."""

    def set_key_moment(self, moment: SecondMoment) -> None: ...

    def project(self) -> None:
        """Put the optimised weight back on W0 + span(D) (a no-op when nothing needs it)."""

    def base_generator(self) -> nn.Module: ...

    def edited_generator(self) -> nn.Module: ...
