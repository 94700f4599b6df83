"""StyleGAN2 with explicit sinusoidal positional encoding (Choi et al., ICCV 2021).

Module and state-dict names follow rosinality/stylegan2-pytorch, so its checkpoints load into
`Generator(..., position='none')` with strict=True. The three positions:

- 'none': plain StyleGAN2, whose synthesis starts from a learned 4x4 constant (`input.input`).
- 'sspe' (single-scale PE): that constant is replaced by the parameter-free sinusoidal
  positional encoding (PE) of the 4x4 grid (`sinusoidal_encoding`).
- 'mspe' (multi-scale PE): as 'sspe', plus x = x + gamma_r * PE_r after the first (upsampling)
  styled convolution of every resolution r = 8..size, with one learned scalar gamma_r per
  resolution (`pes.N.gamma`, N = 0 for r = 8), initialised to 1.

Shifts move the content by output pixels (utils/shift.py defines the unit, the sign and the circular
behaviour).
"""

import math
import random

import torch
from torch import nn
from torch.nn import functional as F

from op import (
    FusedLeakyReLU,
    conv2d_gradfix,
    downsample_padding,
    fused_leaky_relu,
    transposed_conv_padding,
    upfirdn2d,
    upsample_padding,
)
from utils.shift import shift_at, shifted_positions, subpixel_roll

POSITIONS = ("none", "sspe", "mspe")
# Other names of a position: the original train.py lists `rand_mspe`, which its code builds as mspe.
POSITION_ALIASES = {"rand_mspe": "mspe"}
MODCONVS = ("grouped", "plain")
# The truncation centre of every script: the mean of this many mapped latents of seed 0.
TRUNCATION_MEAN = 4096
# (r_c, r_s, t_x, t_y) of the input PE's grid unturned and unmoved
IDENTITY_TRANSFORM = (1.0, 0.0, 0.0, 0.0)


def normalised_transform(transform):
    """[N, 4] transforms (r_c, r_s, t_x, t_y) with (r_c, r_s) scaled to a unit vector: a rotation."""
    return transform / transform[:, :2].norm(dim=1, keepdim=True)


def canonical_position(position):
    """The position a name means: an alias (POSITION_ALIASES) becomes its position."""
    return POSITION_ALIASES.get(position, position)


def require_positional(position, feature):
    """Raise ValueError unless `position` has a positional encoding, which `feature` needs."""
    if position == "none":
        raise ValueError(
            f"{feature} needs a positional encoding, and this generator has position 'none' "
            "(a learned constant input): use an 'sspe'/'mspe' model"
        )


def channel_counts(channel_multiplier=2, channel_max=512):
    """Feature channels per resolution (StyleGAN2 config-f for the defaults), capped."""
    channels = {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * channel_multiplier,
        128: 128 * channel_multiplier,
        256: 64 * channel_multiplier,
        512: 32 * channel_multiplier,
        1024: 16 * channel_multiplier,
    }
    return {res: min(channel, channel_max) for res, channel in channels.items()}


def check_size(size):
    if size not in channel_counts() or size < 8:
        raise ValueError(f"size must be a power of two from 8 to 1024, not {size}")
    return int(math.log2(size))


class PixelNorm(nn.Module):
    def forward(self, input):
        return input * torch.rsqrt(torch.mean(input**2, dim=1, keepdim=True) + 1e-8)


def make_kernel(k):
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    k /= k.sum()
    return k


class Upsample(nn.Module):
    def __init__(self, kernel, factor=2):
        super().__init__()
        self.factor = factor
        kernel = make_kernel(kernel) * (factor**2)
        self.register_buffer("kernel", kernel)
        self.pad = upsample_padding(kernel.shape[0], factor)

    def forward(self, input):
        return upfirdn2d(input, self.kernel, up=self.factor, down=1, pad=self.pad)


class Downsample(nn.Module):
    def __init__(self, kernel, factor=2):
        super().__init__()
        self.factor = factor
        kernel = make_kernel(kernel)
        self.register_buffer("kernel", kernel)
        self.pad = downsample_padding(kernel.shape[0], factor)

    def forward(self, input):
        return upfirdn2d(input, self.kernel, up=1, down=self.factor, pad=self.pad)


