"""A denoising diffusion model with multi-scale positional encoding: the paper's claim that MS-PE
"can also be applied to denoising diffusion probabilistic models", built here.

Three parts, as in openai/improved-diffusion (unet.py, gaussian_diffusion.py):

- UNet: the epsilon predictor of Ho et al. 2020. Residual blocks (GroupNorm, SiLU, dropout), a
  sinusoidal timestep embedding and MLP added in every block, self-attention at chosen
  resolutions, encoder/decoder skip connections, strided-convolution downsampling and
  nearest-neighbour upsampling. `position` adds model.py's sinusoidal PE:
    none  the plain UNet: zero padding is its only source of position;
    sspe  gamma * PE after the first block at the input resolution only (one place);
    mspe  gamma_r * PE_r after the first block of every resolution r, in the encoder and in the
          decoder (2 x levels places), so that every scale the network works at can see where
          it is, as MS-PE gives every resolution of the GAN's generator its own PE.
  Each place has its own learned scalar gamma, initialised to zero: a fresh mspe/sspe UNet
  computes exactly what the 'none' UNet of the same seed computes (the PE modules draw no random
  numbers), and whatever it does with position it learns.
- GaussianDiffusion: the forward process q(x_t | x_0) (T steps, linear or cosine betas),
  epsilon prediction with the simple MSE loss, and the samplers: DDPM ancestral (variance
  beta-tilde or beta) and DDIM (any number of steps, any eta), both over any subsequence of
  the T steps. `sample` takes any callable denoiser(x_t, t) -> epsilon.
- DiffusionGenerator: UNet + process + sampler settings behind the interface generate.py's
  Renderer and the metrics use for GAN generators: its "latent" is the initial noise x_T and a
  seed for the per-step noise, both drawn per image from that image's seed (make_noise).

Shifts follow utils/shift.py: +shift_h moves the content down by that many output pixels. The
PE of a feature map downsampled d times moves by shift / d of its pixels, fractions included.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from model import POSITIONS, PositionalAdd, canonical_position, sinusoidal_encoding
from utils.settings import FlagSettings
from utils.shift import move_noise

# the value of checkpoint.py's --arch that means this model
DIFFUSION_ARCH = "ddpm"
SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ddim", "ddpm")
# the DDPM sampler's per-step variance: the posterior's beta-tilde, or beta (Ho et al. 2020, 3.2)
VARIANCES = ("beta_tilde", "beta")
PADDINGS = ("zeros", "circular")

# The diffusion model's configuration, stored in checkpoints beside checkpoint.py's
# MODEL_DEFAULTS (which owns --arch, --size and --position): Ho et al.'s CIFAR-10 UNet.
DIFFUSION_DEFAULTS = {
    "channels": 128,
    "channel_mult": "1,2,2,2",
    "num_res_blocks": 2,
    "attention_resolutions": "16",
    "dropout": 0.1,
    "diffusion_steps": 1000,
    "schedule": "linear",
    "padding": "zeros",
}


def parse_int_list(text, flag):
    """'1,2,2' -> (1, 2, 2); '' -> (). `flag` names the setting in the error message."""
    if isinstance(text, (tuple, list)):
        return tuple(int(value) for value in text)
    try:
        return tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated whole numbers like 1,2,2, not {text!r}") from None


# ---------------------------------------------------------------------------------------------
# the UNet


def group_norm(channels):
    """GroupNorm with 32 groups (Ho et al.), or as many as divide the channels of a small model."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def zero_module(module):
    """Zero a module's parameters: residual branches start as the identity (improved-diffusion)."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def timestep_embedding(t, dim):
    """The Transformer's sinusoidal embedding of timesteps t [N] as [N, dim] (dim even): channels
    2k, 2k+1 hold sin, cos(t * 10000^(-2k / dim)). It is the horizontal half of model.py's 2-D
    sinusoidal_encoding taken at coordinate t, so the two encodings are one function."""
    coord = t.float().view(-1, 1, 1)
    return sinusoidal_encoding(coord, torch.zeros_like(coord), 2 * dim)[:, :dim, 0, 0]


@dataclass(frozen=True)
class Placement:
    """Where a forward pass puts the PE: the shift in output pixels, the PE's scale (None: the
    training grid's) and whether the shift wraps around."""

    shift_h: float = 0.0
    shift_w: float = 0.0
    scale: float = None
    circular: bool = True


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv; plus the projected timestep embedding; GroupNorm, SiLU, dropout,
    zero-initialised conv; a 1x1 skip where the channels change (improved-diffusion's ResBlock)."""

    def __init__(self, in_channels, out_channels, embed_dim, dropout, padding):
        super().__init__()
        self.in_layers = nn.Sequential(
            group_norm(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, 1, 1, padding_mode=padding)
        )
        self.embed_layers = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, out_channels))
        self.out_layers = nn.Sequential(
            group_norm(out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, 1, 1, padding_mode=padding)),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x, embedding):
        h = self.in_layers(x) + self.embed_layers(embedding)[:, :, None, None].to(x.dtype)
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Single-head self-attention over all pixels, residual, zero-initialised output projection."""

    def __init__(self, channels):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x):
        n, c, height, width = x.shape
        q, k, v = self.qkv(self.norm(x).reshape(n, c, -1)).chunk(3, dim=1)
        attended = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.proj(attended.transpose(1, 2)).reshape(n, c, height, width)


class Level(nn.Module):
    """One block of a UNet level: a ResBlock, self-attention when `attention`, then
    gamma * PE when `pe` (the map is `downsampling` times smaller than the image)."""

    def __init__(self, in_channels, out_channels, embed_dim, dropout, padding, attention, pe, resolution, downsampling):
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, embed_dim, dropout, padding)
        self.attention = AttentionBlock(out_channels) if attention else None
        self.downsampling = downsampling
        self.pe = None
        if pe:
            self.pe = PositionalAdd(out_channels, resolution, resolution)
            nn.init.zeros_(self.pe.gamma)

    def forward(self, x, embedding, placement):
        h = self.res(x, embedding)
        if self.attention is not None:
            h = self.attention(h)
        if self.pe is not None:
            d = self.downsampling
            h = self.pe(h, placement.shift_h / d, placement.shift_w / d, placement.scale, placement.circular)
        return h


class Downsample(nn.Module):
    def __init__(self, channels, padding):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 1, padding_mode=padding)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels, padding):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1, padding_mode=padding)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    """The epsilon predictor eps_theta(x_t, t) of Ho et al. 2020 (improved-diffusion's UNetModel
    without class conditioning or learned variance).

    Args:
        size: training image size (the PE buffers' grid; any canvas works, see forward).
        channels: base channel count (Ho et al.: 128); must allow GroupNorm and the PE (a
            multiple of 4).
        channel_mult: channels of each level as multiples of `channels`; level i works at
            size / 2^i, so len(channel_mult) - 1 downsamplings.
        num_res_blocks: ResBlocks per level in the encoder (the decoder has one more, as
            improved-diffusion's).
        attention_resolutions: feature-map sizes (at the training size) with self-attention
            after each ResBlock; the middle block always has it.
        dropout: in every ResBlock.
        position: 'none', 'sspe' or 'mspe' (see the module docstring).
        padding: the convolutions' padding, 'zeros' (Ho et al.) or 'circular' (every layer then
            commutes with a circular shift by a multiple of the total downsampling).
    """

    def __init__(
        self,
        size=32,
        channels=128,
        channel_mult=(1, 2, 2, 2),
        num_res_blocks=2,
        attention_resolutions=(16,),
        dropout=0.1,
        position="none",
        padding="zeros",
        in_channels=3,
    ):
        super().__init__()
        position = canonical_position(position)
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {', '.join(POSITIONS)}, not {position!r}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, not {padding!r}")
        channel_mult = parse_int_list(channel_mult, "channel_mult")
        attention_resolutions = set(parse_int_list(attention_resolutions, "attention_resolutions"))
        if not channel_mult:
            raise ValueError("channel_mult needs at least one level")
        if channels % 4 or channels < 4:
            raise ValueError(f"channels must be a multiple of 4 (GroupNorm, the PE), not {channels}")
        self.total_downsampling = 2 ** (len(channel_mult) - 1)
        if size % self.total_downsampling:
            raise ValueError(
                f"size {size} is not a multiple of the UNet's total downsampling {self.total_downsampling} "
                f"({len(channel_mult)} levels): use fewer channel_mult entries or another size"
            )
        self.size, self.channels, self.position, self.in_channels = size, channels, position, in_channels
        self.level_sizes = [size // 2**index for index in range(len(channel_mult))]
        # sizes of attention_resolutions that no level works at: they add no attention
        self.unused_attention = sorted(attention_resolutions - set(self.level_sizes))
        embed_dim = 4 * channels
        self.time_embed = nn.Sequential(nn.Linear(channels, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))

        def level(in_ch, out_ch, downsampling, pe):
            resolution = size // downsampling
            attention = resolution in attention_resolutions
            return Level(in_ch, out_ch, embed_dim, dropout, padding, attention, pe, resolution, downsampling)

        # encoder: the input conv, then per level num_res_blocks blocks and a downsampling
        self.input_conv = nn.Conv2d(in_channels, channels, 3, 1, 1, padding_mode=padding)
        self.encoder = nn.ModuleList()
        skip_channels = [channels]
        current = channels
        for index, mult in enumerate(channel_mult):
            downsampling = 2**index
            for block in range(num_res_blocks):
                first = block == 0
                pe = first and (position == "mspe" or (position == "sspe" and index == 0))
                self.encoder.append(level(current, mult * channels, downsampling, pe))
                current = mult * channels
                skip_channels.append(current)
            if index < len(channel_mult) - 1:
                self.encoder.append(Downsample(current, padding))
                skip_channels.append(current)

        self.middle = nn.ModuleList(
            [
                ResBlock(current, current, embed_dim, dropout, padding),
                AttentionBlock(current),
                ResBlock(current, current, embed_dim, dropout, padding),
            ]
        )

        # decoder: per level num_res_blocks + 1 blocks, each taking one skip, then an upsampling
        self.decoder = nn.ModuleList()
        for index, mult in reversed(list(enumerate(channel_mult))):
            downsampling = 2**index
            for block in range(num_res_blocks + 1):
                pe = block == 0 and position == "mspe"
                self.decoder.append(level(current + skip_channels.pop(), mult * channels, downsampling, pe))
                current = mult * channels
            if index > 0:
                self.decoder.append(Upsample(current, padding))

        self.out = nn.Sequential(
            group_norm(current), nn.SiLU(), zero_module(nn.Conv2d(current, in_channels, 3, 1, 1, padding_mode=padding))
        )

    @property
    def device(self):
        return self.input_conv.weight.device

    def pe_places(self):
        """The PositionalAdd modules (one learned gamma each), encoder then decoder."""
        return [block.pe for block in [*self.encoder, *self.decoder] if isinstance(block, Level) and block.pe]

    def check_canvas(self, height, width):
        """Raise ValueError unless (height, width) is a canvas this UNet can denoise."""
        if height % self.total_downsampling or width % self.total_downsampling or height < 1 or width < 1:
            raise ValueError(
                f"canvas {height}x{width}: both sides must be multiples of the UNet's total downsampling "
                f"{self.total_downsampling}"
            )

    def forward(self, x, t, shift_h=0.0, shift_w=0.0, scale=None, circular=True):
        """epsilon_theta(x_t, t): [N, 3, H, W] for x [N, 3, H, W] (H, W multiples of the total
        downsampling) and timesteps t [N] (integers 0..T-1). The PE (sspe, mspe) is shifted by
        (shift_h, shift_w) output pixels and has frequencies divided by `scale` (a grid `scale`
        times finer than the training one, as model.py's SinusoidalPE)."""
        self.check_canvas(*x.shape[-2:])
        placement = Placement(shift_h, shift_w, scale, circular)
        embedding = self.time_embed(timestep_embedding(t, self.channels).to(self.input_conv.weight.dtype))
        h = self.input_conv(x)
        skips = [h]
        for block in self.encoder:
            h = block(h, embedding, placement) if isinstance(block, Level) else block(h)
            skips.append(h)
        h = self.middle[0](h, embedding)
        h = self.middle[1](h)
        h = self.middle[2](h, embedding)
        for block in self.decoder:
            if isinstance(block, Level):
                h = block(torch.cat([h, skips.pop()], 1), embedding, placement)
            else:
                h = block(h)
        return self.out(h)


# ---------------------------------------------------------------------------------------------
# the diffusion process


# the linear schedule's last beta, 0.02 scaled by 1000 / T, is 1 (alpha-bar 0) at this T
LINEAR_MIN_STEPS = 20


def beta_schedule(name, steps):
    """The T = `steps` betas (float64) of a named schedule.

    linear: Ho et al.'s, beta from 1e-4 to 0.02 over T = 1000, both ends scaled by 1000 / T for
        other T (improved-diffusion's rule, which keeps the curve of alpha-bar).
    cosine: Nichol and Dhariwal's, alpha-bar(t) = f(t) / f(0), f(t) = cos(((t / T + s) / (1 + s))
        pi / 2)^2, s = 0.008, beta_t = 1 - alpha-bar(t + 1) / alpha-bar(t) clipped at 0.999.
    """
    if name == "linear":
        ratio = 1000 / steps
        return torch.linspace(ratio * 1e-4, ratio * 0.02, steps, dtype=torch.float64)
    if name == "cosine":
        s = 0.008
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {name!r}")


def draw_noise(shape, generator=None, device="cpu", dtype=torch.float32):
    """Standard normal noise of `shape`, drawn on the CPU: from `generator` (a torch.Generator,
    or a list of one per sample, so that each sample's noise does not depend on the batch), or
    from torch's global RNG when None."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        noise = torch.cat([torch.randn(1, *shape[1:], generator=rng, dtype=dtype) for rng in generator])
    else:
        noise = torch.randn(shape, generator=generator, dtype=dtype)
    return noise.to(device)


class GaussianDiffusion:
    """The process of Ho et al. 2020 over T steps of `betas`: index t = 0..T-1 is their step
    t + 1. alpha-bar_t = prod_{s <= t} (1 - beta_s); every table is float64."""

    def __init__(self, betas):
        self.betas = betas.to(torch.float64)
        self.num_timesteps = len(betas)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, 0)

    @classmethod
    def from_config(cls, config):
        """The process of a configuration's diffusion_steps and schedule."""
        return cls(beta_schedule(config["schedule"], config["diffusion_steps"]))

    @staticmethod
    def _gather(table, t, x):
        """table[t] as [N, 1, 1, 1] in x's dtype and device."""
        return table.to(x.device)[t.to(x.device)].to(x.dtype).view(-1, *([1] * (x.ndim - 1)))

    def q_sample(self, x0, t, noise):
        """x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) noise, for timesteps t [N]."""
        abar = self._gather(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    @staticmethod
    def q_posterior(x0, x_t, abar, abar_next):
        """(mean, beta-tilde, beta) of q(x_t' | x_t, x_0) = N(mean, beta-tilde) for a step from the
        alpha-bar `abar` of t to the `abar_next` of the next t' < t (floats; 1 after the last step),
        whose beta is 1 - abar / abar_next (Ho et al.'s eq. 7, respaced as Nichol and Dhariwal):
            mean = beta sqrt(abar_next) / (1 - abar) x_0 + (1 - abar_next) sqrt(1 - beta) / (1 - abar) x_t,
            beta-tilde = beta (1 - abar_next) / (1 - abar)."""
        beta = 1 - abar / abar_next
        coef_x0 = beta * math.sqrt(abar_next) / (1 - abar)
        coef_xt = (1 - abar_next) * math.sqrt(1 - beta) / (1 - abar)
        return coef_x0 * x0 + coef_xt * x_t, beta * (1 - abar_next) / (1 - abar), beta

    def training_loss(self, denoiser, x0, t=None, noise=None):
        """The simple loss of Ho et al.: || eps - eps_theta(x_t, t) ||^2 averaged over every element,
        t uniform in 0..T-1 and eps standard normal (torch's global RNG) unless given."""
        if t is None:
            t = torch.randint(0, self.num_timesteps, (x0.shape[0],), device=x0.device)
        if noise is None:
            noise = torch.randn_like(x0)
        prediction = denoiser(self.q_sample(x0, t, noise), t)
        return F.mse_loss(prediction.float(), noise.float())

    @staticmethod
    def estimate_x0(x_t, eps, abar, clip=True):
        """x0^ = (x_t - sqrt(1 - abar) eps) / sqrt(abar), the x_0 that `eps` implies for x_t at the
        step of alpha-bar `abar` (a float), clipped to [-1, 1] when `clip`."""
        x0 = (x_t - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
        return x0.clamp(-1, 1) if clip else x0

    def timesteps(self, steps):
        """`steps` timesteps from T-1 down to 0, evenly spaced (rounded), as a descending list; one
        step is T-1 alone, a jump from pure noise to the data. These are improved-diffusion's
        space_timesteps(T, [steps]) but for its one step, t = 0, and for the points k (T-1) /
        (steps-1) that are exactly halves, which each rounds by its own floating-point error to
        either neighbour (at T = 1000: 283 of the odd step counts, 21, 23, 27, ..., in 1 to 19 of
        their timesteps; no even count)."""
        if not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"steps must be from 1 to the model's {self.num_timesteps} diffusion steps, not {steps}")
        if steps == 1:  # linspace's one point would be t = 0, which leaves the noise as it is
            return [self.num_timesteps - 1]
        spaced = torch.linspace(0, self.num_timesteps - 1, steps, dtype=torch.float64).round().long()
        return sorted(set(spaced.tolist()), reverse=True)

    def sample(
        self,
        denoiser,
        shape,
        sampler="ddim",
        steps=None,
        eta=0.0,
        variance="beta_tilde",
        x_T=None,
        step_noise=None,
        generator=None,
        clip_denoised=True,
        device="cpu",
        dtype=torch.float32,
        progress=False,
    ):
        """x_0 [shape] sampled by running `denoiser(x_t, t) -> epsilon` (t: [N] timesteps) from
        x_T over `steps` of the T steps (evenly spaced; None: all T).

        At each step from t to the next t' < t (alpha-bar of t' = 1 after the last step), with
        x0^ = (x_t - sqrt(1 - abar_t) eps^) / sqrt(abar_t), clipped to [-1, 1] when
        `clip_denoised` (eps^ then recomputed from it):
            ddim  x_t' = sqrt(abar_t') x0^ + sqrt(1 - abar_t' - sigma^2) eps^ + sigma z,
                  sigma = eta sqrt((1 - abar_t') / (1 - abar_t)) sqrt(1 - abar_t / abar_t')
                  (Song et al. 2021; eta 0 is deterministic, eta 1 is DDPM with beta-tilde);
            ddpm  x_t' = the posterior mean of the step (beta = 1 - abar_t / abar_t', as respaced
                  by Nichol and Dhariwal), plus sigma z, sigma^2 = beta-tilde or beta (`variance`).
        No noise is added at the last step.

        Random draws: x_T (unless given) and the per-step z come from `generator` (one
        torch.Generator, or a list of one per sample; see draw_noise); `step_noise(k, shape)`,
        when given, returns the z of step k = 0, 1, ... instead, which is how a shifted render
        reuses the noise of an unshifted one, moved. Returns x_0 in `dtype` on `device`.
        """
        SamplerSettings(sampler, steps or self.num_timesteps, eta, variance).check(self)
        x = draw_noise(shape, generator, device, dtype) if x_T is None else x_T.to(device, dtype)
        schedule = self.timesteps(steps or self.num_timesteps)
        abar_table = self.alphas_cumprod.tolist()
        for k, t in enumerate(tqdm(schedule, desc=sampler, leave=False, disable=not progress)):
            t_next = schedule[k + 1] if k + 1 < len(schedule) else -1
            abar, abar_next = abar_table[t], abar_table[t_next] if t_next >= 0 else 1.0
            eps = denoiser(x, torch.full((shape[0],), t, dtype=torch.long, device=device)).to(dtype)
            x0 = self.estimate_x0(x, eps, abar, clip_denoised)
            if clip_denoised:
                eps = (x - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
            if sampler == "ddim":
                sigma = eta * math.sqrt((1 - abar_next) / (1 - abar) * (1 - abar / abar_next))
                x = math.sqrt(abar_next) * x0 + math.sqrt(max(1 - abar_next - sigma**2, 0.0)) * eps
            else:
                x, beta_tilde, beta = self.q_posterior(x0, x, abar, abar_next)
                sigma = math.sqrt(beta_tilde if variance == "beta_tilde" else beta)
            if t_next >= 0 and sigma > 0:
                z = step_noise(k, shape) if step_noise is not None else draw_noise(shape, generator, device, dtype)
                x = x + sigma * z.to(device, dtype)
        return x


# ---------------------------------------------------------------------------------------------
# configuration, and the generator every script samples from


def diffusion_config(config):
    """The DIFFUSION_DEFAULTS keys of a dict (missing or None: the default), parsed and checked;
    raises ValueError naming the setting."""
    values = {key: default if config.get(key) is None else config[key] for key, default in DIFFUSION_DEFAULTS.items()}
    parse_int_list(values["channel_mult"], "channel_mult")
    parse_int_list(values["attention_resolutions"], "attention_resolutions")
    if values["schedule"] not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {values['schedule']!r}")
    if values["diffusion_steps"] < 1 or values["num_res_blocks"] < 1:
        raise ValueError("diffusion_steps and num_res_blocks must be at least 1")
    if values["schedule"] == "linear" and values["diffusion_steps"] <= LINEAR_MIN_STEPS:
        raise ValueError(
            f"the linear schedule needs more than {LINEAR_MIN_STEPS} diffusion_steps, not {values['diffusion_steps']}: "
            f"its betas end at 0.02 x 1000 / T, which reaches 1 at T = {LINEAR_MIN_STEPS}; use the cosine schedule"
        )
    if not 0 <= values["dropout"] < 1:
        raise ValueError(f"dropout must be from 0 to 1, not {values['dropout']}")
    return values


def build_unet(config):
    """The UNet of a model configuration (size, position and the DIFFUSION_DEFAULTS keys)."""
    values = diffusion_config(config)
    return UNet(
        size=config["size"],
        channels=values["channels"],
        channel_mult=values["channel_mult"],
        num_res_blocks=values["num_res_blocks"],
        attention_resolutions=values["attention_resolutions"],
        dropout=values["dropout"],
        position=config["position"],
        padding=values["padding"],
    )


@dataclass(frozen=True)
class SamplerSettings(FlagSettings):
    """How a DiffusionGenerator samples: `sampler` ddim or ddpm over `steps` of the T steps, DDIM's
    `eta`, DDPM's per-step `variance`."""

    sampler: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    variance: str = "beta_tilde"

    def check(self, diffusion):
        """Raise ValueError unless GaussianDiffusion `diffusion` can sample with these settings:
        a known sampler and variance, a step count from 1 to its T, eta 0 or more."""
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, not {self.sampler!r}")
        if self.variance not in VARIANCES:
            raise ValueError(f"variance must be one of {', '.join(VARIANCES)}, not {self.variance!r}")
        diffusion.timesteps(self.steps)
        if self.eta < 0:
            raise ValueError(f"eta must be 0 or more, not {self.eta}")

    def describe(self):
        """The sampler in words, as a report names it: "DDPM (beta-tilde), 50 steps"."""
        if self.sampler == "ddim":
            kind = "deterministic DDIM (eta 0)" if self.eta == 0 else f"DDIM (eta {self.eta:g})"
        else:
            kind = f"DDPM ({self.variance.replace('_', '-')})"
        return f"{kind}, {self.steps} steps"


class DiffusionGenerator(nn.Module):
    """A diffusion model behind the generator interface of the scripts (generate.py's Renderer,
    the metrics): UNet (`unet`), process (`diffusion`) and sampler settings (`sampler`).

    Its "latent" has no dimensions (style_dim 0): an image is fixed by its noise inputs, which
    make_noise draws from the image's seed, [x_T [1, 3, h, w], step_seed [1, 1, 1, 1] (int64)]:
    the initial noise and the seed of a torch.Generator for the sampler's per-step noise. A
    shifted render moves x_T (the scripts' move_noise rolls it with the content) and rolls the
    per-step noise by the shift, rounded, so that with the PE shifted too the same sample is
    drawn, moved.
    """

    style_dim = 0
    n_latent = 1
    # shifts wrap around (the PE and the noise rolls), as the StyleGAN2 generators'
    circular_shifts = True

    def __init__(self, unet, diffusion, sampler=SamplerSettings()):
        super().__init__()
        self.unet = unet
        self.diffusion = diffusion
        self.sampler = sampler
        self.size = unet.size
        self.position = unet.position

    @property
    def device(self):
        return self.unet.device

    def canvas_size(self, canvas=None, scale=None):
        """(height, width) of a render: the canvas (default: the training size) times `scale`, as the
        GAN generators' canvas and scale; raises ValueError for one the UNet cannot denoise."""
        height, width = canvas if canvas is not None else (self.size, self.size)
        scale = 1.0 if scale is None else scale
        scaled_h, scaled_w = height * scale, width * scale
        if scaled_h != int(scaled_h) or scaled_w != int(scaled_w):
            raise ValueError(f"scale {scale} turns the {height}x{width} canvas into {scaled_h}x{scaled_w} pixels")
        self.unet.check_canvas(int(scaled_h), int(scaled_w))
        return int(scaled_h), int(scaled_w)

    def input_grid(self, canvas=None, scale=None):
        """The image size of a canvas and scale (canvas_size): what the UNet denoises."""
        return self.canvas_size(canvas, scale)

    def make_noise(self, batch=1, *, canvas=None, scale=None, rng=None):
        """The noise inputs of `batch` images, [x_T [batch, 3, h, w], step_seed [batch, 1, 1, 1]
        (int64)], drawn on the CPU from `rng` (None: torch's global RNG)."""
        height, width = self.canvas_size(canvas, scale)
        x_T = torch.randn(batch, self.unet.in_channels, height, width, generator=rng)
        step_seed = torch.randint(0, 2**62, (batch, 1, 1, 1), generator=rng)
        return [x_T, step_seed]

    def truncation_latent(self, truncation=1.0, n_sample=None):
        """None: a diffusion model has no latent mean to truncate towards."""
        if truncation != 1:
            raise ValueError("--truncation has no meaning for a diffusion model: leave it at 1")
        return None

    def style(self, _latents):
        raise ValueError("a diffusion model has no style latents (its latent is the noise x_T): this needs a GAN")

    def denoiser(self, shift_h=0.0, shift_w=0.0, scale=None, circular=True):
        """The callable (x_t, t) -> epsilon of the UNet with its PE placed so."""
        return lambda x, t: self.unet(x, t, shift_h, shift_w, scale, circular)

    def forward(
        self,
        styles,
        noise=None,
        shift_h=0.0,
        shift_w=0.0,
        canvas=None,
        scale=None,
        circular=True,
        truncation=1.0,
        truncation_latent=None,
        sampler=None,
        progress=False,
    ):
        """(images [N, 3, h, w], None) sampled from `noise` ([x_T, step_seed] as make_noise's,
        batched; None: drawn from torch's global RNG for N = len(styles[0])), the PE shifted by
        (shift_h, shift_w) output pixels and scaled by `scale`; h, w: x_T's size. `sampler`: a
        SamplerSettings for this call (None: self.sampler). `truncation` must stay 1, `circular`
        True."""
        self.truncation_latent(truncation)
        if not circular:
            raise ValueError("a diffusion model shifts circularly only: its noise cannot move as an infinite plane")
        if noise is None:
            noise = self.make_noise(len(styles[0]), canvas=canvas, scale=scale)
        x_T, step_seeds = noise
        height, width = x_T.shape[-2:]
        generators = [torch.Generator().manual_seed(int(seed)) for seed in step_seeds.flatten().tolist()]

        def step_noise(_k, shape):
            (moved,) = move_noise([draw_noise(shape, generators)], shift_h, shift_w, height, width)
            return moved

        settings = self.sampler if sampler is None else sampler
        images = self.diffusion.sample(
            self.denoiser(shift_h, shift_w, scale, circular),
            x_T.shape,
            sampler=settings.sampler,
            steps=settings.steps,
            eta=settings.eta,
            variance=settings.variance,
            x_T=x_T,
            step_noise=step_noise,
            device=self.device,
            dtype=self.unet.input_conv.weight.dtype,
            progress=progress,
        )
        return images, None


def use_sampler(generator, sampler):
    """Give a DiffusionGenerator the SamplerSettings `sampler` (None: keep its own); other
    generators are left alone. Raises ValueError for settings the model cannot sample with
    (SamplerSettings.check)."""
    if isinstance(generator, DiffusionGenerator) and sampler is not None:
        sampler.check(generator.diffusion)
        generator.sampler = sampler
    return generator


def apply_sampler_args(generator, args):
    """use_sampler with the settings of a command line (utils/flags.py's add_sampler_arguments;
    absent flags keep the defaults)."""
    return use_sampler(generator, SamplerSettings.from_args(args))


def build_diffusion_generator(config, sampler=SamplerSettings()):
    """The DiffusionGenerator of a model configuration (size, position, DIFFUSION_DEFAULTS keys)."""
    return DiffusionGenerator(build_unet(config), GaussianDiffusion.from_config(diffusion_config(config)), sampler)
