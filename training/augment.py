"""Adaptive discriminator augmentation (ADA; Karras et al., "Training Generative Adversarial
Networks with Limited Data", NeurIPS 2020): the 'bgc' pipeline, built on this project's op/.

Every image of a batch gets its own random transform. Each of the twelve transforms below is
applied to an image with probability p (the two arbitrary rotations with 1 - sqrt(1 - p), so
that their combination is applied with probability p):

    geometric (one 3x3 matrix per image): x-flip, rotation by a multiple of 90 degrees, integer
        translation, isotropic scaling, rotation, anisotropic scaling, rotation, fractional
        translation;
    colour (one 4x4 matrix per image on [r, g, b, 1]): brightness, contrast, luma flip, hue
        rotation, saturation.

The geometric matrix is applied without leaking aliasing into the augmented images: reflect
padding, 2x upsampling with the symlet-6 lowpass filter (op.upfirdn2d), bilinear resampling
(F.affine_grid + op.grid_sample), 2x downsampling with the same filter, crop. All of it is
differentiable with respect to the images (and twice, for R1 through augmented reals), so it
is used on the generator's images in the generator step too.

`AdaptiveAugment` holds p and tunes it from the sign of the discriminator's outputs on real
images: p rises while more than `target` of them are positive (the discriminator overfits),
falls otherwise.
"""

import math

import torch
from torch.nn import functional as F

from op import grid_sample, upfirdn2d
from training import distributed

# Lowpass decomposition filter of the symlet-6 wavelet (12 taps): the antialiasing filter ADA
# uses around its geometric resampling. Normalised to unit sum in `_lowpass`.
SYM6 = (
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
)

# Strengths of the 'bgc' pipeline (StyleGAN2-ADA's defaults).
INTEGER_TRANSLATE_MAX = 0.125  # fraction of the image size, uniform
SCALE_STD = 0.2  # log2 of the isotropic scale factor, normal
ROTATE_MAX = 1.0  # fraction of a half turn, uniform
ANISO_STD = 0.2  # log2 of the anisotropic scale factor, normal
FRACTIONAL_TRANSLATE_STD = 0.125  # fraction of the image size, normal
BRIGHTNESS_STD = 0.2  # additive, normal
CONTRAST_STD = 0.5  # log2 of the contrast factor, normal
HUE_MAX = 1.0  # fraction of a half turn, uniform
SATURATION_STD = 1.0  # log2 of the saturation factor, normal


# ---------------------------------------------------------------------------------------------
# batched homogeneous matrices


def _matrix(rows, batch, device):
    """[batch, n, n] matrix from n rows of n entries, each a number or a [batch] tensor."""
    entries = [
        entry.to(device=device, dtype=torch.float32)
        if torch.is_tensor(entry)
        else torch.full((batch,), float(entry), device=device)
        for row in rows
        for entry in row
    ]
    size = len(rows)
    return torch.stack(entries, dim=1).view(batch, size, size)


def translate2d(t_x, t_y, batch, device):
    return _matrix([[1, 0, t_x], [0, 1, t_y], [0, 0, 1]], batch, device)


def scale2d(s_x, s_y, batch, device):
    return _matrix([[s_x, 0, 0], [0, s_y, 0], [0, 0, 1]], batch, device)


def rotate2d(theta, batch, device):
    cos, sin = torch.cos(theta), torch.sin(theta)
    return _matrix([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], batch, device)


def translate3d(t_x, t_y, t_z, batch, device):
    return _matrix([[1, 0, 0, t_x], [0, 1, 0, t_y], [0, 0, 1, t_z], [0, 0, 0, 1]], batch, device)


def scale3d(s_x, s_y, s_z, batch, device):
    return _matrix([[s_x, 0, 0, 0], [0, s_y, 0, 0], [0, 0, s_z, 0], [0, 0, 0, 1]], batch, device)


def rotate3d(axis, theta, batch, device):
    """Rotation by `theta` about the unit vector `axis` (Rodrigues' formula)."""
    v_x, v_y, v_z = axis
    cos, sin = torch.cos(theta), torch.sin(theta)
    c = 1 - cos
    return _matrix(
        [
            [v_x * v_x * c + cos, v_x * v_y * c - v_z * sin, v_x * v_z * c + v_y * sin, 0],
            [v_y * v_x * c + v_z * sin, v_y * v_y * c + cos, v_y * v_z * c - v_x * sin, 0],
            [v_z * v_x * c - v_y * sin, v_z * v_y * c + v_x * sin, v_z * v_z * c + cos, 0],
            [0, 0, 0, 1],
        ],
        batch,
        device,
    )


def _gate(values, probability, identity):
    """Per image: `values` with probability `probability`, else `identity` (the no-op value)."""
    applied = torch.rand(values.shape[0], device=values.device) < probability
    applied = applied.view(-1, *([1] * (values.ndim - 1)))
    return torch.where(applied, values, torch.full_like(values, identity))


# ---------------------------------------------------------------------------------------------
# sampling the transforms


