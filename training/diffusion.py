"""The diffusion training step: Ho et al.'s simple loss on the UNet of diffusion.py, Adam, an EMA
of the weights, as DiffusionStep; its flags, its recipe and `build_diffusion_step`, which turns a
training command line into a ready step. training/loop.py runs the step, as it runs GANStep.

One iteration: t uniform in 0..T-1 and eps standard normal per image (torch's global RNG, which
the loop checkpoints), the loss || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2,
a gradient step (norm clipped at --grad_clip, learning rate warmed up linearly over --warmup
iterations, as Ho et al.), then the EMA update. The EMA's decay is min(--ema_decay,
(1 + i) / (10 + i)) at iteration i: the usual warm-up, so that short runs average recent weights
rather than the initial ones.
"""

import contextlib
import copy
import sys
import zlib
from dataclasses import dataclass

import torch
from torch import optim

from checkpoint import build_generator, load_training_state
from diffusion import SamplerSettings
from training import distributed
from training.distributed import wrap_ddp
from training.gan import accumulate, requires_grad, to_channels_last
from utils.flags import add_sampler_arguments
from utils.settings import FlagSettings


@dataclass(frozen=True)
class DiffusionSettings(FlagSettings):
    """The hyperparameters of a diffusion training iteration, and the one place their defaults
    live (train.py's flags of the same names). lr: Adam's learning rate (Ho et al.: 2e-4);
    ema_decay: the EMA's decay after its warm-up (Ho et al.: 0.9999); grad_clip: the gradient's
    norm is clipped at this (0 = never; Ho et al.: 1); warmup: iterations of linear learning
    rate warm-up (0 = none; Ho et al.: 5000)."""

    lr: float = 2e-4
    ema_decay: float = 0.9999
    grad_clip: float = 1.0
    warmup: int = 0

    def ema_decay_at(self, iteration):
        return min(self.ema_decay, (1 + iteration) / (10 + iteration))

    def lr_at(self, iteration):
        if self.warmup <= 0:
            return self.lr
        return self.lr * min(1.0, (iteration + 1) / self.warmup)


DEFAULTS = DiffusionSettings()


def add_diffusion_training_arguments(parser):
    """train.py's flags of the diffusion iteration (--arch ddpm)."""
    add = parser.add_argument_group("diffusion training (--arch ddpm)").add_argument
    add(
        "--ema_decay",
        type=float,
        default=None,
        help=f"EMA decay of the weights per step (default: ddpm {DEFAULTS.ema_decay} after its warm-up; the GANs' "
        "0.5^(32 / 10000), the original's: a half-life of 10k images at batch 32)",
    )
    add("--grad_clip", type=float, default=DEFAULTS.grad_clip, help="clip the gradient's norm at this (0 = off)")
    add("--warmup", type=int, default=DEFAULTS.warmup, help="iterations of linear learning-rate warm-up")
    add_sampler_arguments(parser, "the sample grids' sampler (--arch ddpm)")


def apply_diffusion_recipe(args, explicit):
    """The diffusion recipe for flags not given: Ho et al.'s learning rate 2e-4 (train.py's
    --lr default is the GANs')."""
    if "lr" not in explicit:
        args.lr = DEFAULTS.lr


