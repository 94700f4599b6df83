"""The alias-free generator of Karras et al., "Alias-Free Generative Adversarial Networks"
(NeurIPS 2021): StyleGAN3-T (translation equivariant) and StyleGAN3-R (also rotation).

The synthesis network treats every feature map as samples of a band-limited continuous signal:

- input: Fourier features sin(2 pi (f . q + phi)) of random frequencies |f| <= first cutoff,
  sampled at the positions q = R (p - s - t) of the output plane (section 3.2 / appendix D.2,
  NVIDIA's convention): p the pixel centres in image units (the output image spans [-1/2, 1/2]),
  R and t a rotation and translation from a learned affine map of w (the identity at
  initialisation) or the caller's `transform`, s the caller's shift; then a learned 1x1 linear
  mixing;
- 14 layers and ToRGB, each: modulated convolution (3x3 for T, 1x1 for R) whose input is
  normalised by a running mean of its magnitude, then `op.filtered_lrelu` (upsample 2x, leaky
  ReLU, low-pass to the layer's cutoff, downsample) with Kaiser-windowed sinc filters
  (scipy.signal.firwin) or, for R, radially symmetric jinc-based downsampling filters;
- cutoffs f_c and stopbands f_t on a geometric schedule from (2, 2^2.1) to (size/2, 2^0.3
  size/2), reached by the last 2 (critically sampled) layers; sampling rates the smallest
  powers of two above 2 f_t; feature maps carry a margin of 10 pixels around the image
  (appendix F); the output is scaled by 0.25;
- no noise inputs; truncation pulls w towards a running mean of w tracked in training (or
  pushes it away, above 1).

The mapping network, the equalised layers and the latent handling are model.py's; the state
dict uses this project's names (README, "The alias-free generator").
"""

import math

import numpy as np
import torch
from torch import nn

from model import (
    TRUNCATION_MEAN,
    EqualLinear,
    MappedGenerator,
    check_size,
    identity_affine,
    mapping_network,
    normalised_transform,
)
from op import conv2d_gradfix, filtered_lrelu

# What the input transform (r_c, r_s, t_x, t_y) means, after normalising (r_c, r_s), recorded in
# every state dict as `input_convention` (a state dict without it is LEGACY_TRANSFORM's):
# - NVIDIA_TRANSFORM, NVIDIA's SynthesisInput: the input is sampled at q = R (p - t) with
#   R = [[r_c, -r_s], [r_s, r_c]] and t in image units, so t moves with the rotated frame;
# - LEGACY_TRANSFORM, this project's learned transforms before it followed NVIDIA: q = R^T p - t / 4
#   (the other rotation, t in quarters of the image and not rotated). No change of the learned
#   affine map's weights turns one into the other (the new t would be R^T t / 4, which depends on
#   the rotation, itself a normalised function of w), so old models keep their formula for the
#   learned transform; a caller's `transform` always means NVIDIA's.
NVIDIA_TRANSFORM = 1
LEGACY_TRANSFORM = 0

# arch -> modulated-convolution kernel, default channel base and max, radial downsampling filters
ARCHS = {
    "stylegan3-t": {"conv_kernel": 3, "channel_base": 32768, "channel_max": 512, "radial": False},
    "stylegan3-r": {"conv_kernel": 1, "channel_base": 65536, "channel_max": 1024, "radial": True},
}


def design_lowpass_filter(taps, cutoff, width, sampling_rate, radial=False):
    """A low-pass FIR filter with DC gain 1, or None (the identity) for a single tap.

    Separable: the 1-D Kaiser-windowed sinc of scipy.signal.firwin, [taps]. Radial: the 2-D
    jinc J1(2 pi f_c r) / (pi r) windowed by the outer product of the same Kaiser window,
    [taps, taps] (StyleGAN3-R's rotation-friendly downsampling filter). `cutoff` and the
    transition band `width` are in cycles per unit at `sampling_rate` samples per unit.
    """
    if taps == 1:
        return None
    # imported here: scipy.signal takes seconds to import, which every script would pay at start
    import scipy.signal
    import scipy.special

    if not radial:
        return torch.as_tensor(scipy.signal.firwin(taps, cutoff, width=width, fs=sampling_rate), dtype=torch.float32)
    x = (np.arange(taps) - (taps - 1) / 2) / sampling_rate
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(taps, width / (sampling_rate / 2)))
    window = np.kaiser(taps, beta)
    f *= np.outer(window, window)
    return torch.as_tensor(f / np.sum(f), dtype=torch.float32)