def sample_geometric(p, batch, height, width, device):
    """[batch, 3, 3] inverse transforms (output pixel -> input pixel, origin at the centre)."""
    inverse = torch.eye(3, device=device).repeat(batch, 1, 1)

    flip = _gate(torch.randint(0, 2, (batch,), device=device).float(), p, 0)
    inverse = inverse @ scale2d(1 - 2 * flip, 1, batch, device)

    # any of the four, as NVIDIA's; rosinality's non_leaking.py draws from the categories (0, 3),
    # so that it turns by 0 or 270 degrees only
    quarter_turns = _gate(torch.randint(0, 4, (batch,), device=device).float(), p, 0)
    inverse = inverse @ rotate2d(math.pi / 2 * quarter_turns, batch, device)

    shift = _gate((torch.rand(batch, 2, device=device) * 2 - 1) * INTEGER_TRANSLATE_MAX, p, 0)
    shift_x, shift_y = torch.round(shift[:, 0] * width), torch.round(shift[:, 1] * height)
    inverse = inverse @ translate2d(-shift_x, -shift_y, batch, device)

    scale = _gate(torch.exp2(torch.randn(batch, device=device) * SCALE_STD), p, 1)
    inverse = inverse @ scale2d(1 / scale, 1 / scale, batch, device)

    # two rotations, each with this probability, make one rotation with probability p
    p_rotate = 1 - math.sqrt(max(1 - p, 0))
    theta = _gate((torch.rand(batch, device=device) * 2 - 1) * math.pi * ROTATE_MAX, p_rotate, 0)
    inverse = inverse @ rotate2d(theta, batch, device)

    aniso = _gate(torch.exp2(torch.randn(batch, device=device) * ANISO_STD), p, 1)
    inverse = inverse @ scale2d(1 / aniso, aniso, batch, device)

    theta = _gate((torch.rand(batch, device=device) * 2 - 1) * math.pi * ROTATE_MAX, p_rotate, 0)
    inverse = inverse @ rotate2d(theta, batch, device)

    shift = _gate(torch.randn(batch, 2, device=device) * FRACTIONAL_TRANSLATE_STD, p, 0)
    inverse = inverse @ translate2d(-shift[:, 0] * width, -shift[:, 1] * height, batch, device)
    return inverse


def sample_color(p, batch, device):
    """[batch, 4, 4] colour transforms acting on [r, g, b, 1] (images in [-1, 1])."""
    color = torch.eye(4, device=device).repeat(batch, 1, 1)

    brightness = _gate(torch.randn(batch, device=device) * BRIGHTNESS_STD, p, 0)
    color = translate3d(brightness, brightness, brightness, batch, device) @ color

    contrast = _gate(torch.exp2(torch.randn(batch, device=device) * CONTRAST_STD), p, 1)
    color = scale3d(contrast, contrast, contrast, batch, device) @ color

    luma_axis = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device) / math.sqrt(3)
    luma_outer = torch.outer(luma_axis, luma_axis)
    eye = torch.eye(4, device=device)

    flip = _gate(torch.randint(0, 2, (batch,), device=device).float(), p, 0)
    color = (eye - 2 * luma_outer * flip.view(-1, 1, 1)) @ color

    theta = _gate((torch.rand(batch, device=device) * 2 - 1) * math.pi * HUE_MAX, p, 0)
    axis = (1 / math.sqrt(3),) * 3
    color = rotate3d(axis, theta, batch, device) @ color

    saturation = _gate(torch.exp2(torch.randn(batch, device=device) * SATURATION_STD), p, 1)
    color = (luma_outer + (eye - luma_outer) * saturation.view(-1, 1, 1)) @ color
    return color


# ---------------------------------------------------------------------------------------------
# applying them


def _lowpass(device):
    taps = torch.tensor(SYM6, device=device)
    taps = taps / taps.sum()
    return torch.outer(taps, taps)