class Blur(nn.Module):
    def __init__(self, kernel, pad, upsample_factor=1):
        super().__init__()
        kernel = make_kernel(kernel)
        if upsample_factor > 1:
            kernel = kernel * (upsample_factor**2)
        self.register_buffer("kernel", kernel)
        self.pad = pad

    def forward(self, input):
        return upfirdn2d(input, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, input):
        return conv2d_gradfix.conv2d(
            input, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding
        )

    def __repr__(self):
        out_channel, in_channel, kernel_size, _ = self.weight.shape
        return (
            f"{self.__class__.__name__}({in_channel}, {out_channel}, {kernel_size},"
            f" stride={self.stride}, padding={self.padding})"
        )


class EqualLinear(nn.Module):
    def __init__(self, in_dim, out_dim, bias=True, bias_init=0, lr_mul=1, activation=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, input):
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(input, self.weight * self.scale), bias)
        return F.linear(input, self.weight * self.scale, bias=bias)

    def __repr__(self):
        return f"{self.__class__.__name__}({self.weight.shape[1]}, {self.weight.shape[0]})"


def identity_affine(style_dim):
    """The learned map from a latent [N, style_dim] to the input's transform (r_c, r_s, t_x, t_y),
    started at IDENTITY_TRANSFORM for every latent (zero weight), as StyleGAN3's affine."""
    affine = EqualLinear(style_dim, 4)
    with torch.no_grad():
        affine.weight.zero_()
        affine.bias.copy_(torch.tensor(IDENTITY_TRANSFORM))
    return affine


class ModulatedConv2d(nn.Module):
    """Style-modulated, optionally demodulated convolution of StyleGAN2.

    `modconv='grouped'` folds the styles into per-sample weights and runs one grouped
    convolution (the original; rosinality's `fused=True`); `'plain'` scales the activations
    instead, runs one ordinary convolution with the shared weight and demodulates the output:
    the same function without the batch's per-sample weights (B times the weight's memory),
    usually faster for training.
    """

    def __init__(
        self,
        in_channel,
        out_channel,
        kernel_size,
        style_dim,
        demodulate=True,
        upsample=False,
        downsample=False,
        blur_kernel=[1, 3, 3, 1],
        modconv="grouped",
    ):
        super().__init__()
        if modconv not in MODCONVS:
            raise ValueError(f"modconv must be one of {', '.join(MODCONVS)}, not {modconv!r}")
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.upsample = upsample
        self.downsample = downsample

        if upsample:
            self.blur = Blur(blur_kernel, transposed_conv_padding(len(blur_kernel), 2, kernel_size), upsample_factor=2)
        if downsample:
            self.blur = Blur(blur_kernel, downsample_padding(len(blur_kernel) + kernel_size - 1, 2))

        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate = demodulate
        self.modconv = modconv

    def __repr__(self):
        return (
            f"{self.__class__.__name__}({self.in_channel}, {self.out_channel}, {self.kernel_size}, "
            f"upsample={self.upsample}, downsample={self.downsample})"
        )

    def forward(self, input, style):
        batch, in_channel, height, width = input.shape
        style = self.modulation(style)

        if self.modconv == "plain":
            weight = self.scale * self.weight.squeeze(0)
            if self.demodulate:
                # sum over i, ky, kx of (w_oik s_i)^2 = sum_i s_i^2 sum_k w_oik^2: a [B, O, I]
                # product instead of the k*k times larger per-sample weights, and like them in
                # the weight's precision (float32, also when autocast makes the styles bfloat16)
                weight_energy = weight.square().sum((2, 3))
                style_energy = style.to(weight.dtype).square()
                demod = ((style_energy.unsqueeze(1) * weight_energy).sum(2) + self.eps).rsqrt()
            input = input * style.reshape(batch, in_channel, 1, 1)
            if self.upsample:
                out = conv2d_gradfix.conv_transpose2d(input, weight.transpose(0, 1), padding=0, stride=2)
                out = self.blur(out)
            elif self.downsample:
                out = conv2d_gradfix.conv2d(self.blur(input), weight, padding=0, stride=2)
            else:
                out = conv2d_gradfix.conv2d(input, weight, padding=self.padding)
            if self.demodulate:
                out = out * demod.to(out.dtype).view(batch, -1, 1, 1)
            return out

        weight = self.scale * self.weight * style.view(batch, 1, in_channel, 1, 1)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)
            weight = weight * demod.view(batch, self.out_channel, 1, 1, 1)
        kernel = self.kernel_size

        if self.upsample:
            input = input.reshape(1, batch * in_channel, height, width)
            weight = weight.transpose(1, 2).reshape(batch * in_channel, self.out_channel, kernel, kernel)
            out = conv2d_gradfix.conv_transpose2d(input, weight, padding=0, stride=2, groups=batch)
            out = out.view(batch, self.out_channel, *out.shape[2:])
            return self.blur(out)

        weight = weight.view(batch * self.out_channel, in_channel, kernel, kernel)
        if self.downsample:
            input = self.blur(input)
            input = input.reshape(1, batch * in_channel, *input.shape[2:])
            out = conv2d_gradfix.conv2d(input, weight, padding=0, stride=2, groups=batch)
        else:
            input = input.reshape(1, batch * in_channel, height, width)
            out = conv2d_gradfix.conv2d(input, weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_channel, *out.shape[2:])