def layer_schedule(
    size,
    channel_base,
    channel_max,
    num_layers=14,
    num_critical=2,
    first_cutoff=2,
    first_stopband=2**2.1,
    last_stopband_rel=2**0.3,
    margin=10,
):
    """Per layer 0..num_layers (0 is the Fourier input, the last ToRGB): cutoff, stopband,
    sampling rate, transition half-width, feature-map size and channels (numpy arrays).

    The cutoff and stopband grow geometrically until the last `num_critical` layers, which sit
    at the output's Nyquist frequency (paper, figure 4 and appendix F).
    """
    last_cutoff = size / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, size))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin * 2
    sizes[-2:] = size
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = 3
    return {
        "cutoffs": cutoffs,
        "stopbands": stopbands,
        "sampling_rates": sampling_rates,
        "half_widths": half_widths,
        "sizes": sizes.astype(int),
        "channels": channels.astype(int),
    }


def modulated_conv2d(x, weight, styles, demodulate=True, padding=0, input_gain=None):
    """StyleGAN3's modulated convolution, one grouped convolution for the batch.

    Args:
        x: [N, I, H, W]; weight: [O, I, k, k]; styles: [N, I].
        demodulate: normalise weights and styles first (for fp16 range), then scale every
            output channel to unit expected variance (StyleGAN2's demodulation).
        input_gain: [] or [N, I] scale of the input channels (the magnitude normalisation).
    Returns:
        [N, O, H + 2 padding - k + 1, W + 2 padding - k + 1].
    """
    batch, in_channels = styles.shape
    out_channels, _, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight.unsqueeze(0) * styles.view(batch, 1, in_channels, 1, 1)
    if demodulate:
        w = w * (w.square().sum([2, 3, 4]) + 1e-8).rsqrt().view(batch, out_channels, 1, 1, 1)
    if input_gain is not None:
        w = w * input_gain.expand(batch, in_channels).view(batch, 1, in_channels, 1, 1)
    x = x.reshape(1, batch * in_channels, *x.shape[2:])
    out = conv2d_gradfix.conv2d(
        x, w.reshape(batch * out_channels, in_channels, kh, kw).to(x.dtype), padding=padding, groups=batch
    )
    return out.reshape(batch, out_channels, *out.shape[2:])


