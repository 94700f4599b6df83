"""The GAN training step: StyleGAN2's losses and regularisers, its hyperparameters and one
training iteration (GANStep), for every generator of this project (StyleGAN2 with or without
positional encoding, SWAGAN, the alias-free StyleGAN3-T/-R), and `build_gan_step`, which turns
a training command line into a ready step. training/loop.py runs the step.

The loss is the non-saturating logistic loss with lazy R1 on the discriminator every
d_reg_every iterations, style mixing, an EMA generator and Adam with the lazy-regularisation
correction of its learning rate and betas (StyleGAN2, Karras et al. 2020, appendix B).
Path-length regularisation exists as in StyleGAN2 but is off, as in the original, unless
g_reg_every is positive.
"""

import contextlib
import copy
import math
import random
from dataclasses import dataclass

import torch
from torch import autograd, optim
from torch.nn import functional as F

from checkpoint import MODEL_DEFAULTS, build_discriminator, build_generator, is_weights_only, load_training_state
from model import Generator as StyleGAN2Generator
from op import conv2d_gradfix, upfirdn2d
from stylegan3 import ARCHS as STYLEGAN3_ARCHS
from training import distributed
from training.augment import AdaptiveAugment, augment
from training.distributed import unwrap, wrap_ddp
from training.finetune import freeze_discriminator, load_weights
from utils.settings import FlagSettings

# The generator EMA of the original: a half-life of 10k images at 32 images per step.
EMA_DECAY = 0.5 ** (32 / (10 * 1000))
# The original never runs the path-length penalty, yet builds the generator's Adam for its default
# interval of 4 (lr x 4/5, beta2 0.99^(4/5)); with the penalty off, G keeps that correction.
ORIGINAL_G_REG_EVERY = 4


# ---------------------------------------------------------------------------------------------
# losses and regularisers