def tile(tensor, height, width):
    """Repeat a [..., h, w] map circularly to [..., height, width] (crops when smaller)."""
    h, w = tensor.shape[-2:]
    if (h, w) == (height, width):
        return tensor
    repeats = [1] * (tensor.ndim - 2) + [-(-height // h), -(-width // w)]
    return tensor.repeat(*repeats)[..., :height, :width]


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image, noise=None):
        batch, _, height, width = image.shape
        if noise is None:
            noise = image.new_empty(batch, 1, height, width).normal_()
        else:
            # stored noise maps have the default canvas; other canvases and scales tile them
            noise = tile(noise, height, width)
        # in the activations' precision: a float32 weight would turn bfloat16 activations float32
        return image + (self.weight * noise).to(image.dtype)


class ConstantInput(nn.Module):
    """The learned 4x4 input of StyleGAN2 (`position='none'`)."""

    def __init__(self, channel, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch, height, width, shift_h=0.0, shift_w=0.0):
        """[batch, channel, height, width]: tiled circularly to the canvas, shifted as an image."""
        out = tile(self.input, height, width)
        out = subpixel_roll(out, shift_h, 2)
        out = subpixel_roll(out, shift_w, 3)
        return out.repeat(batch, 1, 1, 1)


def sinusoidal_encoding(coord_x, coord_y, channel, scale=1.0):
    """The 2-D sinusoidal positional encoding of Choi et al. at the given coordinates.

    With d = channel / 2 and frequencies f_k = 10000^(-2k / d) / scale, k = 0..d/2-1, the first
    half of the channels encodes the horizontal coordinate and the second half the vertical one:
    channel 2k holds sin(x f_k), 2k+1 cos(x f_k), d+2k sin(y f_k), d+2k+1 cos(y f_k). On a grid,
    coordinates are pixel indices (continuous when shifted); `scale` s samples a grid s times
    finer with frequencies divided by s, the same continuous content at s times the resolution.

    Args:
        coord_x, coord_y: horizontal and vertical coordinates, broadcastable to [..., H, W]
            (e.g. [1, W] and [H, 1] for an axis-aligned grid, [B, H, W] for a rotated one).
        channel: number of PE channels (divisible by 4).
        scale: grid refinement; frequencies are divided by it.
    Returns:
        [..., channel, H, W]: channels 2k / 2k+1 of the first half hold sin / cos(x * f_k),
        those of the second half sin / cos(y * f_k), f_k = 10000^(-2k / (channel / 2)) / scale.
    """
    if channel % 4:
        raise ValueError(f"sinusoidal PE needs a channel count divisible by 4, got {channel}")
    half = channel // 2
    device = coord_x.device
    freqs = torch.exp(torch.arange(0.0, half, 2, device=device) * -(math.log(10000.0) / half)) / scale
    freqs = freqs.view(-1, 1, 1)

    def encode(coord):
        angle = coord.unsqueeze(-3) * freqs
        return torch.stack([angle.sin(), angle.cos()], -3).flatten(-4, -3)

    x_part, y_part = encode(coord_x), encode(coord_y)
    shape = torch.broadcast_shapes(x_part.shape, y_part.shape)
    return torch.cat([x_part.expand(shape), y_part.expand(shape)], -3)


class SinusoidalPE(nn.Module):
    """PE maps of one resolution; the unshifted map of the default grid is a cached buffer."""

    def __init__(self, channel, height, width, scale=1.0):
        super().__init__()
        self.channel = channel
        self.scale = scale
        height, width = int(height * scale), int(width * scale)
        self.register_buffer("pe", self._compute(height, width, 0.0, 0.0, scale, True, "cpu"), persistent=False)

    def _compute(self, height, width, shift_h, shift_w, scale, circular, device):
        pos_h = shifted_positions(height, shift_h, circular, device)
        pos_w = shifted_positions(width, shift_w, circular, device)
        return sinusoidal_encoding(pos_w.view(1, width), pos_h.view(height, 1), self.channel, scale)

    def encoding(self, height, width, shift_h=0.0, shift_w=0.0, scale=None, circular=True):
        """[channel, height, width] PE, shifted by (shift_h, shift_w) pixels of this grid."""
        scale = self.scale if scale is None else scale
        if (height, width) == tuple(self.pe.shape[-2:]) and shift_h == shift_w == 0 and scale == self.scale:
            return self.pe
        return self._compute(height, width, shift_h, shift_w, scale, circular, self.pe.device)

    def transformed_encoding(
        self, transform, batch, height, width, shift_h=0.0, shift_w=0.0, scale=None, circular=True
    ):
        """[batch, channel, height, width] PE sampled on the (shifted) grid rotated about its centre
        by the angle whose cosine and sine are (r_c, r_s) after normalisation, then translated by
        (t_x, t_y) grid pixels: `transform` (r_c, r_s, t_x, t_y), [4] or [batch, 4]."""
        scale = self.scale if scale is None else scale
        device = self.pe.device
        transform = transform.to(device=device, dtype=torch.float32).reshape(-1, 4).expand(batch, 4)
        transform = normalised_transform(transform)
        r_c, r_s, t_x, t_y = transform.view(batch, 4, 1, 1).unbind(1)
        pos_w = shifted_positions(width, shift_w, circular, device).view(1, 1, width) - (width - 1) / 2
        pos_h = shifted_positions(height, shift_h, circular, device).view(1, height, 1) - (height - 1) / 2
        coord_x = r_c * pos_w + r_s * pos_h + (width - 1) / 2 - t_x
        coord_y = -r_s * pos_w + r_c * pos_h + (height - 1) / 2 - t_y
        return sinusoidal_encoding(coord_x, coord_y, self.channel, scale)


class PositionalInput(SinusoidalPE):
    """The input of `sspe`/`mspe`: a parameter-free PE replacing the learned constant.

    With a `transform` (r_c, r_s, t_x, t_y) per sample, every channel is sampled on the grid
    rotated about its centre by the angle whose cosine and sine are (r_c, r_s) after
    normalisation, and translated by (t_x, t_y) grid pixels (the Fourier input of the
    alias-free GAN).
    """

    def forward(self, batch, height, width, shift_h=0.0, shift_w=0.0, scale=None, circular=True, transform=None):
        if transform is None:
            return self.encoding(height, width, shift_h, shift_w, scale, circular).expand(batch, -1, -1, -1)
        return self.transformed_encoding(transform, batch, height, width, shift_h, shift_w, scale, circular)


class PositionalAdd(SinusoidalPE):
    """MS-PE: x + gamma * PE, with one learned scalar gamma per resolution. `rotation` (r_c, r_s,
    0, 0), [4] or [N, 4], turns the PE's grid about its centre (a turn of the whole image)."""

    def __init__(self, channel, height, width, scale=1.0):
        super().__init__(channel, height, width, scale)
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, input, shift_h=0.0, shift_w=0.0, scale=None, circular=True, rotation=None):
        if rotation is None:
            pe = self.encoding(*input.shape[-2:], shift_h, shift_w, scale, circular)
        else:
            pe = self.transformed_encoding(rotation, len(input), *input.shape[-2:], shift_h, shift_w, scale, circular)
        return input + (self.gamma * pe).to(input.dtype)


