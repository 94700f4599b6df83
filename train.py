"""Train StyleGAN2 with explicit positional encoding (Choi et al., "Toward Spatially Unbiased
Generative Models", ICCV 2021), as rosinality/stylegan2-pytorch trains StyleGAN2.

    python train.py --name EXPERIMENT_NAME --path LMDB_PATH --position mspe
    python train.py --name EXPERIMENT_NAME --path LMDB_PATH --position mspe --translate 1.0
    python train.py --name EXPERIMENT_NAME --path LMDB_PATH --ckpt 550000.pt
    python train.py --name EXPERIMENT_NAME --path LMDB_PATH --position mspe --ckpt latest
    torchrun --nproc_per_node=N train.py --name EXPERIMENT_NAME --path LMDB_PATH --position mspe

The loss is the non-saturating logistic loss with lazy R1 on the discriminator every
--d_reg_every iterations, style mixing, an EMA generator and Adam with the lazy-regularisation
correction of its learning rate and betas. Path-length regularisation exists as in StyleGAN2
but is off, as in the original, unless --g_reg_every is positive. --augment enables adaptive
discriminator augmentation (augment.py); --translate circularly translates the real images.
--arch stylegan3-t | stylegan3-r trains the alias-free generator (stylegan3.py) with NVIDIA's
recipe for every flag not given (`apply_recipe`).

Writes checkpoint/<name>/<iter:06d>.pt (iter = iterations completed; --ckpt resumes there),
sample/<name>/<iter:06d>.png (the EMA generator on a fixed latent batch),
checkpoint/<name>/config.json (the resolved configuration) and checkpoint/<name>/log.jsonl
(losses, R1, path length, augmentation p and images/s every --log_every iterations).
SIGINT or SIGTERM saves a checkpoint at the current iteration and exits cleanly. A checkpoint
holds every RNG state, the data order's position and the sample latents, so that a resumed run
is the run it continues (bit for bit on the CPU); `--ckpt latest` resumes from the newest one,
or starts afresh when there is none, so the same command line can be requeued forever.
"""

import argparse
import contextlib
import copy
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import autograd, nn, optim
from torch.nn import functional as F
from torch.utils import data
from tqdm import tqdm

from training import distributed
from training.augment import AdaptiveAugment, augment
from checkpoint import (
    LATEST,
    add_model_arguments,
    build_discriminator,
    build_generator,
    check_writable,
    checkpoint_bytes,
    checkpoint_iteration,
    explicit_flags,
    load_checkpoint,
    load_latest_checkpoint,
    load_model_state,
    merge_model_config,
    numbered_checkpoints,
    remove_temporary_files,
    resolve_checkpoint,
    save_checkpoint,
)
from dataset import MultiResolutionDataset, ResumableSampler, SeededRecords, train_transform
from utils.device import PRECISIONS, default_precision, setup_precision
from utils.images import save_grid
from model import MODCONVS, Generator as StyleGAN2Generator, check_size
from stylegan3 import ARCHS as STYLEGAN3_ARCHS
from op import conv2d_gradfix, upfirdn2d

# The generator EMA of the original: a half-life of 10k images at 32 images per step.
EMA_DECAY = 0.5 ** (32 / (10 * 1000))


# ---------------------------------------------------------------------------------------------
# losses, regularisers and the training iteration


def requires_grad(model, flag=True):
    for parameter in model.parameters():
        parameter.requires_grad = flag


def accumulate(model1, model2, decay=0.999):
    """model1's parameters <- decay * model1 + (1 - decay) * model2 (the EMA generator); its
    stored buffers <- model2's (the running statistics of the alias-free generator: magnitudes,
    mean w). Non-persistent buffers (PE tables, filters) are constants and stay."""
    stored = model1.state_dict(keep_vars=True).keys()
    with torch.no_grad():
        torch._foreach_lerp_(list(model1.parameters()), list(model2.parameters()), 1 - decay)
        for (name, ema_buffer), buffer in zip(model1.named_buffers(), model2.buffers()):
            if name in stored:
                ema_buffer.copy_(buffer)


def blur_images(images, sigma):
    """The alias-free GAN's blur of the discriminator's images: a separable filter
    2^(-(x / sigma)^2), x = -3 sigma .. 3 sigma, normalised, same size out (identity for sigma < 1/3)."""
    radius = math.floor(sigma * 3)
    if radius <= 0:
        return images
    taps = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32).div(sigma).square().neg().exp2()
    taps = taps / taps.sum()
    images = upfirdn2d(images, taps.view(1, -1), pad=(radius, radius, 0, 0))
    return upfirdn2d(images, taps.view(-1, 1), pad=(0, 0, radius, radius))


def d_logistic_loss(real_pred, fake_pred):
    real_loss = F.softplus(-real_pred.float())
    fake_loss = F.softplus(fake_pred.float())
    return real_loss.mean() + fake_loss.mean()


def d_r1_loss(real_pred, real_img):
    """R1: the mean squared norm of the discriminator's gradient at the real images."""
    with conv2d_gradfix.no_weight_gradients():
        (grad_real,) = autograd.grad(outputs=real_pred.float().sum(), inputs=real_img, create_graph=True)
    return grad_real.pow(2).reshape(grad_real.shape[0], -1).sum(1).mean()


def g_nonsaturating_loss(fake_pred):
    return F.softplus(-fake_pred.float()).mean()


def g_path_regularize(fake_img, latents, mean_path_length, decay=0.01):
    """Path-length penalty of StyleGAN2; returns (penalty, new running mean, path lengths)."""
    noise = torch.randn_like(fake_img) / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    # No conv2d_gradfix.no_weight_gradients() here, unlike R1: the fused modulated convolutions
    # fold the latents into their weights, so these gradients flow through the weights.
    (grad,) = autograd.grad(outputs=(fake_img * noise).sum(), inputs=latents, create_graph=True)
    path_lengths = torch.sqrt(grad.float().pow(2).sum(2).mean(1))
    path_mean = mean_path_length + decay * (path_lengths.detach().mean() - mean_path_length)
    path_penalty = (path_lengths - path_mean).pow(2).mean()
    return path_penalty, path_mean.detach(), path_lengths