class FourierInput(nn.Module):
    """Fourier features on a `size` x `size` grid at `sampling_rate` samples per image unit.

    `freqs` [C, 2] (cycles per unit, radii up to `bandwidth`) and `phases` [C] are drawn once
    and stored; `weight` [C, C] mixes the features (learned).
    """

    def __init__(self, channels, size, sampling_rate, bandwidth):
        super().__init__()
        self.channels, self.size, self.sampling_rate, self.bandwidth = channels, size, sampling_rate, bandwidth
        freqs = torch.randn(channels, 2)
        radii = freqs.square().sum(1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand(channels) - 0.5)
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.register_buffer("centres", self.pixel_centres(size), persistent=False)

    def pixel_centres(self, count, device=None):
        """Positions (image units) of `count` samples along an axis: the model's own grid centres
        the image on 0; a longer one (a larger canvas) extends it to the right or bottom."""
        return (torch.arange(count, dtype=torch.float32, device=device) + 0.5 - self.size / 2) / self.sampling_rate

    def forward(self, rotation, offset, height=None, width=None):
        """Features [N, C, height, width] (default size x size) at q = rotation p - offset.

        rotation: [N, 2, 2] acting on the column vector p = (x, y) of image units; offset: [N, 2]
        in image units (AliasFreeGenerator.input_frame makes both).
        """
        # f . q = (f rotation) . p - f . offset: rotate the frequencies, move the phases. A rotation
        # keeps every |f| within the bandwidth, so NVIDIA's damping of out-of-band frequencies
        # (for user transforms that scale) has nothing to do here.
        freqs = self.freqs @ rotation  # [N, C, 2]
        phases = self.phases - offset @ self.freqs.t()  # [N, C]
        height, width = height or self.size, width or self.size
        centres_x = self.centres if width == self.size else self.pixel_centres(width, self.centres.device)
        centres_y = self.centres if height == self.size else self.pixel_centres(height, self.centres.device)
        along_x = freqs[:, :, 0, None, None] * centres_x.view(1, 1, 1, -1)
        along_y = freqs[:, :, 1, None, None] * centres_y.view(1, 1, -1, 1)
        features = torch.sin((along_x + along_y + phases[:, :, None, None]) * (2 * math.pi))
        return torch.einsum("nchw,oc->nohw", features, self.weight / math.sqrt(self.channels))


class AliasFreeLayer(nn.Module):
    """One synthesis layer: magnitude-normalised modulated convolution, then filtered leaky ReLU
    from (in_size, in_rate, in_cutoff) to (out_size, out_rate, out_cutoff).

    ToRGB (`to_rgb`) is a 1x1 unnormalised modulated convolution with a bias, no filtering and
    no nonlinearity.
    """

    def __init__(
        self,
        style_dim,
        in_channels,
        out_channels,
        in_size,
        out_size,
        in_rate,
        out_rate,
        in_cutoff,
        out_cutoff,
        in_half_width,
        out_half_width,
        *,
        to_rgb=False,
        critically_sampled=False,
        conv_kernel=3,
        radial=False,
        filter_size=6,
        lrelu_upsampling=2,
        conv_clamp=256,
        magnitude_ema_beta=0.999,
    ):
        super().__init__()
        self.to_rgb = to_rgb
        self.conv_kernel = 1 if to_rgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta
        self.in_channels, self.out_channels, self.out_size = in_channels, out_channels, out_size
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, self.conv_kernel, self.conv_kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))

        # the nonlinearity runs at lrelu_upsampling x the higher of both rates (not for ToRGB)
        tmp_rate = max(in_rate, out_rate) * (1 if to_rgb else lrelu_upsampling)
        self.up = int(round(tmp_rate / in_rate))
        self.down = int(round(tmp_rate / out_rate))
        up_taps = filter_size * self.up if self.up > 1 and not to_rgb else 1
        down_taps = filter_size * self.down if self.down > 1 and not to_rgb else 1
        up_filter = design_lowpass_filter(up_taps, in_cutoff, in_half_width * 2, tmp_rate)
        down_filter = design_lowpass_filter(
            down_taps, out_cutoff, out_half_width * 2, tmp_rate, radial=radial and not critically_sampled
        )
        self.register_buffer("up_filter", up_filter, persistent=False)
        self.register_buffer("down_filter", down_filter, persistent=False)

        # pad so that the output has out_size samples whose centres line up with the input's
        # (the symmetric interpretation of the paper's appendix C.3)
        pad_total = (
            (out_size - 1) * self.down + 1 - (in_size + self.conv_kernel - 1) * self.up + up_taps + down_taps - 2
        )
        pad_lo = (pad_total + self.up) // 2
        self.padding = (pad_lo, pad_total - pad_lo, pad_lo, pad_total - pad_lo)

    def extra_repr(self):
        return (
            f"{self.in_channels}, {self.out_channels}, size={self.out_size}, kernel={self.conv_kernel}, "
            f"up={self.up}, down={self.down}, to_rgb={self.to_rgb}"
        )

    def forward(self, x, style):
        # the alias-free GAN's input normalisation: the input is divided by the running RMS of its
        # values, tracked by every training-mode pass (NVIDIA's: the discriminator phase's only;
        # with beta 0.999 that matters little)
        if self.training:
            with torch.no_grad():
                magnitude = x.detach().float().square().mean()
                self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        styles = self.modulation(style)
        if self.to_rgb:
            styles = styles / math.sqrt(self.in_channels * self.conv_kernel**2)
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            demodulate=not self.to_rgb,
            padding=self.conv_kernel - 1,
            input_gain=self.magnitude_ema.rsqrt(),
        )
        gain, slope = (1.0, 1.0) if self.to_rgb else (math.sqrt(2), 0.2)
        return filtered_lrelu(
            x,
            self.up_filter,
            self.down_filter,
            self.bias,
            self.up,
            self.down,
            self.padding,
            gain,
            slope,
            self.conv_clamp,
        )