def apply_geometric(images, inverse):
    """Resample `images` [N, C, H, W] at inverse(output pixel), without aliasing.

    `inverse`: [N, 3, 3] in pixel units with the origin at the image centre.
    """
    batch, channel, height, width = images.shape
    device = images.device
    kernel = _lowpass(device)
    kernel_pad = kernel.shape[0] // 4  # the filter's reach, in pixels of the input

    # Reflect-pad enough that every output pixel (plus the filter's reach) samples real content.
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    corners = torch.tensor(
        [[-centre_x, -centre_y, 1], [centre_x, -centre_y, 1], [centre_x, centre_y, 1], [-centre_x, centre_y, 1]],
        device=device,
    )
    corners = inverse @ corners.t()  # [N, xyz, corner]
    reach = corners[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N * corner]
    margin = torch.cat([-reach, reach]).max(dim=1).values  # [x0, y0, x1, y1] from the centre
    margin = margin + torch.tensor([kernel_pad * 2 - centre_x, kernel_pad * 2 - centre_y] * 2, device=device)
    limit = torch.tensor([width - 1, height - 1] * 2, device=device)  # reflect padding's maximum
    pad_x0, pad_y0, pad_x1, pad_y1 = margin.clamp(min=0).minimum(limit).ceil().int().tolist()
    images = F.pad(images, [pad_x0, pad_x1, pad_y0, pad_y1], mode="reflect")
    inverse = translate2d((pad_x0 - pad_x1) / 2, (pad_y0 - pad_y1) / 2, batch, device) @ inverse

    # 2x upsampling (convolution with the filter, gain 4 for the inserted zeros)
    taps = kernel.shape[0]
    images = upfirdn2d(images, kernel * 4, up=2, pad=((taps + 1) // 2, (taps - 2) // 2))
    two = scale2d(2, 2, batch, device)
    half = scale2d(0.5, 0.5, batch, device)
    inverse = two @ inverse @ half
    # pixel centres of the 2x grid sit half a (fine) pixel off those of the coarse grid
    inverse = translate2d(-0.5, -0.5, batch, device) @ inverse @ translate2d(0.5, 0.5, batch, device)

    # Resample onto the padded output grid; affine_grid works in [-1, 1] coordinates.
    out_height, out_width = (height + kernel_pad * 2) * 2, (width + kernel_pad * 2) * 2
    to_input = scale2d(2 / images.shape[3], 2 / images.shape[2], batch, device)
    from_output = scale2d(out_width / 2, out_height / 2, batch, device)
    inverse = to_input @ inverse @ from_output
    out_shape = [batch, channel, out_height, out_width]
    grid = F.affine_grid(inverse[:, :2, :].to(images.dtype), out_shape, align_corners=False)
    images = grid_sample(images, grid)

    # 2x downsampling (correlation with the filter), cropping the padding
    crop = kernel_pad * 2
    return upfirdn2d(images, torch.flip(kernel, [0, 1]), down=2, pad=((taps - 1) // 2 - crop, (taps - 2) // 2 - crop))


def apply_color(images, color):
    """Multiply every pixel [r, g, b, 1] of `images` [N, 3, H, W] by its image's 4x4 matrix."""
    batch, channel, height, width = images.shape
    color = color.to(images.dtype)
    out = color[:, :3, :3] @ images.reshape(batch, channel, height * width) + color[:, :3, 3:]
    return out.reshape(batch, channel, height, width)


def augment(images, p):
    """The 'bgc' augmentation of `images` [N, 3, H, W] in [-1, 1], each transform with probability `p`.

    p = 0 returns `images` itself; otherwise a float32 batch of the same shape. Differentiable
    with respect to `images`.
    """
    if p <= 0:
        return images
    images = images.float()  # resampling and colour matrices in float32, also under autocast
    batch, _, height, width = images.shape
    images = apply_geometric(images, sample_geometric(p, batch, height, width, images.device))
    return apply_color(images, sample_color(p, batch, images.device))


class AdaptiveAugment:
    """The augmentation probability p of ADA, tuned from the discriminator's outputs on reals.

    `tune(real_pred)` once per discriminator step. After every `update_every` real images
    (summed over all ranks), r_t = mean(sign(real_pred)) over them; p moves by
    images / `length` towards more augmentation while r_t > `target`, towards less otherwise,
    and stays within [0, 1] (rosinality's AdaptiveAugment, which counts its update_every in calls
    of `tune` instead; its train.py passes 8, not its --ada_every: for a constant B real images
    per step over all ranks, update_every = 8 B here moves p as it does). The signs are summed
    on the device; the host reads them once per update, not once per step. With
    `adaptive=False`, p stays fixed (train.py's --augment_p) and `tune` does nothing.
    """

    def __init__(self, target=0.6, length=500_000, update_every=256, p=0.0, adaptive=True):
        self.adaptive = adaptive
        self.target = target
        self.length = length
        self.update_every = update_every
        self.p = float(p)
        self.r_t = 0.0
        self.sign_sum = None
        self.count = 0

    def tune(self, real_pred):
        """Account for one batch of real predictions; returns the (possibly updated) p."""
        if not self.adaptive:
            return self.p
        signs = torch.sign(real_pred.detach().float()).sum()
        self.sign_sum = signs if self.sign_sum is None else self.sign_sum + signs
        self.count += real_pred.shape[0] * distributed.get_world_size()
        if self.count >= self.update_every:
            self.r_t = distributed.reduce_sum(self.sign_sum).item() / self.count
            direction = 1 if self.r_t > self.target else -1
            self.p = min(1.0, max(0.0, self.p + direction * self.count / self.length))
            self.sign_sum, self.count = None, 0
        return self.p

    def state_dict(self):
        """p and the signs counted towards the next update (this rank's), for an exact resume."""
        sign_sum = None if self.sign_sum is None else self.sign_sum.detach().cpu()
        return {"p": self.p, "r_t": self.r_t, "sign_sum": sign_sum, "count": self.count}

    def load_state_dict(self, state, device):
        self.p, self.r_t, self.count = float(state["p"]), float(state["r_t"]), int(state["count"])
        self.sign_sum = None if state["sign_sum"] is None else state["sign_sum"].to(device)