def random_latents(batch, latent_dim, n_latents, device):
    """`n_latents` batches of random z ([batch, latent_dim]): one tensor when n_latents is 1."""
    if n_latents == 1:
        return torch.randn(batch, latent_dim, device=device)
    return torch.randn(n_latents, batch, latent_dim, device=device).unbind(0)


def mixing_latents(batch, latent_dim, prob, n_latent, device, compiled=False):
    """The generator's input (styles, inject_index): with probability `prob` two latent batches
    and the layer where the second takes over (style mixing), else one batch and None. The index
    is drawn here, in the original's order of random draws, and passed as a 0-d tensor: a
    compiled generator then runs one graph for every index instead of one per value. `compiled`:
    an unmixed batch comes as its latents and a copy (a compiled graph assumes distinct inputs),
    switching at n_latent, where no layer takes the copy: mixed and unmixed batches then run the
    same compiled graph too."""
    if prob > 0 and random.random() < prob:
        return list(random_latents(batch, latent_dim, 2, device)), torch.tensor(random.randint(1, n_latent - 1))
    latents = random_latents(batch, latent_dim, 1, device)
    if compiled:
        return [latents, latents.clone()], torch.tensor(n_latent)
    return [latents], None


@dataclass(frozen=True)
class StepSettings:
    """The hyperparameters of one training iteration; train.py's flags of the same names.

    latent: dimension of z. mixing: probability of style mixing. r1: weight of the R1 penalty,
    applied every d_reg_every iterations (0 = never). path_regularize: weight of the path-length
    penalty, applied every g_reg_every iterations (0 = never, as in the original).
    path_batch_shrink: the path-length batch is batch / this. ema_decay: of the EMA generator.
    lr: Adam's learning rate, corrected for the lazy regularisers (`adam_settings`); d_lr: the
    discriminator's (None = lr). blur_sigma: blur of the discriminator's images at the start,
    fading linearly to none over blur_fade_iterations (the alias-free GAN's StyleGAN3-R recipe).
    """

    lr: float = 0.002
    latent: int = 512
    mixing: float = 0.9
    r1: float = 10.0
    d_reg_every: int = 16
    path_regularize: float = 2.0
    g_reg_every: int = 0
    path_batch_shrink: int = 2
    ema_decay: float = EMA_DECAY
    d_lr: float = None
    blur_sigma: float = 0.0
    blur_fade_iterations: int = 0

    @classmethod
    def from_args(cls, args):
        """The settings named like args' attributes; None (a flag the recipe has not resolved) keeps
        the default."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None})

    def r1_now(self, iteration):
        return self.r1 > 0 and self.d_reg_every > 0 and iteration % self.d_reg_every == 0

    def blur_sigma_at(self, iteration):
        if self.blur_sigma <= 0 or self.blur_fade_iterations <= 0:
            return 0.0
        return max(1 - iteration / self.blur_fade_iterations, 0.0) * self.blur_sigma

    def path_length_now(self, iteration):
        return self.path_regularize > 0 and self.g_reg_every > 0 and iteration % self.g_reg_every == 0


class TrainingStep:
    """One training iteration of StyleGAN2 (`step(iteration, real_img)`):

    1. discriminator phase: non-saturating logistic loss on real and generated images;
    2. R1 on the real images every `d_reg_every` iterations (lazy regularisation);
    3. ADA tuning from the real predictions (when `ada` adapts);
    4. generator phase: non-saturating loss of generated images;
    5. path-length regularisation every `g_reg_every` iterations, when on;
    6. EMA update of `g_ema`.

    `generator`/`discriminator` may be DistributedDataParallel wrappers. `ada`: an
    AdaptiveAugment whose p augments both real and generated images, or None. `autocast`:
    factory of the forward passes' precision context (device.setup_precision). `compile`:
    torch.compile the forward passes of the loss phases; the regularisers, which differentiate
    twice, run the modules uncompiled. Losses come back as detached scalar tensors on the
    device, never read back to the host here, so that steps queue up without waiting.
    """

    def __init__(
        self, generator, discriminator, g_ema, g_optim, d_optim, settings, ada=None,
        autocast=contextlib.nullcontext, compile=False,
    ):
        self.generator, self.discriminator, self.g_ema = generator, discriminator, g_ema
        self.g_optim, self.d_optim = g_optim, d_optim
        self.settings = settings
        self.ada = ada
        self.autocast = autocast
        self.compiled = compile
        self.generate = torch.compile(generator) if compile else generator
        self.discriminate = torch.compile(discriminator) if compile else discriminator
        self.mean_path_length = torch.zeros((), device=unwrap(generator).device)
        self.blur_sigma = 0.0

    def discriminator_input(self, images, p):
        """What the discriminator sees of `images`: blurred (early alias-free training), augmented."""
        return augment(blur_images(images, self.blur_sigma), p)

    def __call__(self, iteration, real_img):
        """Iteration `iteration` on the batch `real_img`; returns {loss name: scalar tensor}."""
        p = self.ada.p if self.ada is not None else 0.0
        self.blur_sigma = self.settings.blur_sigma_at(iteration)
        losses = {}
        # The generator is never frozen: the discriminator phase runs it without autograd. A
        # compiled graph can tell the phases apart by grad mode and by whether its input needs
        # gradients, which torch.compile always checks, but not by the parameters' requires_grad,
        # which PyTorch 2.11 does not (pytorch/pytorch#139476): it reused the frozen generator's
        # graph in the generator phase, which then had no gradient.
        requires_grad(self.discriminator, True)
        self.discriminator_phase(real_img, p, losses)
        if self.settings.r1_now(iteration):
            self.r1_phase(real_img, p, losses)

        requires_grad(self.discriminator, False)
        self.generator_phase(real_img.shape[0], p, losses)
        if self.settings.path_length_now(iteration):
            self.path_length_phase(real_img.shape[0], losses)

        accumulate(self.g_ema, unwrap(self.generator), self.settings.ema_decay)
        return losses

    def state_dict(self):
        """Models, optimisers and the path-length mean, under the checkpoint's keys."""
        return {
            "g": unwrap(self.generator).state_dict(),
            "d": unwrap(self.discriminator).state_dict(),
            "g_ema": self.g_ema.state_dict(),
            "g_optim": self.g_optim.state_dict(),
            "d_optim": self.d_optim.state_dict(),
            "mean_path_length": float(self.mean_path_length),
        }

    def load_state_dict(self, checkpoint, source, config):
        """Restore the state of a checkpoint read from `source` (model configuration `config`, for
        messages). The optimisers keep this step's learning rates and betas."""
        missing = [key for key in ("g", "d", "g_ema", "g_optim", "d_optim") if key not in checkpoint]
        if missing:
            raise SystemExit(
                f"{source} cannot resume training: it lacks {', '.join(missing)} (a generator-only checkpoint?). "
                "Resume from a checkpoint written by train.py."
            )
        for key, module in (("g", self.generator), ("d", self.discriminator), ("g_ema", self.g_ema)):
            load_model_state(unwrap(module), checkpoint[key], f"{source} ('{key}')", config)
        settings = adam_settings(self.settings)
        for key, optimizer in (("g_optim", self.g_optim), ("d_optim", self.d_optim)):
            try:
                optimizer.load_state_dict(checkpoint[key])
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise SystemExit(
                    f"{source} ('{key}') does not fit the optimiser: {error}. Resume from a checkpoint that "
                    "train.py wrote for this model."
                ) from None
            lr, betas = settings[key[0]]
            for group in optimizer.param_groups:
                group["lr"], group["betas"] = lr, betas
        self.mean_path_length.fill_(float(checkpoint.get("mean_path_length", 0.0)))

    def fake_images(self, batch):
        latents, inject_index = mixing_latents(
            batch, self.settings.latent, self.settings.mixing, self.g_ema.n_latent, self.g_ema.device, self.compiled
        )
        with self.autocast():
            fake_img, _ = self.generate(latents, inject_index=inject_index)
        return fake_img

    def discriminator_phase(self, real_img, p, losses):
        with torch.no_grad():
            fake_img = self.discriminator_input(self.fake_images(real_img.shape[0]), p)
        real_img_aug = self.discriminator_input(real_img, p)
        with self.autocast():
            fake_pred = self.discriminate(fake_img)
            real_pred = self.discriminate(real_img_aug)
        d_loss = d_logistic_loss(real_pred, fake_pred)
        losses["d"] = d_loss.detach()
        losses["real_score"] = real_pred.detach().float().mean()
        losses["fake_score"] = fake_pred.detach().float().mean()

        self.discriminator.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optim.step()
        if self.ada is not None:
            self.ada.tune(real_pred)

    def r1_phase(self, real_img, p, losses):
        real_img = real_img.detach().requires_grad_(True)
        real_img_aug = self.discriminator_input(real_img, p)
        with self.autocast():
            real_pred = self.discriminator(real_img_aug)
        r1_loss = d_r1_loss(real_pred, real_img)
        self.discriminator.zero_grad(set_to_none=True)
        weighted = self.settings.r1 / 2 * r1_loss * self.settings.d_reg_every
        # 0 * real_pred keeps every parameter in the graph (DDP expects a gradient for each)
        (weighted + 0 * real_pred[0].float()).sum().backward()
        self.d_optim.step()
        losses["r1"] = r1_loss.detach()

    def generator_phase(self, batch, p, losses):
        fake_img = self.discriminator_input(self.fake_images(batch), p)
        with self.autocast():
            fake_pred = self.discriminate(fake_img)
        g_loss = g_nonsaturating_loss(fake_pred)
        losses["g"] = g_loss.detach()

        self.generator.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_optim.step()

    def path_length_phase(self, batch, losses):
        settings = self.settings
        path_batch_size = max(1, batch // settings.path_batch_shrink)
        latents, inject_index = mixing_latents(
            path_batch_size, settings.latent, settings.mixing, self.g_ema.n_latent, self.g_ema.device
        )
        with self.autocast():
            fake_img, w = self.generator(latents, inject_index=inject_index, return_latents=True)
        path_loss, self.mean_path_length, path_lengths = g_path_regularize(fake_img, w, self.mean_path_length)
        self.generator.zero_grad(set_to_none=True)
        weighted = settings.path_regularize * settings.g_reg_every * path_loss
        # as R1's 0 * real_pred: every parameter in the graph
        (weighted + 0 * fake_img[0, 0, 0, 0].float()).backward()
        self.g_optim.step()
        losses["path"] = path_loss.detach()
        losses["path_length"] = path_lengths.detach().mean()


def wrap_ddp(model, device):
    """DistributedDataParallel; buffers (noise maps, PE tables) are constants, never broadcast."""
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def unwrap(model):
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ---------------------------------------------------------------------------------------------
# setup: arguments, models, optimisers, data


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train a spatially unbiased StyleGAN2 (StyleGAN2 with positional encoding).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--name", type=str, required=True, help="experiment name: outputs go to checkpoint/<name>, sample/<name>")
    add("--path", type=str, required=True, help="LMDB dataset made by prepare_data.py")
    add("--iter", type=int, default=800000, help="train until this many iterations are done")
    add("--batch", type=int, default=16, help="batch size per GPU (per rank)")
    add("--n_sample", type=int, default=64, help="images in each sample grid")
    add(
        "--ckpt", type=str, default=None,
        help="checkpoint to resume: a path, a file name in checkpoint/<name>, or 'latest' (the newest there; "
        "a fresh start when there is none)",
    )
    add("--lr", type=float, default=0.002, help="learning rate (of both networks unless --d_lr; stylegan3-*: 0.0025)")
    add("--d_lr", type=float, default=None, help="the discriminator's learning rate (default: --lr; stylegan3-*: 0.002)")
    add("--seed", type=int, default=0, help="random seed (model initialisation, sample latents, data order)")

    add_model_arguments(parser)

    add = parser.add_argument_group("loss and regularisation").add_argument
    add(
        "--r1", type=r1_weight, default=10,
        help="weight of the R1 penalty, or 'auto': 0.0002 x size^2 / batch, the heuristic of StyleGAN2-ADA "
        "(10 suits 1024 px at batch 4 as config-f; small images and batches need far less). stylegan3-t/-r "
        "without --r1: 2 x (size / 256)^2, NVIDIA's recommended gamma (0.5 at 128, 2 at 256, 8 at 512, 32 at 1024 px)",
    )
    add("--d_reg_every", type=int, default=16, help="R1 every this many iterations (0 = no R1)")
    add("--path_regularize", type=float, default=2, help="weight of the path-length penalty")
    add("--path_batch_shrink", type=int, default=2, help="path-length batch = batch / this")
    add(
        "--g_reg_every", type=int, default=0,
        help="path-length regularisation every this many iterations; 0 = off, as in the original (StyleGAN2: 4)",
    )
    add("--mixing", type=float, default=0.9, help="probability of style mixing (stylegan3-*: 0)")
    add(
        "--blur_sigma", type=float, default=None,
        help="blur (sigma in pixels) of the discriminator's images at the start, fading out over --blur_fade_kimg "
        "(default: 10 for stylegan3-r, 0 otherwise)",
    )
    add(
        "--blur_fade_kimg", type=float, default=None,
        help="thousands of images over which the blur fades out (default: 200 x total batch / 32, as NVIDIA's)",
    )

    add = parser.add_argument_group("augmentation").add_argument
    add(
        "--translate", type=float, default=0.0,
        help="random circular translation of the real images, as a fraction of their size "
        "(0 = off, 1.0 = any offset: the paper's recipe)",
    )
    add("--augment", action="store_true", help="adaptive discriminator augmentation (ADA)")
    add("--augment_p", type=float, default=0, help="fixed augmentation probability (0 = adapt it)")
    add("--ada_target", type=float, default=0.6, help="target of the ADA overfitting heuristic r_t")
    add("--ada_length", type=int, default=500 * 1000, help="real images over which p can go from 0 to 1")
    add("--ada_every", type=int, default=256, help="update p every this many real images")

    add = parser.add_argument_group("hardware, speed and outputs").add_argument
    add("--device", type=str, default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    add("--precision", type=str, default=None, choices=PRECISIONS, help="default: tf32 on CUDA, fp32 on CPU")
    add("--channels_last", action="store_true", help="channels-last memory format (for tensor cores)")
    add("--modconv", type=str, default="grouped", choices=MODCONVS,
        help="modulated convolution: per-sample weights in a grouped convolution (the original) or a plain "
        "convolution of scaled activations (the same function, often faster)")
    add("--compile", action="store_true", help="torch.compile the generator and discriminator forward passes")
    add("--workers", type=int, default=min(4, os.cpu_count() or 1), help="data loader processes per rank")
    add("--save_every", type=int, default=10000, help="write a checkpoint every this many iterations")
    add("--sample_every", type=int, default=1000, help="write a sample grid every this many iterations")
    add("--log_every", type=int, default=100, help="log losses and speed every this many iterations")
    add("--keep", type=int, default=0, help="keep only the newest this many checkpoints (0 = keep all)")
    add(
        "--max_bad_records", type=float, default=0.01,
        help="stop when more than this share of a pass over the data cannot be decoded (bad records are "
        "replaced by the next good one and logged until then)",
    )
    add("--wandb", action="store_true", help="also log to Weights & Biases (needs the wandb package)")
    add("--local_rank", "--local-rank", type=int, default=0, help="set by torch.distributed.launch")
    return parser


def r1_weight(text):
    """--r1: a number, or 'auto' (resolved by parse_args once --size and --batch are known)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--r1 takes a number or 'auto', not {text!r}") from None


def r1_heuristic(size, batch):
    """R1 weight gamma = 0.0002 * size^2 / batch: the `--cfg auto` rule of StyleGAN2-ADA (Karras et al.
    2020), which scales gamma with the pixel count and inversely with the batch."""
    return 0.0002 * size**2 / batch


def check_args(args):
    """Refuse settings that would fail later, naming the flag and what it accepts."""
    try:
        check_size(args.size)
    except ValueError as error:
        raise SystemExit(f"--size: {error}") from None
    if args.batch > 4 and args.batch % 4:
        raise SystemExit(
            f"--batch {args.batch}: the discriminator's minibatch-stddev groups need a batch of at most 4 "
            "or a multiple of 4"
        )
    if not 0 <= args.translate <= 1:
        raise SystemExit(f"--translate is a fraction of the image size from 0 to 1, not {args.translate}")
    if not 0 <= args.max_bad_records <= 1:
        raise SystemExit(f"--max_bad_records is a share of the records from 0 to 1, not {args.max_bad_records}")
    if not 0 <= args.augment_p <= 1:
        raise SystemExit(f"--augment_p is a probability from 0 to 1, not {args.augment_p}")
    positive = ["latent", "n_mlp", "channel_max", "iter", "batch", "n_sample", "save_every", "sample_every"]
    positive += ["log_every", "path_batch_shrink", "ada_every", "ada_length"]
    for flag in positive:
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag} must be at least 1, not {getattr(args, flag)}")
    for flag in ["d_reg_every", "g_reg_every", "keep", "workers"]:
        if getattr(args, flag) < 0:
            raise SystemExit(f"--{flag} must be 0 or more, not {getattr(args, flag)}")


def parse_args(argv=None):
    """Parse and check the command line; returns (args, the set of flags given explicitly)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args)
    if args.r1 == "auto":
        args.r1 = r1_heuristic(args.size, args.batch)
    return args, explicit_flags(parser, argv)


def lazy_ratio(reg_every, enabled):
    """Fraction of the optimiser's steps that are loss steps when a regulariser runs lazily."""
    return reg_every / (reg_every + 1) if enabled and reg_every > 0 else 1.0


def adam_settings(settings):
    """{'g': (lr, betas), 'd': (lr, betas)} of StepSettings, with StyleGAN2's lazy-regularisation
    correction."""
    g_ratio = lazy_ratio(settings.g_reg_every, settings.path_regularize > 0)
    d_ratio = lazy_ratio(settings.d_reg_every, settings.r1 > 0)
    return {
        "g": (settings.lr * g_ratio, (0**g_ratio, 0.99**g_ratio)),
        "d": ((settings.lr if settings.d_lr is None else settings.d_lr) * d_ratio, (0**d_ratio, 0.99**d_ratio)),
    }


def build_models(config, device, seed=0, modconv="grouped"):
    """Generator, discriminator and EMA generator of a model configuration; the same
    initialisation for a seed on every rank."""
    torch.manual_seed(seed)
    generator = build_generator(config, device, modconv)
    discriminator = build_discriminator(config, device)
    g_ema = copy.deepcopy(generator).eval()
    requires_grad(g_ema, False)
    return generator, discriminator, g_ema


def build_optimizers(generator, discriminator, settings):
    """Adam for the generator and the discriminator, as `adam_settings` says."""
    adam = adam_settings(settings)
    g_lr, g_betas = adam["g"]
    d_lr, d_betas = adam["d"]
    g_optim = optim.Adam(generator.parameters(), lr=g_lr, betas=g_betas)
    d_optim = optim.Adam(discriminator.parameters(), lr=d_lr, betas=d_betas)
    return g_optim, d_optim


def build_augment(args, checkpoint=None):
    """The AdaptiveAugment of --augment (None without it): p fixed at --augment_p, or adapting
    from the checkpoint's p (0 for a new run)."""
    if not args.augment:
        return None
    adaptive = args.augment_p == 0
    p = float(checkpoint.get("ada_aug_p", 0.0)) if adaptive and checkpoint is not None else args.augment_p
    return AdaptiveAugment(args.ada_target, args.ada_length, args.ada_every, p=p, adaptive=adaptive)


def to_channels_last(module):
    """Put the module's 4-D parameters and buffers in channels-last order (5-D ones stay), and
    start a StyleGAN2 generator's synthesis in it (its modulated weights are 5-D)."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.ndim == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    if isinstance(module, StyleGAN2Generator):
        module.channels_last = True
    return module


def use_channels_last(generator, discriminator, g_ema):
    """Channels-last memory format for the models (--channels_last); same results."""
    for module in (generator, discriminator, g_ema):
        to_channels_last(module)


def ignore_interrupts(_worker_id):
    """DataLoader workers leave Ctrl-C and SIGTERM to the main process, which saves and stops
    cleanly; both reach the workers too when a terminal or a job scheduler signals the whole
    process group."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def shut_down_workers(loader):
    """Stop the loader's worker processes now, not when it is garbage-collected. They ignore
    SIGTERM (ignore_interrupts), so after an exception, whose traceback keeps the loader alive,
    multiprocessing's exit handler would wait for them forever: a crashed run would hang."""
    iterator = loader._iterator  # the persistent workers' iterator; PyTorch has no public close
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None


def make_loader(args, dataset, rank, world_size, device):
    """Per-rank batches of --batch, as (images, records skipped per image): DistributedSampler's
    order (one rank: the whole dataset), resumable inside a pass, each image's random transform
    seeded by (--seed, pass, index), so the batches are the same for any --workers."""
    sampler = ResumableSampler(len(dataset), num_replicas=world_size, rank=rank, seed=args.seed)
    loader = data.DataLoader(
        SeededRecords(dataset, args.seed),
        batch_size=args.batch,
        sampler=sampler,
        # the loader's own draw (its workers' base seed) comes from here, not from torch's global
        # RNG, which the training step draws from
        generator=torch.Generator().manual_seed(args.seed),
        num_workers=args.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
        worker_init_fn=ignore_interrupts,
    )
    if batches_per_pass(loader) == 0:
        raise SystemExit(
            f"{args.path} holds {len(dataset)} images: less than one batch of {args.batch} for each of "
            f"{world_size} rank(s). Lower --batch or use a larger dataset."
        )
    return loader


def batches_per_pass(loader):
    return loader.sampler.num_samples // loader.batch_size


def sample_data(loader, epoch=0, position=0):
    """Batches forever from item `position` of pass `epoch` on, a new shuffle every pass; yields
    (epoch, position after the batch, batch)."""
    while True:
        loader.sampler.set_epoch(epoch, position)
        for batch in loader:
            position += loader.batch_size
            yield epoch, position, batch
        epoch, position = epoch + 1, 0


def rng_state(device):
    """Every RNG the training loop draws from in this process: Python's (style mixing), NumPy's,
    torch's on the CPU and, on CUDA, this rank's GPU (latents, noise, augmentation)."""
    numpy_state = np.random.get_state(legacy=False)
    # a tensor, not a NumPy array: checkpoints load with weights_only=True
    key = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    state = {
        "python": random.getstate(),
        "numpy": {**numpy_state, "state": {**numpy_state["state"], "key": key}},
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device):
    """Restore what rng_state returned (a CUDA state only on CUDA)."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    key = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state({**numpy_state, "state": {**numpy_state["state"], "key": key}})
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ---------------------------------------------------------------------------------------------
# bookkeeping: logs, signals, checkpoints


class LossMeter:
    """Per-step loss tensors summed on the device; averaged over steps and ranks when read.

    Adding never waits for the device. A non-finite loss anywhere in an interval makes its mean
    non-finite, which is how the training loop notices.
    """

    def __init__(self):
        self.sums, self.counts = {}, {}

    def add(self, losses):
        for key, value in losses.items():
            self.sums[key] = self.sums[key] + value.float() if key in self.sums else value.float()
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self):
        """{name: mean over steps and ranks} as floats, then start a new interval."""
        keys = sorted(self.sums)
        if not keys:
            return {}
        stacked = torch.stack([self.sums[key] / self.counts[key] for key in keys])
        values = distributed.reduce_mean(stacked).tolist()
        self.sums, self.counts = {}, {}
        return dict(zip(keys, values))

    def all_finite(self):
        """Whether every loss so far in this interval is finite, on every rank."""
        if not self.sums:
            return True
        bad = sum((~torch.isfinite(value)).int() for value in self.sums.values())
        return distributed.reduce_sum(bad).item() == 0


class StopRequest:
    """SIGINT/SIGTERM ask training to stop after the current iteration (with a checkpoint).

    A second signal gets the default behaviour, so a stuck run can still be interrupted.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal_name = None
        self.previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}

    def _handle(self, signum, _frame):
        self.signal_name = signal.Signals(signum).name
        for restored in self.SIGNALS:
            signal.signal(restored, self.previous[restored])

    def agreed(self):
        """True on every rank as soon as any rank got a signal (all stop at the same iteration)."""
        return distributed.any_rank(self.signal_name is not None)

    def restore(self):
        for signum in self.SIGNALS:
            signal.signal(signum, self.previous[signum])