class AliasFreeGenerator(MappedGenerator):
    """StyleGAN3-T or -R (`arch`), called like model.Generator (see forward).

    Args:
        size: output resolution (a power of two); style_dim: dimension of z and w; n_mlp:
            layers of the mapping network (the paper's configs use 2); lr_mlp: its learning
            rate multiplier.
        arch: 'stylegan3-t' (3x3 convolutions, channel base 32768, max 512) or 'stylegan3-r'
            (1x1 convolutions, radial filters, base 65536, max 1024).
        channel_base, channel_max: channels of a layer of cutoff f_c are
            min(channel_base / 2 / f_c, channel_max); None takes the arch's.
        num_layers, num_critical, first_cutoff, first_stopband, last_stopband_rel, margin,
        output_scale: the paper's synthesis schedule (defaults: 14, 2, 2, 2^2.1, 2^0.3, 10, 0.25).
        magnitude_ema_beta: decay of the running input magnitudes; w_avg_beta: of the running
            mean of w (the truncation centre).
    """

    position = "fourier"  # an input that can be shifted and rotated (evaluation/equivariance.py asks)
    affine = True  # the learned input transform is `affine_fourier`
    circular_shifts = False  # shifts move an infinite plane; they cannot wrap around

    def __init__(
        self,
        size,
        style_dim,
        n_mlp,
        *,
        arch="stylegan3-t",
        channel_base=None,
        channel_max=None,
        lr_mlp=0.01,
        num_layers=14,
        num_critical=2,
        first_cutoff=2,
        first_stopband=2**2.1,
        last_stopband_rel=2**0.3,
        margin=10,
        output_scale=0.25,
        magnitude_ema_beta=0.999,
        w_avg_beta=0.998,
        device=None,
    ):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, not {arch!r}")
        check_size(size)
        settings = ARCHS[arch]
        self.arch, self.size, self.style_dim = arch, size, style_dim
        self.output_scale, self.w_avg_beta = output_scale, w_avg_beta
        self.n_latent = num_layers + 2  # the input's transform, then one per layer and ToRGB

        self.style = mapping_network(style_dim, n_mlp, lr_mlp)
        self.register_buffer("w_avg", torch.zeros(style_dim))
        self.register_buffer("input_convention", torch.tensor(NVIDIA_TRANSFORM))
        self.legacy_transform = False  # follows input_convention (_load_from_state_dict)
        self.affine_fourier = identity_affine(style_dim)

        self.schedule = layer_schedule(
            size,
            channel_base or settings["channel_base"],
            channel_max or settings["channel_max"],
            num_layers,
            num_critical,
            first_cutoff,
            first_stopband,
            last_stopband_rel,
            margin,
        )
        cutoffs, rates, widths = self.schedule["cutoffs"], self.schedule["sampling_rates"], self.schedule["half_widths"]
        sizes, channels = self.schedule["sizes"], self.schedule["channels"]
        self.input = FourierInput(int(channels[0]), int(sizes[0]), float(rates[0]), float(cutoffs[0]))
        self.layers = nn.ModuleList()
        for index in range(num_layers + 1):
            previous = max(index - 1, 0)
            self.layers.append(
                AliasFreeLayer(
                    style_dim,
                    int(channels[previous]),
                    int(channels[index]),
                    int(sizes[previous]),
                    int(sizes[index]),
                    int(rates[previous]),
                    int(rates[index]),
                    float(cutoffs[previous]),
                    float(cutoffs[index]),
                    float(widths[previous]),
                    float(widths[index]),
                    to_rgb=index == num_layers,
                    critically_sampled=index >= num_layers - num_critical,
                    conv_kernel=settings["conv_kernel"],
                    radial=settings["radial"],
                    magnitude_ema_beta=magnitude_ema_beta,
                )
            )
        if device is not None:
            self.to(device)

    @property
    def device(self):
        return self.w_avg.device

    def make_noise(self, batch=1, *, canvas=None, scale=None, rng=None):
        """No noise inputs: an empty list of maps (what the scripts pass back as `noise`)."""
        self.input_grid(canvas, scale)
        return []

    def input_grid(self, canvas=None, scale=None):
        """(height, width) of the Fourier input for an output canvas (default: size x size).

        A canvas extends the plane to the right and below the image, which stays its top-left
        corner: every feature map grows by the canvas's extra pixels at its own sampling rate,
        and the layers' paddings do not change. Other scales do not exist (the filters are
        designed for the model's sampling rates).
        """
        if scale not in (None, 1):
            raise ValueError(f"the {self.arch} generator renders at its own scale only (scale 1, not {scale})")
        if canvas is None:
            return self.input.size, self.input.size
        stride = self.size // int(self.input.sampling_rate)
        if any(side % stride or side < self.size for side in canvas):
            raise ValueError(
                f"canvas {canvas[0]}x{canvas[1]}: the {self.arch} generator renders canvases of at least "
                f"{self.size} pixels a side in multiples of {stride} (one sample of its Fourier input)"
            )
        margin = self.input.size - int(self.input.sampling_rate)
        return tuple(int(side // stride + margin) for side in canvas)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a state dict saved before input_convention existed holds a LEGACY_TRANSFORM model
        key = prefix + "input_convention"
        if key not in state_dict:
            state_dict[key] = torch.tensor(LEGACY_TRANSFORM)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.legacy_transform = int(state_dict[key]) == LEGACY_TRANSFORM

    def input_frame(self, transform, shift, legacy=False):
        """(rotation [N, 2, 2], offset [N, 2]): the input samples q = rotation p - offset.

        transform: [N, 4] (r_c, r_s, t_x, t_y), normalised here; NVIDIA's meaning, or
        LEGACY_TRANSFORM's when `legacy`. shift: (x, y) in image units, the content's move.
        """
        transform = transform.float()
        transform = normalised_transform(transform)
        r_c, r_s, t_x, t_y = transform.unbind(1)
        shift = transform.new_tensor(shift).view(1, 2, 1)
        if legacy:  # q = R^T (p - s) - t / 4, computed as it always was (bit-exact renders)
            rotation = torch.stack([torch.stack([r_c, r_s], 1), torch.stack([-r_s, r_c], 1)], 1)
            return rotation, (rotation @ shift).squeeze(2) + torch.stack([t_x, t_y], 1) / 4
        rotation = torch.stack([torch.stack([r_c, -r_s], 1), torch.stack([r_s, r_c], 1)], 1)
        return rotation, (rotation @ (shift + torch.stack([t_x, t_y], 1).unsqueeze(2))).squeeze(2)

    def input_transform(self, latent):
        """[N, 4] normalised transform (r_c, r_s, t_x, t_y), NVIDIA's meaning, that the learned
        affine map gives the first latent [N, style_dim]: what `transform` must be to render as
        without it (a LEGACY_TRANSFORM model's converted, equal up to rounding)."""
        transform = self.affine_fourier(latent)
        r_c, r_s, t_x, t_y = normalised_transform(transform).unbind(1)
        if not self.legacy_transform:
            return torch.stack([r_c, r_s, t_x, t_y], 1)
        # R = [[r_c, r_s], [-r_s, r_c]] and t' = R^T t / 4 give the legacy q = R p - t / 4
        return torch.stack([r_c, -r_s, (r_c * t_x - r_s * t_y) / 4, (r_s * t_x + r_c * t_y) / 4], 1)

    @staticmethod
    def rotate_transform(transform, angle):
        """[N, 4] normalised transforms (NVIDIA's meaning) that render the images of `transform`
        turned about the image centre by `angle` (radians): out(p) = image(M p) with
        M = [[cos, sin], [-sin, cos]] in (x right, y down) image units. The new frame is R M,
        and t turns with it: t' = M^T t."""
        cos, sin = math.cos(angle), math.sin(angle)
        r_c, r_s, t_x, t_y = transform.unbind(1)
        rotated = [r_c * cos + r_s * sin, r_s * cos - r_c * sin, cos * t_x - sin * t_y, sin * t_x + cos * t_y]
        return torch.stack(rotated, 1)

    @torch.no_grad()
    def truncation_latent(self, truncation, n_sample=TRUNCATION_MEAN):
        """None when `truncation` is 1, else the running mean of w tracked in training [1, style_dim]
        (`n_sample` is not used: the mean is the model's own)."""
        return None if truncation == 1 else self.w_avg.unsqueeze(0)

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
        """Render images; returns (image [N, 3, size, size], latent [N, n_latent, style_dim] or None).

        As model.Generator.forward, except: there is no noise (`noise` must be None or empty;
        `randomize_noise` is ignored); shifts move the infinite plane of the Fourier input by
        (shift_h, shift_w) output pixels and need `circular=False`; `transform` (r_c, r_s, t_x,
        t_y), [4] or [N, 4], replaces the learned affine transform of the input, with the meaning
        of NVIDIA's: the input is sampled at q = R (p - s - t), R = [[r_c, -r_s], [r_s, r_c]]
        after normalising (r_c, r_s), p the pixel centres and t in image units (the image spans
        one unit), s the shift; `truncation_latent` defaults to the tracked mean of w; `canvas` (h, w):
        at least the image, in multiples of size / 16, extending the plane right and down
        (`input_grid`); no other scale; `rotation` (radians) turns the image about its centre,
        composed with `transform` or the learned one (`rotate_transform`).
        """
        if noise:
            raise ValueError(f"the {self.arch} generator has no noise inputs: pass noise=None")
        grid_h, grid_w = self.input_grid(canvas, scale)
        if circular and (shift_h or shift_w):
            raise ValueError(
                f"the {self.arch} generator's input is an infinite plane of Fourier features, so a shift cannot "
                "wrap around: pass circular=False (generate.py --plane, metrics.py eqt --no_circular)"
            )
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
            if self.training:  # the truncation centre follows the w of training
                with torch.no_grad():
                    self.w_avg.copy_(styles[0].detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        latent = self.layer_latents(styles, inject_index, truncation, truncation_latent, input_is_latent=True)

        if rotation is not None:
            if transform is None:
                transform = self.input_transform(latent[:, 0])
            transform = self.rotate_transform(
                transform.to(latent.device).reshape(-1, 4).expand(len(latent), 4), rotation
            )
        legacy = transform is None and self.legacy_transform
        if transform is None:
            transform = self.affine_fourier(latent[:, 0])
        transform = transform.to(latent.device).reshape(-1, 4).expand(latent.shape[0], 4)
        rotation, offset = self.input_frame(transform, (shift_w / self.size, shift_h / self.size), legacy)
        x = self.input(rotation, offset, grid_h, grid_w)
        for index, layer in enumerate(self.layers):
            x = layer(x, latent[:, index + 1])
        image = x * self.output_scale
        return image, (latent if return_latents else None)
