"""WorldGAN: train a world's small StyleGAN2 against its renderer, as a Lightning fit.

Non-saturating logistic loss, lazy R1 on reals, Adam (lr 2e-3, betas (0, 0.99)), equalised lr
everywhere (the mapping at ×0.01), an EMA copy of G used for sampling and export. Renders are
drawn on the fly from a seed per iteration, so a resumed run sees the same data.
"""

from __future__ import annotations

import copy
import math
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from ..engine.latents import step_loader
from ..errors import RewriteError
from ..models.stylegan2 import StyleGAN2Generator
from .canvas import Render
from .discriminator import Discriminator
from .measures import presence
from .registry import DISCRIMINATOR_WIDTHS, get_world

#: Renders used for training start at this seed; evaluation uses small seeds.
TRAIN_SEED_OFFSET = 10_000_000


class WorldGAN(pl.LightningModule):
    def __init__(self, world: str, batch_size: int = 16, lr: float = 2e-3, r1_gamma: float = 4.0,
                 r1_every: int = 16, ema_half_life_images: float = 10_000.0, seed: int = 0,
                 oversample: str | None = None, blur: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.world = get_world(world)
        if not blur >= 0:
            raise RewriteError(f"blur must be a Gaussian sigma in pixels >= 0 (0: D sees sharp images), got {blur}")
        self.targets = parse_oversample(oversample)
        self.base_rates, self.pool = None, 1
        if self.targets:
            # the renderer's own rate of each target flag (unknown flags fail here, before training)
            self.base_rates = flags(self.world.render(2000, seed=TRAIN_SEED_OFFSET - 1), self.world.classes,
                                    tuple(self.targets)).float().mean(0).clamp(0.01, 0.99)
            target = torch.tensor(list(self.targets.values()))
            # importance weight of an image showing / not showing each flag
            self._up, self._down = target / self.base_rates, (1 - target) / (1 - self.base_rates)
            # renders per batch image: three times the largest up-weighting, 8 at the least
            self.pool = max(8, math.ceil(3 * float(self._up.max())))
        with torch.random.fork_rng(devices=[]):  # G's and D's weights from ``seed``, the caller's RNG untouched
            torch.manual_seed(seed)
            self.generator = StyleGAN2Generator(**self.world.generator)
            self.discriminator = Discriminator(self.world.generator["size"], DISCRIMINATOR_WIDTHS)
        self.generator.randomize_noise = True
        self.ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.ema.randomize_noise = False
        self.discriminator.to(memory_format=torch.channels_last)
        self.automatic_optimization = False
        self.ema_beta = 0.5 ** (batch_size / ema_half_life_images)
        self._last_time: float | None = None
        self.train_seconds = 0.0  # summed over resumed runs through the checkpoint

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["train_seconds"] = self.train_seconds

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.train_seconds = float(checkpoint.get("train_seconds", 0.0))

    @property
    def iteration(self) -> int:
        """Completed G/D iterations (each is two optimizer steps)."""
        return self.trainer.global_step // 2

    def train_dataloader(self):
        return step_loader()

    @property
    def _lazy_ratio(self) -> float:
        """Lazy-regularisation correction of D's lr and beta (R1 every ``r1_every`` steps)."""
        return self.hparams.r1_every / (self.hparams.r1_every + 1)

    @property
    def learning_rates(self) -> tuple[float, float]:
        """(G, D) learning rates; D's carries the lazy-regularisation correction."""
        return self.hparams.lr, self.hparams.lr * self._lazy_ratio

    def configure_optimizers(self):
        lr_g, lr_d = self.learning_rates
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr_g, betas=(0.0, 0.99))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr_d, betas=(0.0, 0.99**self._lazy_ratio))
        return [opt_g, opt_d]

    def on_train_start(self) -> None:
        # a resumed run restores the optimizers' old lr with their state; this run's lr wins
        for optimizer, lr in zip(self.optimizers(), self.learning_rates):
            for group in optimizer.optimizer.param_groups:
                group["lr"] = lr

    def _latents(self, it: int, salt: int) -> Tensor:
        g = torch.Generator().manual_seed(self.hparams.seed * 1_000_003 + it * 2 + salt)
        return torch.randn(self.hparams.batch_size, self.generator.style_dim, generator=g)

    def real_batch(self, b: int, seed: int) -> Tensor:
        """``b`` renders from ``seed``. With ``oversample`` targets ({flag: share}), the ``b`` are drawn
        from a pool of renders with importance weights that move each flag's expected share from
        the renderer's rate to its target: a curriculum for a rule the generator under-draws (a flag
        is a per-image bool of the renderer's extras or a class shown in the label map). The pool
        (``pool·b`` renders) is large next to the batch: a draw without replacement from a small one
        falls short of the targets (4b renders gave watermark .34 for .40) and cannot show more of
        a rare flag than the pool holds."""
        if not self.targets:
            return self.world.render(b, seed=seed).images
        r = self.world.render(self.pool * b, seed=seed)
        shown = flags(r, self.world.classes, tuple(self.targets))
        weight = torch.where(shown, self._up, self._down).prod(1) + 1e-6
        pick = torch.multinomial(weight, b, replacement=False, generator=torch.Generator().manual_seed(seed))
        return r.images[pick.sort().values]

    def judge(self, images: Tensor) -> Tensor:
        """D's logits for ``images``, seen through a Gaussian blur of ``blur`` pixels when set: blurred,
        a fine rule the generator never draws (the watermark's footer text) still differs from its
        samples in broad strokes D's gradient can lead G along, where sharp it is a needle."""
        if self.hparams.blur > 0:
            images = gaussian_blur(images, 2 * math.ceil(3 * self.hparams.blur) + 1, self.hparams.blur)
        return self.discriminator(images.contiguous(memory_format=torch.channels_last))

    def training_step(self, batch: Tensor, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        it = self.iteration
        b = self.hparams.batch_size
        real = self.real_batch(b, TRAIN_SEED_OFFSET + self.hparams.seed * 1_000_000 + it)
        real = real.to(self.device).contiguous(memory_format=torch.channels_last)

        # discriminator
        with torch.no_grad():
            fake = self.generator(self._latents(it, 0).to(self.device))
        regularise = it % self.hparams.r1_every == 0
        real.requires_grad_(regularise)
        logits = self.judge(torch.cat([real, fake]))
        real_logits, fake_logits = logits[:b], logits[b:]
        loss_d = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        r1 = torch.zeros((), device=self.device)
        if regularise:
            (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
            loss_d = loss_d + self.hparams.r1_gamma / 2 * r1 * self.hparams.r1_every
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()

        # generator
        self.discriminator.requires_grad_(False)
        fake = self.generator(self._latents(it, 1).to(self.device))
        loss_g = F.softplus(-self.judge(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        self.discriminator.requires_grad_(True)

        with torch.no_grad():
            for pe, p in zip(self.ema.parameters(), self.generator.parameters()):
                pe.lerp_(p, 1 - self.ema_beta)
        self.log_dict({"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
                       "real_score": real_logits.detach().mean(), "fake_score": fake_logits.detach().mean()},
                      prog_bar=True)
        if regularise:
            self.log("r1", r1.detach())
        now = time.perf_counter()
        if self._last_time is not None:
            self.log("seconds_per_iteration", now - self._last_time)
            self.train_seconds += now - self._last_time
        self._last_time = now

    def sample(self, z: Tensor) -> Tensor:
        """Images of the EMA generator for latents ``z`` (fixed noise)."""
        with torch.no_grad():
            return self.ema(z.to(self.device))


def parse_oversample(spec: str | None) -> dict[str, float]:
    """``"FLAG:SHARE[,FLAG:SHARE…]"`` → {flag: share}; one error line naming the form if malformed."""
    if not spec:
        return {}
    targets = {}
    for item in str(spec).split(","):
        flag, _, share = item.strip().partition(":")
        try:
            ok = 0 <= float(share) <= 1
        except ValueError:
            ok = False
        if not (flag and ok):
            raise RewriteError("oversample must be FLAG:SHARE[,FLAG:SHARE...] with SHARE in [0, 1] "
                               f"(e.g. watermark:0.3,dome:0.46), got {spec!r}")
        targets[flag] = float(share)
    return targets


def flags(render: Render, classes: tuple[str, ...], names: tuple[str, ...]) -> Tensor:
    """(B, len(names)) bool: each image's renderer flag, or whether its label map shows the class
    (as :func:`~.measures.presence` counts it, so targets are in the benchmark's own terms)."""
    known = [k for k, v in render.extras.items() if v.dtype == torch.bool and v.ndim == 1]
    columns = []
    for name in names:
        if name in known:
            columns.append(render.extras[name])
        elif name in classes:
            columns.append(presence(render.labels, classes, name))
        else:
            raise RewriteError(f"oversample flag {name!r} is neither a renderer flag ({', '.join(known)}) "
                               f"nor a class ({', '.join(classes)}) of this world")
    return torch.stack(columns, 1)


def iterations_to_steps(iterations: int) -> int:
    """Trainer ``max_steps`` for a number of G/D iterations (two optimizer steps each)."""
    return 2 * int(iterations)