def checkpoint_dir(args):
    return os.path.join("checkpoint", args.name)


def checkpoint_path(args, iteration):
    return os.path.join(checkpoint_dir(args), f"{iteration:06d}.pt")


def prune_checkpoints(args):
    """Delete all but the newest --keep numbered checkpoints of this experiment."""
    if args.keep <= 0:
        return
    for path in numbered_checkpoints(checkpoint_dir(args))[args.keep :]:
        os.remove(path)


def nonfinite_parameters(*modules):
    """Names of the parameters of `modules` that hold a nan or inf (one device sync in all)."""
    named = [(name, parameter) for module in modules for name, parameter in module.named_parameters()]
    finite = torch.stack([torch.isfinite(parameter).all() for _, parameter in named]).tolist()
    return [name for (name, _), ok in zip(named, finite) if not ok]


class Trainer:
    """The training loop around a TrainingStep: data, logs, samples, checkpoints, signals."""

    def __init__(self, args, step, device, resumed_from=None):
        self.args = args
        self.step = step
        self.device = device
        self.rank = distributed.get_rank()
        self.world_size = distributed.get_world_size()
        self.meter = LossMeter()
        # the newest checkpoint known to be good: the run's starting point, then each one saved
        self.last_saved = resumed_from
        self.last_logged = {}
        # the same latents for every sample grid of the run, resumed or not
        sample_generator = torch.Generator().manual_seed(args.seed)
        self.sample_z = torch.randn(args.n_sample, args.latent, generator=sample_generator).to(device)
        # where the data stands: the pass, the items of it trained on (this rank's), and how many
        # records of it could not be decoded
        self.epoch, self.position, self.bad_records = 0, 0, 0

    def resume(self, checkpoint, start_iter, loader):
        """Continue from `checkpoint` (after `start_iter` iterations) exactly where it stopped: the
        data order's position, this rank's RNGs and ADA statistics, the sample latents. Checkpoints
        without them (older ones, rosinality's) restart the pass they are in with fresh RNG seeds,
        as before."""
        data_state = checkpoint.get("data")
        if data_state is not None and data_state["world_size"] == self.world_size:
            self.epoch, self.position = data_state["epoch"], data_state["position"]
        else:
            self.epoch = start_iter // batches_per_pass(loader)
        sample_z = checkpoint.get("sample_z")
        if sample_z is not None and sample_z.shape == self.sample_z.shape:
            self.sample_z = sample_z.to(self.device)
        rank_states = checkpoint.get("rank_states") or []
        if data_state is None or self.rank >= len(rank_states):
            return
        state = rank_states[self.rank]
        set_rng_state(state["rng"], self.device)
        self.bad_records = state["bad_records"]
        ada = self.step.ada
        if ada is not None and ada.adaptive and state["ada"] is not None:  # a fixed --augment_p stays fixed
            ada.load_state_dict(state["ada"], self.device)

    def rank_state(self):
        """What differs between ranks and an exact resume needs: RNGs, ADA's counts, bad records."""
        ada = self.step.ada
        return {
            "rng": rng_state(self.device),
            "ada": ada.state_dict() if ada is not None else None,
            "bad_records": self.bad_records,
        }

    def checkpoint(self, rank_states):
        ada = self.step.ada
        return {
            **self.step.state_dict(),
            "args": argparse.Namespace(**vars(self.args)),
            "ada_aug_p": ada.p if ada is not None else self.args.augment_p,
            "sample_z": self.sample_z.cpu(),
            "data": {"epoch": self.epoch, "position": self.position, "world_size": self.world_size},
            "rank_states": rank_states,
        }

    def save(self, iteration):
        """Write checkpoint <iteration>.pt (rank 0) unless the state went non-finite."""
        self.stop_if_nonfinite(iteration)
        path = checkpoint_path(self.args, iteration)
        rank_states = distributed.all_gather_object(self.rank_state())
        if self.rank == 0:
            save_checkpoint(self.checkpoint(rank_states), path)
            prune_checkpoints(self.args)
        self.last_saved = path

    def count_bad_records(self, epoch, position, skipped, loader):
        """Account for a batch of pass `epoch` (items up to `position`) with `skipped` records that
        could not be decoded; True on every rank once any rank's share of bad records in this
        pass passes --max_bad_records."""
        if epoch != self.epoch:
            self.bad_records = 0
        self.epoch, self.position = epoch, position
        self.bad_records += int(skipped.sum())
        return distributed.any_rank(self.bad_records > self.args.max_bad_records * loader.sampler.num_samples)

    def stop_if_nonfinite(self, iteration, values=None):
        """End the run with a clear message when losses or weights stopped being finite."""
        losses_finite = self.meter.all_finite() if values is None else all(math.isfinite(v) for v in values.values())
        bad_parameters = nonfinite_parameters(unwrap(self.step.generator), unwrap(self.step.discriminator))
        if losses_finite and not distributed.any_rank(bad_parameters):
            return
        what = "the losses" if not losses_finite else "the weights"
        if values is not None and not losses_finite:
            bad_losses = [f"{key} {value}" for key, value in values.items() if not math.isfinite(value)]
            what += f" ({', '.join(bad_losses)})"
        if bad_parameters:
            what += f"; non-finite parameters include {', '.join(bad_parameters[:3])}"
        last = self.last_saved
        advice = (
            f"The last good checkpoint is {last}: resume from it (--ckpt {last}) with a lower --lr, "
            "or a higher --r1." if last else "No checkpoint was written; start again with a lower --lr."
        )
        raise SystemExit(f"training stopped at iteration {iteration}: {what} became non-finite (nan or inf). {advice}")

    def log(self, iteration, images, seconds, pbar):
        """Average the interval's losses over ranks; print, append to log.jsonl, wandb."""
        values = self.meter.means()
        self.stop_if_nonfinite(iteration, values)
        record = {"iter": iteration, **{key: round(value, 6) for key, value in values.items()}}
        ada = self.step.ada
        if ada is not None:
            record["augment_p"] = round(ada.p, 6)
            if ada.adaptive:  # the overfitting heuristic p follows
                record["rt"] = round(ada.r_t, 6)
        record["images_per_s"] = round(images / seconds, 2) if seconds > 0 else None
        bad_records = int(distributed.reduce_sum(torch.tensor(self.bad_records)))
        if bad_records:
            record["bad_records"] = bad_records  # in this pass, replaced by their neighbours
        self.last_logged.update(record)
        if self.rank != 0:
            return
        with open(os.path.join(checkpoint_dir(self.args), "log.jsonl"), "a") as log_file:
            log_file.write(json.dumps(record) + "\n")
        shown = self.last_logged
        pbar.set_description(
            f"d: {shown.get('d', 0):.4f}; g: {shown.get('g', 0):.4f}; r1: {shown.get('r1', 0):.4f}; "
            f"augment: {shown.get('augment_p', 0):.4f}; {shown.get('images_per_s') or 0:.1f} img/s"
        )
        if self.args.wandb:
            import wandb

            wandb.log(record, step=iteration)

    def sample(self, iteration):
        """The EMA generator on the fixed latents, as sample/<name>/<iteration>.png (rank 0)."""
        if self.rank != 0:
            return
        # the generator's noise draws on forked RNGs: a grid never changes the training that follows
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            images = torch.cat([self.step.g_ema([z])[0] for z in self.sample_z.split(self.args.batch)])
        nrow = max(1, int(round(math.sqrt(self.args.n_sample))))
        save_grid(images, os.path.join("sample", self.args.name, f"{iteration:06d}.png"), nrow=nrow)

    def train(self, loader, start_iter):
        """Iterations start_iter .. --iter - 1; returns the iteration count reached."""
        args = self.args
        stop = StopRequest()
        batches = sample_data(loader, self.epoch, self.position)
        too_many_bad = False
        pbar = range(start_iter, args.iter)
        if self.rank == 0:
            pbar = tqdm(pbar, initial=start_iter, total=args.iter, dynamic_ncols=True, smoothing=0.01)
        done = start_iter
        interval_start, interval_iterations = time.perf_counter(), 0
        try:
            for i in pbar:
                if stop.agreed():
                    break
                epoch, position, (real_img, skipped) = next(batches)
                too_many_bad = self.count_bad_records(epoch, position, skipped, loader)
                real_img = real_img.to(self.device, non_blocking=True)
                if args.channels_last:
                    real_img = real_img.contiguous(memory_format=torch.channels_last)
                self.meter.add(self.step(i, real_img))
                done = i + 1
                interval_iterations += 1
                if too_many_bad:
                    break

                if done % args.log_every == 0 or done == args.iter:
                    now = time.perf_counter()
                    images = interval_iterations * args.batch * self.world_size
                    self.log(done, images, now - interval_start, pbar)
                    interval_start, interval_iterations = now, 0
                if done % args.sample_every == 0:
                    self.sample(done)
                if done % args.save_every == 0:
                    self.save(done)
        finally:
            stop.restore()
            shut_down_workers(loader)
            if self.rank == 0:
                pbar.close()

        if stop.signal_name is not None and self.rank == 0:
            print(f"{stop.signal_name}: saving iteration {done} and stopping", file=sys.stderr)
        if self.last_saved != checkpoint_path(args, done):
            self.save(done)
        if too_many_bad:
            raise SystemExit(
                f"training stopped at iteration {done} (saved): {self.bad_records} records of {args.path} in this "
                f"pass could not be decoded, more than --max_bad_records {args.max_bad_records} of "
                f"{loader.sampler.num_samples}. Prepare the dataset again (prepare_data.py), or raise "
                "--max_bad_records."
            )
        if stop.signal_name is None and done % args.sample_every:
            self.sample(done)  # the final grid; a stopped run exits as soon as it has saved
        return done