class StyledConv(nn.Module):
    def __init__(
        self,
        in_channel,
        out_channel,
        kernel_size,
        style_dim,
        upsample=False,
        blur_kernel=[1, 3, 3, 1],
        demodulate=True,
        modconv="grouped",
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel,
            out_channel,
            kernel_size,
            style_dim,
            upsample=upsample,
            blur_kernel=blur_kernel,
            demodulate=demodulate,
            modconv=modconv,
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, input, style, noise=None):
        out = self.conv(input, style)
        out = self.noise(out, noise=noise)
        return self.activate(out)


class ToRGB(nn.Module):
    def __init__(self, in_channel, style_dim, upsample=True, blur_kernel=[1, 3, 3, 1], modconv="grouped"):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False, modconv=modconv)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, input, style, skip=None):
        out = self.conv(input, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def mapping_network(style_dim, n_mlp, lr_mlp=0.01):
    """z -> w: pixel norm, then `n_mlp` equalised fully connected layers with leaky ReLU and a
    learning rate `lr_mlp` times the synthesis network's (state dict `style.1` .. `style.n_mlp`)."""
    layers = [PixelNorm()]
    for _ in range(n_mlp):
        layers.append(EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu"))
    return nn.Sequential(*layers)


class MappedGenerator(nn.Module):
    """What the generators of this project share around their mapping network `self.style`:
    sampling w, the truncation centre and the per-layer latents of a forward pass. Subclasses set
    `style`, `style_dim`, `n_latent` and a `device` property."""

    # a truncation centre [style_dim] that came with the weights (NVIDIA's tracked mean of w, the
    # checkpoint's `w_avg`, set by checkpoint.load_generator), used instead of sampled latents
    truncation_centre = None

    def sample_w(self, n, *, seed=None):
        """`n` mapped latents w [n, style_dim] of random z: drawn on the CPU from `seed` (the same
        on every device), or from the global RNG on the model's device when it is None."""
        if seed is None:
            z = torch.randn(n, self.style_dim, device=self.device)
        else:
            z = torch.randn(n, self.style_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
        return self.style(z)

    def mean_latent(self, n_sample, *, seed=None):
        """The mean of `n_sample` mapped latents [1, style_dim]: the centre of truncation."""
        return self.sample_w(n_sample, seed=seed).mean(0, keepdim=True)

    @torch.no_grad()
    def truncation_latent(self, truncation, n_sample=TRUNCATION_MEAN):
        """What the scripts pass as `truncation_latent`: None when `truncation` is 1 (no
        truncation), else `truncation_centre` when the weights came with one, or the mean of
        `n_sample` latents of seed 0, the same in every script."""
        if truncation == 1:
            return None
        if self.truncation_centre is not None:
            return self.truncation_centre.to(self.device).view(1, -1)
        return self.mean_latent(n_sample, seed=0)

    @staticmethod
    def truncate(w, truncation, truncation_latent):
        """StyleGAN's truncation trick: w's offset from the centre `truncation_latent` scaled by
        `truncation`, towards the centre below 1 and away from it above (NVIDIA's psi); w itself,
        exactly, at 1."""
        if truncation == 1:
            return w
        return truncation_latent + truncation * (w - truncation_latent)

    def get_latent(self, input):
        """w [N, style_dim] of z [N, style_dim]: the mapping network (rosinality's name for `style`)."""
        return self.style(input)

    def layer_latents(self, styles, inject_index=None, truncation=1, truncation_latent=None, input_is_latent=False):
        """[N, n_latent, style_dim] latents of a forward pass: `styles` (z, or w when
        `input_is_latent`; [N, style_dim] or per layer [N, n_latent, style_dim]) mapped and
        truncated towards `truncation_latent` (None: the generator's own, `truncation_latent()`);
        two styles mix at `inject_index` (an int or a 0-d tensor; random when None), as StyleGAN2's
        style mixing."""
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if truncation != 1 and truncation_latent is None:
            truncation_latent = self.truncation_latent(truncation)

        styles = [self.truncate(style, truncation, truncation_latent) for style in styles]

        if len(styles) < 2:
            inject_index = self.n_latent
            if styles[0].ndim < 3:
                latent = styles[0].unsqueeze(1).repeat(1, inject_index, 1)
            else:
                latent = styles[0]
        else:
            if inject_index is None:
                inject_index = random.randint(1, self.n_latent - 1)
            # layers below inject_index take the first style: a mask, not a slice, so that a 0-d
            # tensor index (train.py's) traces into one torch.compile graph for every value
            layer = torch.arange(self.n_latent, device=styles[0].device).view(1, -1, 1)
            latent = torch.where(layer < inject_index, styles[0].unsqueeze(1), styles[1].unsqueeze(1))
        return latent


class Generator(MappedGenerator):
    """StyleGAN2 generator with `position` 'none' | 'sspe' | 'mspe' (see the module docstring).

    Keyword-only extras: `affine` (a learned Fourier-feature transform of the input, identity
    at initialisation), `channel_max` (cap on every channel count, for tiny models), `modconv`
    ('grouped': per-sample weights in one grouped convolution, the original; 'plain': scaled
    activations through one shared-weight convolution, the same function and usually faster
    for training batches; weights and state dicts are the same) and `device` (where to put the
    model; the original scripts pass it).

    Subclasses change the image it draws (swagan.py): `output_factor` (output pixels per pixel
    of the last feature map), `make_to_rgb` (the ToRGB layers) and `to_image` (the last ToRGB
    output to the image).
    """

    output_factor = 1
    circular_shifts = True  # shifts wrap around by default (the original); stylegan3.py's cannot

    def __init__(
        self,
        size,
        style_dim,
        n_mlp,
        channel_multiplier=2,
        blur_kernel=[1, 3, 3, 1],
        lr_mlp=0.01,
        position="none",
        kernel_size=3,
        scale=1.0,
        *,
        affine=False,
        channel_max=512,
        modconv="grouped",
        device=None,
    ):
        super().__init__()
        position = canonical_position(position)
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {', '.join(POSITIONS)}, not {position!r}")
        if affine:
            require_positional(position, "affine=True (a learned transform of the input)")
        self.log_size = check_size(size) - int(math.log2(self.output_factor))
        self.size = size
        self.style_dim = style_dim
        self.position = position
        self.scale = scale
        self.affine = affine
        self.channels_last = False  # the synthesis in channels-last order (train.to_channels_last)

        self.style = mapping_network(style_dim, n_mlp, lr_mlp)

        self.channels = channel_counts(channel_multiplier, channel_max)
        if scale != 1:
            require_positional(position, "scale (a finer grid of positions)")
        if position == "none":
            self.input = ConstantInput(self.channels[4])
        else:
            self.input = PositionalInput(self.channels[4], 4, 4, scale)
        if affine:
            self.affine_fourier = identity_affine(style_dim)

        self.conv1 = StyledConv(
            self.channels[4], self.channels[4], kernel_size, style_dim, blur_kernel=blur_kernel, modconv=modconv
        )
        self.to_rgb1 = self.make_to_rgb(self.channels[4], style_dim, upsample=False, modconv=modconv)

        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        if position == "mspe":
            self.pes = nn.ModuleList()

        # stored noise maps have the default canvas and scale; others tile them
        for layer_idx, shape in enumerate(self.noise_shapes(scale=1.0)):
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, *shape))

        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(
                StyledConv(
                    in_channel,
                    out_channel,
                    kernel_size,
                    style_dim,
                    upsample=True,
                    blur_kernel=blur_kernel,
                    modconv=modconv,
                )
            )
            if position == "mspe":
                self.pes.append(PositionalAdd(out_channel, 2**i, 2**i, scale))
            self.convs.append(
                StyledConv(out_channel, out_channel, kernel_size, style_dim, blur_kernel=blur_kernel, modconv=modconv)
            )
            self.to_rgbs.append(self.make_to_rgb(out_channel, style_dim, upsample=True, modconv=modconv))
            in_channel = out_channel

        self.n_latent = self.log_size * 2 - 2
        if device is not None:
            self.to(device)

    @property
    def device(self):
        return self.conv1.conv.weight.device

    def make_to_rgb(self, in_channel, style_dim, upsample, modconv):
        """The ToRGB layer of a resolution (the first has no skip input to upsample)."""
        return ToRGB(in_channel, style_dim, upsample=upsample, modconv=modconv)

    def to_image(self, skip):
        """The image [N, 3, H, W] of the summed ToRGB outputs: StyleGAN2's skip sum is the image."""
        return skip

    def noise_shapes(self, canvas=None, scale=None):
        """(height, width) of every layer's noise map for a canvas and scale (see forward)."""
        grid_h, grid_w = self.input_grid(canvas, scale)
        shapes = [(grid_h, grid_w)]
        for log_res in range(3, self.log_size + 1):
            factor = 2 ** (log_res - 2)
            shapes += [(grid_h * factor, grid_w * factor)] * 2
        return shapes

    def stored_noise(self):
        """The stored noise maps ([1, 1, h, w] per layer; `randomize_noise=False` renders them)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def make_noise(self, batch=1, *, canvas=None, scale=None, rng=None):
        """Fresh noise maps, [batch, 1, h, w] per layer, for a canvas and scale.

        With a torch.Generator `rng` they are drawn from it on its device, so a seed gives the
        same maps on any device; otherwise from the global RNG on the model's device.
        """
        device = rng.device if rng is not None else self.device
        return [
            torch.randn(batch, 1, height, width, generator=rng, device=device)
            for height, width in self.noise_shapes(canvas, scale)
        ]

    def input_grid(self, canvas=None, scale=None):
        """(height, width) of the input feature map for an output canvas and scale."""
        scale = self.scale if scale is None else scale
        height, width = canvas if canvas is not None else (self.size, self.size)
        stride = self.size // 4
        if height < stride or width < stride or height % stride or width % stride:
            raise ValueError(
                f"canvas {height}x{width} must be a positive multiple of {stride} pixels "
                f"(one cell of the 4x4 input grid of a {self.size}px generator)"
            )
        grid_h, grid_w = height // stride * scale, width // stride * scale
        if grid_h != int(grid_h) or grid_w != int(grid_w) or grid_h < 1 or grid_w < 1:
            raise ValueError(
                f"scale {scale} turns the {height // stride}x{width // stride} input grid into "
                f"{grid_h}x{grid_w}; choose a scale that gives whole cells"
            )
        return int(grid_h), int(grid_w)

    @staticmethod
    def rotate_transform(transform, angle):
        """[N, 4] input transforms (r_c, r_s, t_x, t_y) that render the images of `transform`
        turned about the image centre by `angle` (radians): the input is sampled at
        M_t (p - c) + c - t, M_t = [[r_c, r_s], [-r_s, r_c]], and the turn by M_a needs M_t M_a,
        the rotation by the sum of both angles; t stays."""
        cos, sin = math.cos(angle), math.sin(angle)
        r_c, r_s, t_x, t_y = transform.unbind(1)
        return torch.stack([r_c * cos - r_s * sin, r_c * sin + r_s * cos, t_x, t_y], 1)

    def forward(
        self,
        styles,
        return_latents=False,
        inject_index=None,
        truncation=1,
        truncation_latent=None,
        input_is_latent=False,
        noise=None,
        randomize_noise=True,
        shift_h=0,
        shift_w=0,
        *,
        scale=None,
        canvas=None,
        circular=True,
        transform=None,
        rotation=None,
    ):
        """Render images; returns (image [N, 3, H, W], latent or None).

        truncation: StyleGAN's psi, towards `truncation_latent` (default: `truncation_latent()`,
            the mean of mapped latents or the centre the weights brought, computed again on every
            call: pass it when rendering many batches, as the scripts do).
        shift_h, shift_w: move the content by this many output pixels (may be fractional).
        scale: render the same content on a grid `scale` times finer (default: the model's).
        canvas: (height, width) in output pixels, any multiple of size / 4 (default: size).
            At scale s the image is s times larger.
        circular: wrap shifted positions around the canvas (the original); False shifts an
            infinite plane (positional models only).
        transform: (r_c, r_s, t_x, t_y), shape [4] or [N, 4], rotating and translating the
            input PE (positional models only); by default the model's learned `affine`.
        rotation: turn the image by this many radians about its centre (positional models
            only): the input's transform (`transform`, the learned `affine` or the identity) is
            composed with the turn, and MS-PE's added encodings turn with it, so that every
            position the network reads turns, as every one moves under a shift.
        """
        if noise is None:
            if randomize_noise:
                noise = [None] * self.num_layers
            else:
                noise = self.stored_noise()

        latent = self.layer_latents(styles, inject_index, truncation, truncation_latent, input_is_latent)

        batch = latent.shape[0]
        grid_h, grid_w = self.input_grid(canvas, scale)
        input_shift_h, input_shift_w = shift_at(shift_h, self.size, 4), shift_at(shift_w, self.size, 4)
        if self.position == "none":
            if not circular and (shift_h or shift_w):
                require_positional(self.position, "circular=False (an infinite-plane shift)")
            if transform is not None or rotation is not None:
                require_positional(self.position, "transform or rotation (a rotation of the input)")
            if scale not in (None, self.scale):
                require_positional(self.position, "scale (a finer grid of positions)")
            out = self.input(batch, grid_h, grid_w, input_shift_h, input_shift_w)
        else:
            if transform is None and self.affine:
                transform = self.affine_fourier(latent[:, 0])
            pe_rotation = None
            if rotation is not None:
                if transform is None:
                    transform = latent.new_tensor(IDENTITY_TRANSFORM)
                transform = self.rotate_transform(transform.reshape(-1, 4).expand(batch, 4), rotation)
                pe_rotation = latent.new_tensor([math.cos(rotation), math.sin(rotation), 0.0, 0.0])
            out = self.input(batch, grid_h, grid_w, input_shift_h, input_shift_w, scale, circular, transform)
            out = out.to(latent.dtype)
        if self.channels_last:
            # the input is a buffer expanded over the batch, in neither order; every layer after it
            # keeps the order it is given
            out = out.contiguous(memory_format=torch.channels_last)

        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])

        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            out = conv1(out, latent[:, i], noise=noise1)
            if self.position == "mspe":
                resolution = 4 * 2 ** ((i + 1) // 2)
                out = self.pes[(i - 1) // 2](
                    out,
                    shift_at(shift_h, self.size, resolution),
                    shift_at(shift_w, self.size, resolution),
                    scale,
                    circular,
                    pe_rotation,
                )
            out = conv2(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2

        image = self.to_image(skip)
        if return_latents:
            return image, latent
        return image, None


class ConvLayer(nn.Sequential):
    def __init__(
        self, in_channel, out_channel, kernel_size, downsample=False, blur_kernel=[1, 3, 3, 1], bias=True, activate=True
    ):
        layers = []
        if downsample:
            layers.append(Blur(blur_kernel, downsample_padding(len(blur_kernel) + kernel_size - 1, 2)))
            stride = 2
            self.padding = 0
        else:
            stride = 1
            self.padding = kernel_size // 2
        layers.append(
            EqualConv2d(
                in_channel, out_channel, kernel_size, padding=self.padding, stride=stride, bias=bias and not activate
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_channel, out_channel, blur_kernel=[1, 3, 3, 1]):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(
            in_channel, out_channel, 1, downsample=True, blur_kernel=blur_kernel, activate=False, bias=False
        )

    def forward(self, input):
        out = self.conv2(self.conv1(input))
        skip = self.skip(input)
        return (out + skip) / math.sqrt(2)


def minibatch_stddev(out, group_size=4, features=1):
    """StyleGAN's minibatch standard deviation: [N, C, H, W] -> [N, C + features, H, W].

    Samples are split into groups of min(N, group_size) (N must be divisible by it); the extra
    channels hold the standard deviation over each group, averaged over C / features channels
    and all pixels.
    """
    batch, channel, height, width = out.shape
    group = min(batch, group_size)
    if batch % group:
        raise ValueError(f"the discriminator's minibatch-stddev groups need a batch divisible by {group}, got {batch}")
    stddev = out.reshape(group, -1, features, channel // features, height, width)
    stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
    stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)
    stddev = stddev.repeat(group, 1, height, width)
    return torch.cat([out, stddev], 1)


class DiscriminatorEpilogue(nn.Module):
    """What StyleGAN2's discriminators share after their last 4x4 block (NVIDIA's "epilogue"):
    minibatch standard deviation (over groups of 4 in StyleGAN2, of 8 in NVIDIA's FFHQ-U 256 and
    paper256 configs), a 3x3 convolution and two fully connected layers, under rosinality's names
    `final_conv` and `final_linear`."""

    def build_epilogue(self, in_channel, channel, mbstd_group=4):
        """The epilogue's layers for `in_channel` input channels, `channel` wide; the stddev is
        taken over groups of min(batch, mbstd_group) samples."""
        self.stddev_group = mbstd_group
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_channel + 1, channel, 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channel * 4 * 4, channel, activation="fused_lrelu"), EqualLinear(channel, 1)
        )

    def epilogue(self, out):
        """[N, in_channel, 4, 4] features -> [N, 1] scores."""
        out = minibatch_stddev(out, self.stddev_group, self.stddev_feat)
        out = self.final_conv(out)
        out = out.reshape(out.shape[0], -1)  # reshape: channels-last activations are not viewable
        return self.final_linear(out)


class Discriminator(DiscriminatorEpilogue):
    """StyleGAN2 residual discriminator with minibatch standard deviation over groups of
    `mbstd_group` samples."""

    def __init__(self, size, channel_multiplier=2, blur_kernel=[1, 3, 3, 1], *, channel_max=512, mbstd_group=4):
        super().__init__()
        log_size = check_size(size)
        channels = channel_counts(channel_multiplier, channel_max)

        convs = [ConvLayer(3, channels[size], 1)]
        in_channel = channels[size]
        for i in range(log_size, 2, -1):
            out_channel = channels[2 ** (i - 1)]
            convs.append(ResBlock(in_channel, out_channel, blur_kernel))
            in_channel = out_channel
        self.convs = nn.Sequential(*convs)
        self.build_epilogue(in_channel, channels[4], mbstd_group)

    def forward(self, input):
        return self.epilogue(self.convs(input))