def requires_grad(model, flag=True):
    """Switch the parameters' gradients on or off; those Freeze-D froze (`frozen`) stay off."""
    for parameter in model.parameters():
        parameter.requires_grad = flag and not getattr(parameter, "frozen", False)


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
    # The penalty's target keeps its gradient through this batch's mean, as in rosinality's and
    # NVIDIA's code; only the running mean carried to the next step is detached.
    path_mean = mean_path_length + decay * (path_lengths.mean() - mean_path_length)
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
    switching at n_latent (the generator's number of per-layer latents), where no layer takes the
    copy: mixed and unmixed batches then run the same compiled graph too."""
    if prob > 0 and random.random() < prob:
        return list(random_latents(batch, latent_dim, 2, device)), torch.tensor(random.randint(1, n_latent - 1))
    latents = random_latents(batch, latent_dim, 1, device)
    if compiled:
        return [latents, latents.clone()], torch.tensor(n_latent)
    return [latents], None


# ---------------------------------------------------------------------------------------------
# hyperparameters


@dataclass(frozen=True)
class StepSettings(FlagSettings):
    """The hyperparameters of one training iteration, and the one place their defaults live:
    train.py's flags of the same names take them from here.

    latent: dimension of z. mixing: probability of style mixing. r1: weight of the R1 penalty,
    applied every d_reg_every iterations (0 = never). path_regularize: weight of the path-length
    penalty, applied every g_reg_every iterations (0 = never, as in the original).
    path_batch_shrink: the path-length batch is batch / this. ema_decay: of the EMA generator.
    lr: Adam's learning rate, corrected for the lazy regularisers (`adam_settings`); d_lr: the
    discriminator's (None = lr). blur_sigma: blur of the discriminator's images at the start,
    fading linearly to none over blur_fade_iterations (the alias-free GAN's StyleGAN3-R recipe).
    g_adam_every: the path-length interval the generator's Adam is corrected for while the
    penalty is off (the original's 4; StyleGAN3's recipe: 0, none). ema_rampup: the EMA's
    half-life is at most this times the iterations done (NVIDIA's ramp-up, 0.05 in StyleGAN3's
    recipe; 0 = none, the original's), so that the random initial weights fade fast.
    """

    lr: float = 0.002
    latent: int = MODEL_DEFAULTS["latent"]
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
    g_adam_every: int = ORIGINAL_G_REG_EVERY
    ema_rampup: float = 0.0

    def ema_decay_at(self, iteration):
        """The EMA's decay per step at `iteration`: ema_decay, whose half-life of h steps is
        shortened to ema_rampup x iteration while that is less (NVIDIA's min(ema_nimg, cur_nimg x
        ema_rampup), in steps; at iteration 0 the EMA takes the weights as they are)."""
        if self.ema_rampup <= 0 or not 0 < self.ema_decay < 1:
            return self.ema_decay
        half_life = min(math.log(0.5) / math.log(self.ema_decay), self.ema_rampup * iteration)
        return 0.5 ** (1 / half_life) if half_life > 0 else 0.0

    def r1_now(self, iteration):
        return self.r1 > 0 and self.d_reg_every > 0 and iteration % self.d_reg_every == 0

    def blur_sigma_at(self, iteration):
        if self.blur_sigma <= 0 or self.blur_fade_iterations <= 0:
            return 0.0
        return max(1 - iteration / self.blur_fade_iterations, 0.0) * self.blur_sigma

    def path_length_on(self):
        return self.path_regularize > 0 and self.g_reg_every > 0

    def path_length_now(self, iteration):
        return self.path_length_on() and iteration % self.g_reg_every == 0


def r1_heuristic(size, batch):
    """R1 weight gamma = 0.0002 * size^2 / batch: the `--cfg auto` rule of StyleGAN2-ADA (Karras et al.
    2020), which scales gamma with the pixel count and inversely with the batch."""
    return 0.0002 * size**2 / batch


def apply_recipe(args, explicit, resumed, world_size):
    """The training recipe of the architecture, for every flag not given explicitly.

    stylegan2, swagan: the flags' defaults. stylegan3-t/-r, as NVIDIA's configs: G lr
    0.0025 and D lr 0.002 (G's uncorrected: NVIDIA has no G regularisation interval), the EMA
    ramped up over the first iterations (ema_rampup 0.05), no style mixing, no path length
    (already off), a 2-layer mapping network for new models, R1 weight 2 * (size / 256)^2
    (NVIDIA's recommended gamma at batch 32 grows with the square of the resolution: 0.5 at
    128 px, 2 at 256, 8 at 512, 32 at 1024)
    and, for -r, the discriminator's images blurred with sigma 10 at the start, fading out over
    200 x total batch / 32 thousand images. Sets args.blur_fade_iterations, and resolves
    --r1 auto with the batch of all `world_size` ranks, as StyleGAN2-ADA's rule counts it.
    """
    alias_free = args.arch in STYLEGAN3_ARCHS
    if args.r1 == "auto":
        args.r1 = r1_heuristic(args.size, args.batch * world_size)
    if alias_free:
        recipe = {"lr": 0.0025, "d_lr": 0.002, "mixing": 0.0, "r1": 2 * (args.size / 256) ** 2}
        recipe.update(g_adam_every=0, ema_rampup=0.05)
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
            f"{args.blur_sigma:g} fading over {args.blur_fade_iterations} iterations, EMA ramp-up {args.ema_rampup:g}"
        )


def lazy_ratio(reg_every, enabled):
    """Fraction of the optimiser's steps that are loss steps when a regulariser runs lazily."""
    return reg_every / (reg_every + 1) if enabled and reg_every > 0 else 1.0


def adam_settings(settings):
    """{'g': (lr, betas), 'd': (lr, betas)} of StepSettings, with StyleGAN2's lazy-regularisation
    correction."""
    g_ratio = lazy_ratio(settings.g_reg_every if settings.path_length_on() else settings.g_adam_every, True)
    d_ratio = lazy_ratio(settings.d_reg_every, settings.r1 > 0)
    return {
        "g": (settings.lr * g_ratio, (0**g_ratio, 0.99**g_ratio)),
        "d": ((settings.lr if settings.d_lr is None else settings.d_lr) * d_ratio, (0**d_ratio, 0.99**d_ratio)),
    }


# ---------------------------------------------------------------------------------------------
# the iteration


class GANStep:
    """One training iteration of StyleGAN2 (`step(iteration, real_img)`):

    1. discriminator phase: non-saturating logistic loss on real and generated images;
    2. R1 on the real images every `d_reg_every` iterations (lazy regularisation);
    3. ADA tuning from the real predictions (when `ada` adapts);
    4. generator phase: non-saturating loss of generated images;
    5. path-length regularisation every `g_reg_every` iterations, when on;
    6. EMA update of `g_ema`.

    `generator`/`discriminator` may be DistributedDataParallel wrappers. `ada`: an
    AdaptiveAugment whose p augments both real and generated images, or None. `autocast`:
    factory of the forward passes' precision context (utils.device.setup_precision). `compile`:
    torch.compile the forward passes of the loss phases; the regularisers, which differentiate
    twice, run the modules uncompiled. Losses come back as detached scalar tensors on the
    device, never read back to the host here, so that steps queue up without waiting.

    The rest is what training/loop.py's Trainer asks of any step: its checkpoint entries, its
    per-rank state, its log figures, its networks and its sample grids.
    """

    # the progress bar's figures: {label: log key}
    progress_keys = {"d": "d", "g": "g", "r1": "r1", "augment": "augment_p"}
    # what to change when the losses or weights become non-finite
    stability_advice = "a lower --lr, or a higher --r1"

    def __init__(
        self,
        generator,
        discriminator,
        g_ema,
        g_optim,
        d_optim,
        settings,
        ada=None,
        autocast=contextlib.nullcontext,
        compile=False,
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

    def augment_p(self):
        return self.ada.p if self.ada is not None else 0.0

    def discriminator_input(self, images, p):
        """What the discriminator sees of `images`: blurred (early alias-free training), augmented."""
        return augment(blur_images(images, self.blur_sigma), p)

    def __call__(self, iteration, real_img):
        """Iteration `iteration` on the batch `real_img`; returns {loss name: scalar tensor}."""
        self.blur_sigma = self.settings.blur_sigma_at(iteration)
        losses = {}
        # The generator is never frozen: the discriminator phase runs it without autograd. A
        # compiled graph can tell the phases apart by grad mode and by whether its input needs
        # gradients, which torch.compile always checks, but not by the parameters' requires_grad,
        # which PyTorch 2.11 does not (pytorch/pytorch#139476): it reused the frozen generator's
        # graph in the generator phase, which then had no gradient.
        requires_grad(self.discriminator, True)
        self.discriminator_phase(real_img, self.augment_p(), losses)
        # ADA tunes p after the discriminator's step; as in rosinality's loop, R1 and the
        # generator already augment with the tuned p
        if self.settings.r1_now(iteration):
            self.r1_phase(real_img, self.augment_p(), losses)

        requires_grad(self.discriminator, False)
        self.generator_phase(real_img.shape[0], self.augment_p(), losses)
        if self.settings.path_length_now(iteration):
            self.path_length_phase(real_img.shape[0], losses)

        accumulate(self.g_ema, unwrap(self.generator), self.settings.ema_decay_at(iteration))
        return losses

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

    # -- what the training loop asks of a step ------------------------------------------------

    def state_dict(self):
        """Models, optimisers, the path-length mean and ADA's p, under the checkpoint's keys
        (the original's and rosinality's, plus mean_path_length)."""
        return {
            "g": unwrap(self.generator).state_dict(),
            "d": unwrap(self.discriminator).state_dict(),
            "g_ema": self.g_ema.state_dict(),
            "g_optim": self.g_optim.state_dict(),
            "d_optim": self.d_optim.state_dict(),
            "mean_path_length": float(self.mean_path_length),
            "ada_aug_p": self.augment_p(),
        }

    def load_state_dict(self, checkpoint, source, config):
        """Restore the state of a checkpoint read from `source` (model configuration `config`, for
        messages). The optimisers keep this step's learning rates and betas; an adapting ADA
        continues from the checkpoint's p (a fixed --augment_p stays fixed)."""
        if is_weights_only(checkpoint):  # convert_weight.py's, rosinality's: fine-tune
            return load_weights(self, checkpoint, source, config)
        modules = {"g": unwrap(self.generator), "d": unwrap(self.discriminator), "g_ema": self.g_ema}
        optimizers = {"g_optim": self.g_optim, "d_optim": self.d_optim}
        load_training_state(checkpoint, source, config, modules, optimizers)
        settings = adam_settings(self.settings)
        for key, optimizer in optimizers.items():
            lr, betas = settings[key[0]]
            for group in optimizer.param_groups:
                group["lr"], group["betas"] = lr, betas
        self.mean_path_length.fill_(float(checkpoint.get("mean_path_length", 0.0)))
        if self.ada is not None and self.ada.adaptive:
            self.ada.p = float(checkpoint.get("ada_aug_p", 0.0))

    def rank_state(self):
        """What differs between ranks: ADA's signs counted towards its next update."""
        return {"ada": self.ada.state_dict() if self.ada is not None else None}

    def load_rank_state(self, state, device):
        if self.ada is not None and self.ada.adaptive and state.get("ada") is not None:
            self.ada.load_state_dict(state["ada"], device)

    def log_record(self):
        """ADA's p, and r_t, the overfitting heuristic it follows, for the log."""
        if self.ada is None:
            return {}
        record = {"augment_p": round(self.ada.p, 6)}
        if self.ada.adaptive:
            record["rt"] = round(self.ada.r_t, 6)
        return record

    def trained_networks(self):
        """The networks the optimisers train (unwrapped), whose weights must stay finite."""
        return unwrap(self.generator), unwrap(self.discriminator)

    def saved_networks(self):
        """The networks a checkpoint stores."""
        return (*self.trained_networks(), self.g_ema)

    def sample_inputs(self, count, rng):
        """The fixed latents of the run's sample grids, drawn on the CPU from `rng`."""
        return torch.randn(count, self.settings.latent, generator=rng)

    def sample(self, latents):
        """The EMA generator's images of `latents`."""
        return self.g_ema([latents])[0]


# ---------------------------------------------------------------------------------------------
# building a step from a training command line


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


def build_augment(args):
    """The AdaptiveAugment of --augment (None without it): p fixed at --augment_p, or adapting
    from 0 (a resumed run continues from its checkpoint's p, GANStep.load_state_dict)."""
    if not args.augment:
        return None
    adaptive = args.augment_p == 0
    return AdaptiveAugment(args.ada_target, args.ada_length, args.ada_every, p=args.augment_p, adaptive=adaptive)


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


def build_gan_step(args, device, autocast=contextlib.nullcontext):
    """The GANStep of a training command line: models initialised from --seed, Adam, ADA,
    channels-last, DistributedDataParallel under torchrun and torch.compile, as its flags say."""
    try:
        generator, discriminator, g_ema = build_models(args, device, args.seed, args.modconv)
    except ValueError as error:
        raise SystemExit(f"cannot build the model: {error}") from None
    if getattr(args, "freeze_d", 0):
        freeze_discriminator(discriminator, args.freeze_d)
    settings = StepSettings.from_args(args)
    g_optim, d_optim = build_optimizers(generator, discriminator, settings)
    if args.channels_last:
        use_channels_last(generator, discriminator, g_ema)
    if distributed.get_world_size() > 1:
        generator, discriminator = wrap_ddp(generator, device), wrap_ddp(discriminator, device)
    return GANStep(
        generator, discriminator, g_ema, g_optim, d_optim, settings, build_augment(args), autocast, compile=args.compile
    )