# ---------------------------------------------------------------------------------------------


def configure_precision(args, device):
    """Resolve --precision (tf32 on CUDA, fp32 on CPU by default) into args.precision and
    return the autocast factory for the forward passes."""
    args.precision = args.precision or default_precision(device)
    return setup_precision(args.precision, device)


def logged_iteration(line):
    """The iteration of a log.jsonl line; infinity for a line torn by a kill mid-write."""
    try:
        return json.loads(line)["iter"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def trim_log(args, iteration):
    """Drop the log.jsonl records past `iteration` (and torn lines): a run killed after its last
    checkpoint logged iterations that the resumed run logs again."""
    path = os.path.join(checkpoint_dir(args), "log.jsonl")
    if not os.path.exists(path):
        return
    with open(path) as log_file:
        lines = log_file.readlines()
    kept = [line for line in lines if logged_iteration(line) <= iteration]
    if len(kept) == len(lines):
        return
    temporary = path + ".tmp"
    with open(temporary, "w") as log_file:
        log_file.writelines(kept)
    os.replace(temporary, path)


def apply_recipe(args, explicit, resumed, world_size):
    """The training recipe of the architecture, for every flag not given explicitly.

    stylegan2, swagan: the flags' defaults. stylegan3-t/-r, as NVIDIA's configs: G lr
    0.0025 and D lr 0.002, no style mixing, no path length (already off), a 2-layer mapping
    network for new models, R1 weight 2 * (size / 256)^2 (NVIDIA's recommended gamma at batch
    32 grows with the square of the resolution: 0.5 at 128 px, 2 at 256, 8 at 512, 32 at 1024)
    and, for -r, the discriminator's images blurred with sigma 10 at the start, fading out over
    200 x total batch / 32 thousand images. Sets args.blur_fade_iterations.
    """
    alias_free = args.arch in STYLEGAN3_ARCHS
    if alias_free:
        recipe = {"lr": 0.0025, "d_lr": 0.002, "mixing": 0.0, "r1": 2 * (args.size / 256) ** 2}
        if not resumed:
            recipe["n_mlp"] = 2
        for key, value in recipe.items():
            if key not in explicit:
                setattr(args, key, value)
    if args.blur_sigma is None:
        args.blur_sigma = 10.0 if args.arch == "stylegan3-r" else 0.0
    if args.blur_fade_kimg is None:
        args.blur_fade_kimg = 200 * args.batch * world_size / 32
    args.blur_fade_iterations = round(args.blur_fade_kimg * 1000 / (args.batch * world_size))
    if alias_free and distributed.get_rank() == 0:
        print(
            f"{args.arch} recipe: lr {args.lr:g}, d_lr {args.d_lr:g}, r1 {args.r1:g}, mixing {args.mixing:g}, "
            f"n_mlp {args.n_mlp}, path length every {args.g_reg_every} (0 = off), D image blur sigma "
            f"{args.blur_sigma:g} fading over {args.blur_fade_iterations} iterations"
        )


def write_config(args, device, world_size):
    config = {**vars(args), "device": str(device), "world_size": world_size}
    path = os.path.join(checkpoint_dir(args), "config.json")
    with open(path, "w") as config_file:
        json.dump(config, config_file, indent=2, sort_keys=True)


def main(argv=None):
    """Train as the command line `argv` says; returns the Trainer (models, optimisers) at the end."""
    args, explicit = parse_args(argv)
    device = distributed.setup(args.device, args.local_rank)
    try:
        return run(args, explicit, device)
    finally:
        distributed.cleanup()


def run(args, explicit, device):
    """Resume or build the models, open the data, train (see main)."""
    rank, world_size = distributed.get_rank(), distributed.get_world_size()
    args.distributed = world_size > 1
    autocast = configure_precision(args, device)

    checkpoint, ckpt_path, args.start_iter = None, None, 0
    if args.ckpt == LATEST:
        ckpt_path, checkpoint = load_latest_checkpoint(checkpoint_dir(args))
        if checkpoint is None and rank == 0:
            print(f"--ckpt latest: {checkpoint_dir(args)} holds no checkpoint; starting afresh", file=sys.stderr)
    elif args.ckpt is not None:
        ckpt_path = resolve_checkpoint(args.ckpt, args.name)
        checkpoint = load_checkpoint(ckpt_path)
    if checkpoint is not None:
        if "args" in checkpoint:
            merge_model_config(checkpoint["args"], args, explicit, source=ckpt_path)
        args.start_iter = checkpoint_iteration(ckpt_path)
        if args.start_iter >= args.iter and args.ckpt == LATEST:  # a requeued run that has finished
            if rank == 0:
                print(f"{ckpt_path} is at --iter {args.iter}: training is complete", file=sys.stderr)
            return None
        if args.start_iter >= args.iter:
            raise SystemExit(
                f"{ckpt_path} is at iteration {args.start_iter}, already at --iter {args.iter}; "
                "raise --iter to train on"
            )
        check_args(args)
    apply_recipe(args, explicit, resumed="args" in (checkpoint or {}), world_size=world_size)

    try:
        generator, discriminator, g_ema = build_models(args, device, args.seed, args.modconv)
    except ValueError as error:
        raise SystemExit(f"cannot build the model: {error}") from None
    settings = StepSettings.from_args(args)
    g_optim, d_optim = build_optimizers(generator, discriminator, settings)
    if rank == 0:  # a folder that cannot take a checkpoint is found now, not at the first save
        needed = checkpoint_bytes((generator, discriminator, g_ema), (generator, discriminator))
        check_writable(checkpoint_dir(args), needed)
        check_writable(os.path.join("sample", args.name))
        remove_temporary_files(checkpoint_dir(args))
        trim_log(args, args.start_iter)
    if args.channels_last:
        use_channels_last(generator, discriminator, g_ema)
    if args.distributed:
        generator, discriminator = wrap_ddp(generator, device), wrap_ddp(discriminator, device)
    step = TrainingStep(
        generator, discriminator, g_ema, g_optim, d_optim, settings, build_augment(args, checkpoint), autocast,
        compile=args.compile,
    )
    if checkpoint is not None:
        step.load_state_dict(checkpoint, ckpt_path, args)

    # Models start identical on every rank; noise, mixing and augmentation differ per rank and
    # per run resumed from a checkpoint without RNG states (Trainer.resume restores those).
    seed = int(np.random.SeedSequence([args.seed, rank, args.start_iter]).generate_state(1)[0])
    torch.manual_seed(seed)
    random.seed(seed)

    try:
        dataset = MultiResolutionDataset(args.path, train_transform(translate=args.translate), args.size)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(str(error)) from None
    loader = make_loader(args, dataset, rank, world_size, device)

    if rank == 0:
        write_config(args, device, world_size)
        if args.wandb:
            try:
                import wandb
            except ImportError:
                raise SystemExit("--wandb needs the wandb package: pip install wandb (or drop --wandb)") from None
            wandb.init(project="spatially unbiased stylegan2", name=args.name, config=vars(args))

    trainer = Trainer(args, step, device, resumed_from=ckpt_path)
    if checkpoint is not None:
        trainer.resume(checkpoint, args.start_iter, loader)
        del checkpoint
    trainer.train(loader, args.start_iter)
    return trainer


if __name__ == "__main__":
    main()