class DiffusionStep:
    """One training iteration of a diffusion model (`step(iteration, images)`; see the module
    docstring). `generator`/`ema`: DiffusionGenerators (the trained one and its EMA); `denoiser`:
    the trained UNet, or its DistributedDataParallel wrapper. `autocast`: factory of the forward
    pass's precision context. `grid_sampler`: the SamplerSettings of the sample grids. Losses come
    back as detached scalar tensors on the device.

    The rest is what training/loop.py's Trainer asks of any step.
    """

    progress_keys = {"loss": "loss"}
    stability_advice = "a lower --lr, or --grad_clip 1"

    def __init__(self, generator, ema, denoiser, optimizer, settings, grid_sampler, autocast=contextlib.nullcontext):
        self.generator, self.ema, self.denoiser = generator, ema, denoiser
        self.optimizer = optimizer
        self.settings = settings
        self.autocast = autocast
        self.grid_sampler = grid_sampler

    def predict(self, x_t, t):
        with self.autocast():
            return self.denoiser(x_t, t)

    def __call__(self, iteration, images):
        loss = self.generator.diffusion.training_loss(self.predict, images)
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings.lr_at(iteration)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.generator.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        accumulate(self.ema, self.generator, self.settings.ema_decay_at(iteration))
        return {"loss": loss.detach()}

    # -- what the training loop asks of a step ------------------------------------------------

    def state_dict(self):
        """The trained model ('g'), its EMA ('g_ema') and Adam's state ('g_optim'): the keys of the
        GAN checkpoints, so that every checkpoint reader finds the sampling weights in g_ema."""
        return {
            "g": self.generator.state_dict(),
            "g_ema": self.ema.state_dict(),
            "g_optim": self.optimizer.state_dict(),
        }

    def load_state_dict(self, checkpoint, source, config):
        """Restore a checkpoint read from `source` (model configuration `config`, for messages)."""
        modules = {"g": self.generator, "g_ema": self.ema}
        load_training_state(checkpoint, source, config, modules, {"g_optim": self.optimizer}, "train.py --arch ddpm")

    def rank_state(self):
        return {}

    def load_rank_state(self, state, device):
        pass

    def log_record(self):
        return {}

    def trained_networks(self):
        return (self.generator,)

    def saved_networks(self):
        return (self.generator, self.ema)

    def sample_inputs(self, count, rng):
        """The fixed initial noise x_T [count, 3, size, size] of the run's sample grids."""
        x_T, _ = self.ema.make_noise(count, rng=rng)
        return x_T

    def sample(self, x_T):
        """The EMA model's samples from `x_T` with the grid's sampler. A stochastic sampler draws
        each sample's per-step noise from a generator seeded by a checksum of its x_T, so that a
        run's grids differ only by training, resumed or not, however the loop batches them."""
        settings = self.grid_sampler
        step_rngs = [torch.Generator().manual_seed(zlib.crc32(x.cpu().numpy().tobytes())) for x in x_T]
        return self.ema.diffusion.sample(
            self.ema.denoiser(),
            x_T.shape,
            settings.sampler,
            settings.steps,
            settings.eta,
            settings.variance,
            x_T=x_T,
            generator=step_rngs,
            device=x_T.device,
        )


def build_diffusion_step(args, device, autocast=contextlib.nullcontext):
    """The DiffusionStep of a training command line: the model initialised from --seed (the same
    on every rank), its EMA copy, Adam, channels-last (--channels_last), DistributedDataParallel
    under torchrun and a compiled training forward (--compile), as its flags say."""
    torch.manual_seed(args.seed)
    try:
        generator = build_generator(args, device)
    except ValueError as error:
        raise SystemExit(f"cannot build the model: {error}") from None
    unet = generator.unet
    if unet.unused_attention and distributed.get_rank() == 0:
        print(
            f"warning: --attention_resolutions {','.join(map(str, unet.unused_attention))}: the UNet has no level "
            f"at that size (its levels work at {', '.join(map(str, unet.level_sizes))} px), so no attention there",
            file=sys.stderr,
        )
    if getattr(args, "channels_last", False):
        to_channels_last(generator)
    ema = copy.deepcopy(generator).eval()
    requires_grad(ema, False)
    settings = DiffusionSettings.from_args(args)
    grid_sampler = SamplerSettings.from_args(args)
    try:
        grid_sampler.check(generator.diffusion)
    except ValueError as error:
        raise SystemExit(f"the sample grids' sampler (--steps, --eta): {error}") from None
    optimizer = optim.Adam(generator.parameters(), lr=settings.lr)
    denoiser = generator.unet
    if distributed.get_world_size() > 1:
        denoiser = wrap_ddp(denoiser, device)
    if getattr(args, "compile", False):
        denoiser = torch.compile(denoiser)
    return DiffusionStep(generator, ema, denoiser, optimizer, settings, grid_sampler, autocast)
