"""Metrics of spatial bias: equivariance (EQ-T, EQ-R), FID, SWD and the spatial-bias report.

One command line for all of them (`python metrics.py COMMAND --help` for the options):

    python metrics.py eqt --ckpt CKPT [CKPT ...]              EQ-T, integer and fractional (dB)
    python metrics.py eqr --ckpt CKPT [CKPT ...]              EQ-R (dB), positional models only
    python metrics.py swd --ckpt CKPT --path LMDB              sliced Wasserstein distance (x 1e3)
    python metrics.py fid --ckpt CKPT --inception WEIGHTS (--path LMDB | --real_stats FILE)
    python metrics.py inception --inception WEIGHTS --path LMDB --size SIZE   cache real statistics
    python metrics.py report --ckpt A.pt B.pt --path LMDB [--inception WEIGHTS]

Equivariance follows the alias-free GAN (Karras et al. 2021, metrics/equivariance.py of
NVlabs/stylegan3): the PSNR, with pixel range [-1, 1] and so peak 2, between "render with the
input transformed" and "transform the rendered image", summed over all samples before one PSNR
is taken. In this project a shift moves the content by +shift output pixels (SPEC section 4), and
the default shift is circular, so the reference translation is circular too: a roll for whole
pixels, an exact Fourier phase shift for fractions, the whole image valid. `--no_circular` shifts
an infinite plane instead (positional models) and compares with StyleGAN3's zero-filled and
Lanczos-sinc translations over the region valid in both. Both renders of a pair use the same
noise (by default the model's stored maps), which stays put while the content moves.
"""

import argparse
import csv
import json
import math
import os
import sys
import warnings

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from scipy import linalg
from torch import nn
from torch.nn import functional as F
from torchvision import transforms
from torchvision.models import inception as tv_inception
from tqdm import tqdm

from dataset import MultiResolutionDataset
from op import upfirdn2d
from utils import choose_device, load_generator, make_grid, resolve_checkpoint, to_pil

NOISE_MODES = ("const", "random", "zero")


# ---------------------------------------------------------------------------------------------
# sampling


def module_device(module):
    """The device of a module's first parameter or buffer."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def noise_inputs(generator, batch, mode, rng):
    """Keyword arguments of Generator.forward that fix the per-layer noise of one batch.

    Both renders of an equivariance pair get the same noise, as in StyleGAN3 ('const' noise).
    mode: 'const' uses the generator's stored noise maps (randomize_noise=False); 'random' draws
    fresh maps per batch from `rng`; 'zero' switches noise off, which leaves the part of the
    image that the noise does not decide (noise maps sit still in output pixels when the
    content moves, so they are never equivariant).
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"noise must be one of {', '.join(NOISE_MODES)}, not {mode!r}")
    if mode == "const":
        return {"randomize_noise": False}
    device = module_device(generator)
    shapes = [getattr(generator.noises, f"noise_{i}").shape[-2:] for i in range(generator.num_layers)]
    if mode == "zero":
        return {"noise": [torch.zeros(batch, 1, *shape, device=device) for shape in shapes]}
    return {"noise": [torch.randn(batch, 1, *shape, generator=rng).to(device) for shape in shapes]}


def batch_sizes(total, batch):
    """Sizes of the batches that make up `total` samples."""
    return [min(batch, total - start) for start in range(0, total, batch)]


# ---------------------------------------------------------------------------------------------
# translating images


def translate_axis(images, shift, dim, circular):
    """Move content `shift` whole pixels along `dim`: out[i] = images[i - shift].

    Returns (moved, valid): circular moves wrap around and keep every pixel valid; otherwise
    vacated pixels are zero and `valid` (1 along `dim`, broadcastable) marks the others.
    """
    length = images.shape[dim]
    valid_shape = [1] * images.ndim
    valid_shape[dim] = length
    if circular:
        return torch.roll(images, shift, dim), images.new_ones(valid_shape)
    moved = torch.zeros_like(images)
    valid = images.new_zeros(length)
    kept = length - abs(shift)
    if kept > 0:
        moved.narrow(dim, max(shift, 0), kept).copy_(images.narrow(dim, max(-shift, 0), kept))
        valid[max(shift, 0) : max(shift, 0) + kept] = 1
    return moved, valid.view(valid_shape)


def integer_translate(images, shift_h, shift_w, circular=True):
    """Move the content of [N, C, H, W] images by whole pixels (+shift_h down, +shift_w right).

    Returns (translated [N, C, H, W], mask [1, 1, H, W]): the mask marks pixels whose source lies
    inside the image (all of them when circular).
    """
    moved, valid_h = translate_axis(images, int(shift_h), 2, circular)
    moved, valid_w = translate_axis(moved, int(shift_w), 3, circular)
    return moved, (valid_h * valid_w).expand(1, 1, *images.shape[2:])


def fourier_translate(images, shift_h, shift_w):
    """Circular translation by real-valued pixels through a phase ramp of the 2-D DFT.

    This is the ideal band-limited interpolation of a periodic image: exact for content below
    Nyquist, and a plain roll for whole-pixel shifts.
    """
    height, width = images.shape[-2:]
    spectrum = torch.fft.fft2(images.double())
    freq_h = torch.fft.fftfreq(height, device=images.device, dtype=torch.float64).view(height, 1)
    freq_w = torch.fft.fftfreq(width, device=images.device, dtype=torch.float64).view(1, width)
    ramp = torch.polar(torch.ones_like(freq_h * freq_w), -2 * math.pi * (freq_h * shift_h + freq_w * shift_w))
    # The Nyquist bin of an even side is real; its real part is the right interpolation.
    return torch.fft.ifft2(spectrum * ramp).real.to(images.dtype)


def sinc(x):
    """sin(pi x) / (pi x), 1 at 0."""
    y = (x * math.pi).abs()
    return torch.where(y < 1e-30, torch.ones_like(x), torch.sin(y) / y.clamp_min(1e-30))


def lanczos_translate(images, shift_h, shift_w, a=3, circular=False):
    """Translation by real-valued pixels with a Lanczos-windowed sinc of `a` lobes (StyleGAN3).

    Per axis, out[i] = sum over the 2a taps m = 1-a..a of w_m * images[i - floor(shift) - m],
    w_m = sinc(m - frac) * sinc((m - frac) / a), normalised to sum 1. Returns (translated,
    mask [1, 1, H, W]); the mask keeps the pixels whose every tap lies inside the image, as
    StyleGAN3's apply_fractional_translation does.
    """
    out = images
    mask = images.new_ones(1, 1, *images.shape[2:])
    for shift, dim in ((shift_h, 2), (shift_w, 3)):
        whole = math.floor(shift)
        offsets = torch.arange(1 - a, a + 1, dtype=torch.float64)
        weights = sinc(offsets - (shift - whole)) * sinc((offsets - (shift - whole)) / a)
        weights = weights / weights.sum()
        filtered = torch.zeros_like(out)
        for offset, weight in zip(offsets.tolist(), weights.tolist()):
            moved, valid = translate_axis(out, whole + int(offset), dim, circular)
            filtered += weight * moved
            mask = mask * valid
        out = filtered
    return out, mask


def translate_images(images, shift_h, shift_w, circular=True):
    """Move the content of [N, C, H, W] images by (shift_h, shift_w) pixels, as a generator shift.

    Whole pixels: a roll (circular) or a zero-filled move. Fractional: a Fourier phase ramp
    (circular) or a Lanczos-3 sinc (not circular). Returns (translated, mask [1, 1, H, W]) with
    the mask of the pixels the translation defines.
    """
    if float(shift_h).is_integer() and float(shift_w).is_integer():
        return integer_translate(images, shift_h, shift_w, circular)
    if circular:
        return fourier_translate(images, shift_h, shift_w), images.new_ones(1, 1, *images.shape[2:])
    return lanczos_translate(images, shift_h, shift_w)


# ---------------------------------------------------------------------------------------------
# rotating images (StyleGAN3's band-limited affine resampling)


def lanczos_window(x, a):
    x = x.abs() / a
    return torch.where(x < 1, sinc(x), torch.zeros_like(x))


def rotation_matrix(angle):
    """3x3 matrix [[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]] (the layout of the model's transform)."""
    cos, sin = math.cos(angle), math.sin(angle)
    return torch.tensor([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])


def affine_bandlimit_filter(mat, a=3, amax=16, aflt=64, up=4, cutoff_in=1, cutoff_out=1):
    """Oriented low-pass FIR filter that band-limits both the input grid and the grid `mat` maps to.

    StyleGAN3's construct_affine_bandlimit_filter: the convolution of an axis-aligned and a
    `mat`-oriented 2-D sinc, windowed by the same convolution of two Lanczos windows. Returns a
    square filter of odd side (amax * 2 * up - 1) for `up`-times upsampled images.
    """
    mat = mat.float()
    taps = ((torch.arange(aflt * up * 2 - 1) + 1) / up - aflt).roll(1 - aflt * up)
    y_in, x_in = torch.meshgrid(taps, taps, indexing="ij")
    x_out, y_out = (torch.stack([x_in, y_in], dim=2) @ mat[:2, :2].t()).unbind(2)

    sinc_in = sinc(x_in * cutoff_in) * sinc(y_in * cutoff_in)
    sinc_out = sinc(x_out * cutoff_out) * sinc(y_out * cutoff_out)
    kernel = torch.fft.ifftn(torch.fft.fftn(sinc_in) * torch.fft.fftn(sinc_out)).real
    window_in = lanczos_window(x_in, a) * lanczos_window(y_in, a)
    window_out = lanczos_window(x_out, a) * lanczos_window(y_out, a)
    window = torch.fft.ifftn(torch.fft.fftn(window_in) * torch.fft.fftn(window_out)).real
    kernel = kernel * window

    crop = (aflt - amax) * up
    kernel = kernel.roll([aflt * up - 1] * 2, dims=[0, 1])[crop:-crop, crop:-crop]
    kernel = F.pad(kernel, [0, 1, 0, 1]).reshape(amax * 2, up, amax * 2, up)
    # each of the up x up polyphase components sums to 1 / up^2: flat regions keep their value
    kernel = kernel / kernel.sum([0, 2], keepdim=True) / (up**2)
    return kernel.reshape(amax * 2 * up, amax * 2 * up)[:-1, :-1]


def affine_transform_images(images, mat, up=4, **filter_kwargs):
    """Resample [N, C, H, W] images under the 3x3 `mat` (normalised [-1, 1] coordinates).

    StyleGAN3's apply_affine_transformation: upsample `up` times with the band-limit filter,
    then bilinear sampling at mat^-1 of every output pixel. Returns (transformed, mask); the
    mask is 0 where the sampled region reaches outside the image or into the filter margin.
    """
    height, width = images.shape[-2:]
    kernel = affine_bandlimit_filter(mat, up=up, **filter_kwargs).to(images.device)
    pad = kernel.shape[0] // 2

    theta = torch.inverse(mat.double()).float().to(images.device)
    theta[:2, 2] *= 2
    theta[0, 2] += 1 / up / width
    theta[1, 2] += 1 / up / height
    theta[0, :] *= width / (width + pad / up * 2)
    theta[1, :] *= height / (height + pad / up * 2)
    theta = theta[:2, :3].unsqueeze(0).repeat(len(images), 1, 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)

    size = kernel.shape[0]
    upsampled = upfirdn2d(
        images,
        kernel * up**2,
        up=up,
        pad=(pad + (size + up - 1) // 2, pad + (size - up) // 2, pad + (size + up - 1) // 2, pad + (size - up) // 2),
    )
    out = F.grid_sample(upsampled, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    mask = torch.zeros_like(upsampled[:1, :1])
    margin = pad * 2 + 1
    mask[:, :, margin:-margin, margin:-margin] = 1
    mask = F.grid_sample(mask, grid[:1], mode="nearest", padding_mode="zeros", align_corners=False)
    return out, mask


def rotate_images(images, angle, a=3):
    """Rotate [N, C, H, W] images about their centre, as the generator's input transform does.

    out(p) = images(M (p - c) + c) with M = [[cos, sin], [-sin, cos]] of `angle` (radians) in
    (x right, y down) pixel coordinates: the image a positional generator renders with
    transform (cos angle, sin angle, 0, 0). Returns (rotated, mask [1, 1, H, W]).
    """
    return affine_transform_images(images, rotation_matrix(-angle), a=a, amax=a * 2)


def pseudo_rotate_images(images, angle, a=3):
    """Give images the band limit `rotate_images(., angle)` imposes, without rotating them.

    StyleGAN3's apply_fractional_pseudo_rotation, applied to the render with the rotated input
    so that both sides of EQ-R have the same frequency content. Returns (filtered, mask).
    """
    kernel = affine_bandlimit_filter(rotation_matrix(angle), a=a, amax=a * 2, up=1).to(images.device)
    margin = kernel.shape[0] // 2
    filtered = upfirdn2d(images, kernel, pad=(margin, margin, margin, margin))
    mask = torch.zeros_like(filtered[:1, :1])
    mask[:, :, margin:-margin, margin:-margin] = 1
    return filtered, mask


# ---------------------------------------------------------------------------------------------
# equivariance


def psnr(squared_error, count, peak=2.0):
    """PSNR in dB of a summed squared error over `count` values; images in [-1, 1] have peak 2."""
    if squared_error == 0:
        return math.inf
    return 20 * math.log10(peak) - 10 * math.log10(squared_error / count)


def masked_error(image, expected, mask):
    """(sum of squared differences inside `mask`, number of values inside it) in float64."""
    mask = mask.expand_as(image)
    return ((image - expected).double().square() * mask).sum().item(), mask.double().sum().item()


@torch.no_grad()
def translation_equivariance(
    generator, n_sample=1000, batch=8, max_shift=0.125, circular=True, noise="const", seed=0, progress=False
):
    """EQ-T (integer) and EQ-T (fractional) of a generator, in dB.

    Per batch of latents z: a reference render, a render shifted by a random whole-pixel
    translation and one shifted by a random real-valued translation, each component uniform in
    [-max_shift, max_shift] x size (one translation per batch, as StyleGAN3). The shifted render
    is compared with the reference translated by the same amount (`translate_images`).

    Args:
        generator: a Generator (any position; 'none' shifts its constant input).
        n_sample: number of latents; batch: latents per render.
        max_shift: largest translation as a fraction of the image size (StyleGAN3: 0.125).
        circular: the generator's default circular shift, compared with circularly translated
            references over the whole image. False shifts an infinite plane (positional models
            only) and compares over the region valid in both.
        noise: 'const' | 'random' | 'zero' (`noise_inputs`); the same noise in both renders.
    Returns:
        {'eqt_int': dB, 'eqt_frac': dB}.
    """
    if not circular and generator.position == "none":
        raise ValueError(
            "non-circular EQ-T shifts an infinite plane of positions, which needs a positional encoding: "
            "this generator has position 'none' (a learned constant input that can only be rolled); "
            "measure it with circular shifts, or use an 'sspe'/'mspe' checkpoint"
        )
    device = module_device(generator)
    size = generator.size
    rng = torch.Generator().manual_seed(seed)
    sums = {"eqt_int": [0.0, 0.0], "eqt_frac": [0.0, 0.0]}
    for count in tqdm(batch_sizes(n_sample, batch), desc="EQ-T", disable=not progress):
        latent = torch.randn(count, generator.style_dim, generator=rng).to(device)
        noise_kwargs = noise_inputs(generator, count, noise, rng)
        reference, _ = generator([latent], **noise_kwargs)
        for key in sums:
            shift = ((torch.rand(2, generator=rng, dtype=torch.float64) * 2 - 1) * max_shift * size).tolist()
            if key == "eqt_int":
                shift = [float(round(value)) for value in shift]
            image, _ = generator([latent], shift_h=shift[0], shift_w=shift[1], circular=circular, **noise_kwargs)
            expected, mask = translate_images(reference, shift[0], shift[1], circular)
            error, values = masked_error(image, expected, mask)
            sums[key][0] += error
            sums[key][1] += values
    return {key: psnr(*value) for key, value in sums.items()}


def input_transform(generator, latent):
    """[N, 4] input transform (r_c, r_s, t_x, t_y) a positional generator applies by default.

    Models with the learned Fourier affine input use it (normalised as the model does); others
    the identity.
    """
    if getattr(generator, "affine", False):
        transform = generator.affine_fourier(latent)
        return transform / transform[:, :2].norm(dim=1, keepdim=True)
    return latent.new_tensor([1.0, 0.0, 0.0, 0.0]).expand(len(latent), 4)


def rotate_transform(transform, angle):
    """Compose [N, 4] normalised transforms with a rotation of the rendered image by `angle`.

    The model samples its input at M_t (p - c) + c - t with M_t = [[r_c, r_s], [-r_s, r_c]];
    rotating the image by M_a needs M_t M_a, the rotation by the sum of both angles; t stays.
    """
    cos, sin = math.cos(angle), math.sin(angle)
    r_c, r_s, t_x, t_y = transform.unbind(1)
    return torch.stack([r_c * cos - r_s * sin, r_c * sin + r_s * cos, t_x, t_y], 1)


@torch.no_grad()
def rotation_equivariance(generator, n_sample=1000, batch=8, max_rotation=180.0, noise="const", seed=0, progress=False):
    """EQ-R of a positional generator, in dB (StyleGAN3's definition).

    Per batch: a reference render and a render whose input PE is rotated about the image centre
    by a random angle uniform in [-max_rotation, max_rotation] degrees (composed with the learned
    affine transform of `affine` models). The reference is rotated with StyleGAN3's band-limited
    resampling, the rotated render filtered to the same band limit (pseudo-rotation), and both
    compared inside the rotated frame.

    Returns the PSNR in dB. Raises ValueError for position 'none', which has no input to rotate.
    """
    if generator.position == "none":
        raise ValueError(
            "EQ-R rotates the generator's input positional encoding: position 'none' has a learned "
            "constant input that cannot be rotated; use an 'sspe'/'mspe' checkpoint (ideally trained with --affine)"
        )
    device = module_device(generator)
    rng = torch.Generator().manual_seed(seed)
    squared_error, values = 0.0, 0.0
    for count in tqdm(batch_sizes(n_sample, batch), desc="EQ-R", disable=not progress):
        latent = generator.style(torch.randn(count, generator.style_dim, generator=rng).to(device))
        noise_kwargs = noise_inputs(generator, count, noise, rng)
        angle = (torch.rand([], generator=rng, dtype=torch.float64).item() * 2 - 1) * math.radians(max_rotation)
        transform = input_transform(generator, latent)
        reference, _ = generator([latent], input_is_latent=True, transform=transform, **noise_kwargs)
        image, _ = generator(
            [latent], input_is_latent=True, transform=rotate_transform(transform, angle), **noise_kwargs
        )
        expected, expected_mask = rotate_images(reference, angle)
        filtered, filtered_mask = pseudo_rotate_images(image, angle)
        error, masked_values = masked_error(filtered, expected, expected_mask * filtered_mask)
        squared_error += error
        values += masked_values
    return psnr(squared_error, values)


# ---------------------------------------------------------------------------------------------
# sliced Wasserstein distance (ProGAN, Karras et al. 2018, metrics/sliced_wasserstein.py)

GAUSSIAN_5X5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]).outer(torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])) / 256


def gaussian_blur(images, gain=1.0):
    """5x5 binomial filter per channel with mirrored borders (cv2's pyrDown / pyrUp kernel)."""
    channel = images.shape[1]
    kernel = (GAUSSIAN_5X5 * gain).to(images).expand(channel, 1, 5, 5)
    return F.conv2d(F.pad(images, [2, 2, 2, 2], mode="reflect"), kernel, groups=channel)


def pyramid_down(images):
    return gaussian_blur(images)[:, :, ::2, ::2]


def pyramid_up(images):
    batch, channel, height, width = images.shape
    upsampled = images.new_zeros(batch, channel, height * 2, width * 2)
    upsampled[:, :, ::2, ::2] = images
    return gaussian_blur(upsampled, gain=4.0)


def laplacian_pyramid(images, levels):
    """[images minus their blurred upsampled half, ..., the coarsest half]: `levels` band images."""
    pyramid = [images.float()]
    for _ in range(1, levels):
        pyramid.append(pyramid_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyramid_up(pyramid[-1])
    return pyramid


def swd_resolutions(size, min_resolution=16):
    """Pyramid resolutions of SWD for `size`-pixel images: size, size / 2, ... down to 16."""
    resolutions = []
    while size >= min_resolution:
        resolutions.append(size)
        size //= 2
    if not resolutions:
        raise ValueError(f"SWD compares 7x7 patches of a pyramid down to 16 px; images of {size} px are too small")
    return resolutions


class SWDDescriptors:
    """7x7 patches of the Laplacian pyramid of an image set, gathered batch by batch (ProGAN).

    Patch centres are drawn from a generator seeded with `seed`, so two sets fed with batches of
    the same shapes are cut at the same places.
    """

    def __init__(self, resolution, patches_per_image=128, patch_size=7, seed=0):
        self.resolutions = swd_resolutions(resolution)
        self.patches_per_image = patches_per_image
        self.patch_size = patch_size
        self.rng = torch.Generator().manual_seed(seed)
        self.patches = [[] for _ in self.resolutions]

    def add(self, images):
        """Add [N, 3, H, W] images (H = W = the set's resolution)."""
        if images.shape[-1] != self.resolutions[0] or images.shape[-2] != self.resolutions[0]:
            raise ValueError(f"SWD set of {self.resolutions[0]} px images got {tuple(images.shape[-2:])}")
        for level, band in enumerate(laplacian_pyramid(images, len(self.resolutions))):
            self.patches[level].append(self.cut(band))

    def cut(self, band):
        """[N * patches_per_image, C, p, p] patches at random centres that keep them inside."""
        batch, _, height, width = band.shape
        half = self.patch_size // 2
        shape = (batch, self.patches_per_image, 1, 1)
        rows = torch.randint(half, height - half, shape, generator=self.rng).to(band.device)
        cols = torch.randint(half, width - half, shape, generator=self.rng).to(band.device)
        offsets = torch.arange(-half, half + 1, device=band.device)
        rows = rows + offsets.view(1, 1, -1, 1)
        cols = cols + offsets.view(1, 1, 1, -1)
        index = torch.arange(batch, device=band.device).view(-1, 1, 1, 1)
        patches = band.permute(0, 2, 3, 1)[index, rows, cols]  # [N, P, p, p, C]
        return patches.permute(0, 1, 4, 2, 3).flatten(0, 1)

    def descriptors(self):
        """Per pyramid level, [M, C * p * p] descriptors normalised per channel over the set."""
        out = []
        for patches in self.patches:
            patches = torch.cat(patches)
            mean = patches.mean(dim=(0, 2, 3), keepdim=True)
            std = patches.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
            out.append(((patches - mean) / std.clamp_min(1e-8)).flatten(1))
        return out


def sliced_wasserstein(descriptors_a, descriptors_b, directions=128, repeats=4, seed=0):
    """Mean 1-D Wasserstein distance of two [M, D] descriptor sets along random unit directions.

    `repeats` rounds of `directions` directions each (ProGAN: 4 x 128 = 512 projections); per
    direction the sorted projections of both sets are compared point by point.
    """
    if descriptors_a.shape != descriptors_b.shape:
        raise ValueError(
            f"SWD compares sets of equal size; got {tuple(descriptors_a.shape)} and {tuple(descriptors_b.shape)} "
            "descriptors (use the same number of images in both)"
        )
    rng = torch.Generator().manual_seed(seed)
    distances = []
    for _ in range(repeats):
        basis = torch.randn(descriptors_a.shape[1], directions, generator=rng).to(descriptors_a)
        basis = basis / basis.norm(dim=0, keepdim=True)
        projected_a = (descriptors_a @ basis).sort(dim=0).values
        projected_b = (descriptors_b @ basis).sort(dim=0).values
        distances.append((projected_a - projected_b).abs().mean().item())
    return float(np.mean(distances))


def swd(set_a, set_b, directions=128, repeats=4, seed=0):
    """SWD of two SWDDescriptors sets: ([x 1e3 per level, finest first], x 1e3 mean over levels)."""
    per_level = [
        1e3 * sliced_wasserstein(a, b, directions, repeats, seed)
        for a, b in zip(set_a.descriptors(), set_b.descriptors())
    ]
    return per_level, float(np.mean(per_level))


# ---------------------------------------------------------------------------------------------
# FID

INCEPTION_HELP = (
    "FID needs the weights of an Inception-v3 network in a local file (--inception PATH); nothing is "
    "downloaded at run time. Use either\n"
    "  - pt_inception-2015-12-05-6726825d.pth, the TensorFlow FID Inception ported by pytorch-fid "
    "(https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth), "
    "the network of the published FID numbers and of rosinality's fid.py, or\n"
    "  - a state dict of torchvision's inception_v3 (IMAGENET1K_V1): on a machine with network, "
    "python -c \"import torch, torchvision; torch.save(torchvision.models.inception_v3("
    "weights='IMAGENET1K_V1').state_dict(), 'inception_v3_imagenet.pt')\" "
    "(FIDs from it are not comparable with published ones)."
)


def _tf_average_pool(input):
    # TensorFlow's average pool leaves the zero padding out of the average
    return F.avg_pool2d(input, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(tv_inception.InceptionA):
    """InceptionA of the TensorFlow FID network: padding-free average pool in the pool branch."""

    def _forward(self, x):
        outputs = super()._forward(x)
        outputs[-1] = self.branch_pool(_tf_average_pool(x))
        return outputs


class FIDInceptionC(tv_inception.InceptionC):
    """InceptionC of the TensorFlow FID network: padding-free average pool in the pool branch."""

    def _forward(self, x):
        outputs = super()._forward(x)
        outputs[-1] = self.branch_pool(_tf_average_pool(x))
        return outputs


class FIDInceptionE1(tv_inception.InceptionE):
    """First InceptionE of the TensorFlow FID network: padding-free average pool."""

    def _forward(self, x):
        outputs = super()._forward(x)
        outputs[-1] = self.branch_pool(_tf_average_pool(x))
        return outputs


class FIDInceptionE2(tv_inception.InceptionE):
    """Second InceptionE of the TensorFlow FID network: a max pool in the pool branch."""

    def _forward(self, x):
        outputs = super()._forward(x)
        outputs[-1] = self.branch_pool(F.max_pool2d(x, kernel_size=3, stride=1, padding=1))
        return outputs


def fid_inception_v3():
    """torchvision's Inception3 patched into the TensorFlow FID network (as pytorch-fid does)."""
    model = tv_inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    model.Mixed_5b = FIDInceptionA(192, pool_features=32)
    model.Mixed_5c = FIDInceptionA(256, pool_features=64)
    model.Mixed_5d = FIDInceptionA(288, pool_features=64)
    model.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    model.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    model.Mixed_7b = FIDInceptionE1(1280)
    model.Mixed_7c = FIDInceptionE2(2048)
    return model


def load_inception(path, device="cpu"):
    """Inception-v3 returning the 2048-d pool3 features of [N, 3, H, W] images in [-1, 1].

    `path`: a state dict file of pytorch-fid's FID Inception (1008 classes, recognised by its
    fc layer) or of torchvision's inception_v3 (1000 classes). Images are resized to 299x299
    bilinearly and fed in [-1, 1], the input range of both weight sets.
    """
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f"Inception weights {path!r} not found. {INCEPTION_HELP}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise ValueError(f"{path} is not an Inception-v3 state dict (it has no 'fc.weight'). {INCEPTION_HELP}")
    classes = state["fc.weight"].shape[0]
    if classes == 1008:
        model = fid_inception_v3()
    else:
        aux_logits = any(key.startswith("AuxLogits.") for key in state)
        model = tv_inception.Inception3(num_classes=classes, aux_logits=aux_logits, init_weights=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"{path} does not fit torchvision's inception_v3: {str(error).splitlines()[0]}. {INCEPTION_HELP}"
        ) from None
    model.fc = nn.Identity()
    return InceptionFeatures(model).eval().requires_grad_(False).to(device)


class InceptionFeatures(nn.Module):
    """Wraps an Inception3 whose fc is removed: [N, 3, H, W] in [-1, 1] -> [N, 2048] pool3."""

    def __init__(self, inception):
        super().__init__()
        self.inception = inception

    def forward(self, images):
        images = F.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False)
        return self.inception(images)


def feature_statistics(features):
    """(mean [D], covariance [D, D]) of [N, D] features, in float64 numpy."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) < 2:
        raise ValueError("FID statistics need at least 2 images")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mean_a, cov_a, mean_b, cov_b, eps=1e-6):
    """Fréchet distance of two Gaussians: |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2).

    The square root is scipy's sqrtm, as in pytorch-fid and rosinality's fid.py. When it fails
    (a singular product, as with fewer images than feature dimensions), eps is added to both
    diagonals and the root taken again.
    """

    def failed(root):
        return not np.isfinite(root).all() or (
            np.iscomplexobj(root) and not np.allclose(np.diagonal(root).imag, 0, atol=1e-3)
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # a singular product is handled below
        covmean = linalg.sqrtm(cov_a @ cov_b)
        if failed(covmean):
            offset = np.eye(len(cov_a)) * eps
            covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if failed(covmean):
        raise ValueError(
            "the covariance product has no real square root, even regularised; use more images "
            f"(FID needs more images than feature dimensions, {len(cov_a)})"
        )
    covmean = covmean.real
    difference = mean_a - mean_b
    return float(difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


def warn_few_fid_images(count):
    if count < 2048:
        print(
            f"note: FID from {count} images is strongly biased (fewer images than the 2048 feature dimensions); "
            "published FIDs use 50000"
        )


def save_statistics(file, mean, cov, **info):
    """Cache real statistics (and what they were computed from) in an .npz file."""
    os.makedirs(os.path.dirname(file) or ".", exist_ok=True)
    with open(file, "wb") as handle:  # a handle keeps the name as given (savez would append .npz)
        np.savez(handle, mean=mean, cov=cov, **{key: np.asarray(value) for key, value in info.items()})


def load_statistics(path):
    """(mean, cov, info dict) of a file written by `save_statistics`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"real statistics {path!r} not found; compute them with: python metrics.py inception "
            "--inception WEIGHTS --path LMDB --size SIZE"
        )
    with np.load(path, allow_pickle=False) as stored:
        info = {key: stored[key].item() for key in stored.files if key not in ("mean", "cov")}
        return stored["mean"], stored["cov"], info


# ---------------------------------------------------------------------------------------------
# image sets


def real_image_batches(dataset, indices, batch):
    """Yield [B, 3, H, W] float batches in [-1, 1] of the dataset items `indices`."""
    for start in range(0, len(indices), batch):
        yield torch.stack([dataset[index] for index in indices[start : start + batch]])


def open_real_images(path, resolution, n_sample, seed=0):
    """(dataset of tensors in [-1, 1], indices): up to `n_sample` images, a seeded random subset."""
    to_tensor = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), inplace=True)]
    )
    dataset = MultiResolutionDataset(path, to_tensor, resolution)
    if n_sample >= len(dataset):
        return dataset, list(range(len(dataset)))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return dataset, sorted(order[:n_sample].tolist())


@torch.no_grad()
def generated_batches(generator, n_sample, batch, seed=0, truncation=1.0, mean_latent=None, **render_kwargs):
    """Yield [B, 3, S, S] renders of seeded latents with seeded per-layer noise.

    The same seed gives the same latents and noise whatever `render_kwargs` (e.g. a shift), so
    renders of different shifts show the same samples.
    """
    device = module_device(generator)
    rng = torch.Generator().manual_seed(seed)
    for count in batch_sizes(n_sample, batch):
        latent = torch.randn(count, generator.style_dim, generator=rng).to(device)
        noise_kwargs = noise_inputs(generator, count, "random", rng)
        images, _ = generator(
            [latent], truncation=truncation, truncation_latent=mean_latent, **noise_kwargs, **render_kwargs
        )
        yield images


@torch.no_grad()
def inception_statistics(inception, batches, total=None, desc="Inception", progress=False):
    """(mean, cov) of the Inception features of the images of `batches`."""
    device = module_device(inception)
    features = [
        inception(images.to(device)).double().cpu()
        for images in tqdm(batches, total=total, desc=desc, disable=not progress)
    ]
    return feature_statistics(torch.cat(features).numpy())


# ---------------------------------------------------------------------------------------------
# spatial-bias report

SHIFT_DIRECTIONS = {"horizontal": (0, 1), "vertical": (1, 0), "diagonal": (1, 1)}


@torch.no_grad()
def quality_at_shift(generator, dataset, indices, shift, args, inception=None, real_statistics=None):
    """SWD (and FID with `inception`) of renders shifted by `shift` (pixels, (h, w)) against the
    real images circularly translated by the same amount.

    `real_statistics`: cached (mean, cov) of the translated real images, or None to compute
    them. Returns {'swd', 'swd_levels', 'fid', 'real_statistics', 'first_sample'}.
    """
    device = module_device(generator)
    size = generator.size
    real_set = SWDDescriptors(size, args.patches, seed=args.seed)
    fake_set = SWDDescriptors(size, args.patches, seed=args.seed)
    need_real_features = inception is not None and real_statistics is None
    real_features, fake_features = [], []

    for images in real_image_batches(dataset, indices, args.batch):
        images, _ = translate_images(images.to(device), shift[0], shift[1], circular=True)
        real_set.add(images)
        if need_real_features:
            real_features.append(inception(images).double().cpu())

    first_sample = None
    for images in generated_batches(generator, len(indices), args.batch, args.seed, shift_h=shift[0], shift_w=shift[1]):
        fake_set.add(images)
        if inception is not None:
            fake_features.append(inception(images).double().cpu())
        if first_sample is None:
            first_sample = images[0].cpu()

    levels, mean = swd(real_set, fake_set, args.directions, args.repeats, args.seed)
    result = {"swd": mean, "swd_levels": levels, "fid": None, "real_statistics": real_statistics}
    if inception is not None:
        if need_real_features:
            result["real_statistics"] = feature_statistics(torch.cat(real_features).numpy())
        fake_mean, fake_cov = feature_statistics(torch.cat(fake_features).numpy())
        result["fid"] = frechet_distance(fake_mean, fake_cov, *result["real_statistics"])
    result["first_sample"] = first_sample
    return result


def spatial_bias_report(args, device):
    """Evaluate every checkpoint of args.ckpt; returns (quality rows, equivariance rows, samples)."""
    inception = load_inception(args.inception, device) if args.inception else None
    shift_fractions = parse_floats(args.shifts, "--shifts")
    direction = SHIFT_DIRECTIONS[args.direction]
    labels = checkpoint_labels(args.ckpt, args.labels)
    real_cache = {}  # (size, shift) -> real Inception statistics, shared by the checkpoints
    quality_rows, equivariance_rows, samples = [], [], []

    for path, label in zip(args.ckpt, labels):
        generator, _, config = load_generator(path, device)
        dataset, indices = open_real_images(args.path, generator.size, args.n, args.seed)
        if len(indices) < args.n:
            print(f"{args.path} holds {len(indices)} images at {generator.size} px: comparing that many, not {args.n}")
        if inception is not None:
            warn_few_fid_images(len(indices))
        row_samples = []
        for fraction in tqdm(shift_fractions, desc=f"{label} shifts"):
            shift = (direction[0] * fraction * generator.size, direction[1] * fraction * generator.size)
            key = (generator.size, shift)
            result = quality_at_shift(generator, dataset, indices, shift, args, inception, real_cache.get(key))
            if inception is not None:
                real_cache[key] = result["real_statistics"]
            row_samples.append(result["first_sample"])
            quality_rows.append(
                {
                    "checkpoint": label,
                    "position": config.position,
                    "shift_fraction": fraction,
                    "shift_px": fraction * generator.size,
                    "images": len(indices),
                    "swd": result["swd"],
                    "fid": result["fid"],
                }
            )
        samples.append(row_samples)

        equivariance = {"eqt_int": None, "eqt_frac": None}
        if args.eqt_n > 0:
            equivariance = translation_equivariance(
                generator, args.eqt_n, args.batch, args.max_shift, noise=args.noise, seed=args.seed, progress=True
            )
        equivariance_rows.append({"checkpoint": label, "position": config.position, **equivariance})
    return quality_rows, equivariance_rows, samples


def format_value(value, digits=2):
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def write_markdown(path, quality_rows, equivariance_rows, args):
    """report.md: quality per shift side by side per checkpoint, then EQ-T per checkpoint."""
    labels = list(dict.fromkeys(row["checkpoint"] for row in quality_rows))
    with_fid = any(row["fid"] is not None for row in quality_rows)
    columns = ["swd", "fid"] if with_fid else ["swd"]
    names = {"swd": "SWD x1e3", "fid": "FID"}

    lines = [
        "# Spatial-bias report",
        "",
        f"Real images: `{args.path}` ({quality_rows[0]['images']} per set, circularly translated by the same shift "
        "as the renders); "
        f"shift direction: {args.direction}; seed {args.seed}. Lower is better; a spatially unbiased generator "
        "keeps its quality at every shift.",
        "",
        "## Quality versus shift",
        "",
        "| shift (fraction of size) | " + " | ".join(f"{label} {names[c]}" for label in labels for c in columns) + " |",
        "|---" * (1 + len(labels) * len(columns)) + "|",
    ]
    for fraction in dict.fromkeys(row["shift_fraction"] for row in quality_rows):
        cells = []
        for label in labels:
            row = next(r for r in quality_rows if r["checkpoint"] == label and r["shift_fraction"] == fraction)
            cells += [format_value(row[column]) for column in columns]
        lines.append(f"| {fraction:g} | " + " | ".join(cells) + " |")

    if args.eqt_n > 0:
        eqt_note = (
            f"EQ-T: PSNR (dB) between shifted renders and translated reference renders, {args.eqt_n} samples, "
            f"shifts up to {args.max_shift:g} of the size, circular, noise '{args.noise}'. Higher is better."
        )
    else:
        eqt_note = "EQ-T was skipped (--eqt_n 0)."
    lines += [
        "",
        "## Translation equivariance",
        "",
        eqt_note,
        "",
        "| checkpoint | position | EQ-T int (dB) | EQ-T frac (dB) | mean SWD x1e3 |",
        "|---|---|---|---|---|",
    ]
    for row in equivariance_rows:
        mean_swd = np.mean([r["swd"] for r in quality_rows if r["checkpoint"] == row["checkpoint"]])
        lines.append(
            f"| {row['checkpoint']} | {row['position']} | {format_value(row['eqt_int'])} | "
            f"{format_value(row['eqt_frac'])} | {format_value(mean_swd)} |"
        )
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")


def write_csv(path, quality_rows, equivariance_rows):
    """report.csv: one row per checkpoint and shift; the EQ-T columns repeat per checkpoint."""
    equivariance = {row["checkpoint"]: row for row in equivariance_rows}
    fields = ["checkpoint", "position", "shift_fraction", "shift_px", "images", "swd", "fid"]
    fields += ["eqt_int_db", "eqt_frac_db"]
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        for row in quality_rows:
            eq = equivariance[row["checkpoint"]]
            writer.writerow(
                {
                    **{key: row[key] for key in fields[:5]},
                    "swd": f"{row['swd']:.6g}",
                    "fid": "" if row["fid"] is None else f"{row['fid']:.6g}",
                    "eqt_int_db": "" if eq["eqt_int"] is None else f"{eq['eqt_int']:.6g}",
                    "eqt_frac_db": "" if eq["eqt_frac"] is None else f"{eq['eqt_frac']:.6g}",
                }
            )


# ---------------------------------------------------------------------------------------------
# the plot, drawn with Pillow

LINE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def nice_ticks(low, high, count=5):
    """Round tick values covering [low, high], about `count` of them."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def load_font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def put_text(draw, position, text, font, anchor="lt"):
    """Draw black text with `anchor` (horizontal l|m|r, vertical t|m|b) at `position`.

    Aligns through the text's bounding box, which works for the bitmap default font of old
    Pillow versions too (their draw.text has no anchors).
    """
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = position
    x -= {"l": left, "m": (left + right) / 2, "r": right}[anchor[0]]
    y -= {"t": top, "m": (top + bottom) / 2, "b": bottom}[anchor[1]]
    draw.text((x, y), text, fill="black", font=font)


def draw_panel(draw, box, series, title, x_label, y_label, font):
    """One line chart in `box` (left, top, right, bottom): series is {label: ([x], [y])}."""
    left, top, right, bottom = box
    plot_left, plot_top, plot_right, plot_bottom = left + 70, top + 30, right - 15, bottom - 50
    xs = [x for values, _ in series.values() for x in values]
    ys = [y for _, values in series.values() for y in values if y is not None and math.isfinite(y)]
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = nice_ticks(min(ys), max(ys)) if ys else [0.0, 1.0]

    def to_pixel(x, y):
        px = plot_left + (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * (plot_right - plot_left)
        py = plot_bottom - (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * (plot_bottom - plot_top)
        return px, py

    put_text(draw, ((plot_left + plot_right) / 2, top + 8), title, font, "mt")
    for tick in x_ticks:
        px, _ = to_pixel(tick, y_ticks[0])
        draw.line([(px, plot_top), (px, plot_bottom)], fill="#e6e6e6")
        draw.line([(px, plot_bottom), (px, plot_bottom + 5)], fill="black")
        put_text(draw, (px, plot_bottom + 8), f"{tick:g}", font, "mt")
    for tick in y_ticks:
        _, py = to_pixel(x_ticks[0], tick)
        draw.line([(plot_left, py), (plot_right, py)], fill="#e6e6e6")
        draw.line([(plot_left - 5, py), (plot_left, py)], fill="black")
        put_text(draw, (plot_left - 8, py), f"{tick:g}", font, "rm")
    draw.rectangle([plot_left, plot_top, plot_right, plot_bottom], outline="black")
    put_text(draw, ((plot_left + plot_right) / 2, bottom - 12), x_label, font, "mb")
    put_text(draw, (left + 4, top + 8), y_label, font, "lt")

    for index, (x_values, y_values) in enumerate(series.values()):
        colour = LINE_COLOURS[index % len(LINE_COLOURS)]
        points = [to_pixel(x, y) for x, y in zip(x_values, y_values) if y is not None and math.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=3)
        for px, py in points:
            draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=colour)


def draw_plot(path, quality_rows):
    """report.png: SWD (and FID) versus shift, one coloured line per checkpoint, legend below."""
    panels = [("swd", "SWD x1e3 vs shift")]
    if any(row["fid"] is not None for row in quality_rows):
        panels.append(("fid", "FID vs shift"))
    labels = list(dict.fromkeys(row["checkpoint"] for row in quality_rows))
    panel_width, panel_height, legend_row = 560, 400, 22
    image = Image.new("RGB", (panel_width * len(panels), panel_height + legend_row * len(labels) + 10), "white")
    draw = ImageDraw.Draw(image)
    font = load_font(13)
    for index, (metric, title) in enumerate(panels):
        series = {}
        for label in labels:
            rows = [row for row in quality_rows if row["checkpoint"] == label]
            series[label] = ([row["shift_fraction"] for row in rows], [row[metric] for row in rows])
        box = (index * panel_width, 0, (index + 1) * panel_width, panel_height)
        draw_panel(draw, box, series, title, "shift (fraction of image size)", metric.upper(), font)
    for index, label in enumerate(labels):
        y = panel_height + legend_row * index + legend_row // 2
        draw.line([(70, y), (110, y)], fill=LINE_COLOURS[index % len(LINE_COLOURS)], width=3)
        put_text(draw, (118, y), label, font, "lm")
    image.save(path)


def save_samples(path, samples):
    """samples.png: the first sample of every checkpoint (rows) at every shift (columns)."""
    size = samples[0][0].shape[-1]
    images = [
        F.interpolate(image[None], size=(size, size), mode="nearest")[0] if image.shape[-1] != size else image
        for row in samples
        for image in row
    ]
    to_pil(make_grid(torch.stack(images), nrow=len(samples[0]))).save(path)


# ---------------------------------------------------------------------------------------------
# command line


def parse_floats(text, flag):
    try:
        return [float(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise SystemExit(f"{flag} takes comma-separated numbers such as 0,0.125,0.25, not {text!r}") from None


def checkpoint_labels(paths, labels=None):
    """Names for the checkpoints: --labels, else '<folder>/<file stem>'."""
    if labels:
        names = [label.strip() for label in labels.split(",")]
        if len(names) != len(paths):
            raise SystemExit(f"--labels names {len(names)} checkpoints, --ckpt gives {len(paths)}")
    else:
        names = []
        for path in paths:
            folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
            stem = os.path.splitext(os.path.basename(path))[0]
            names.append(f"{folder}/{stem}" if folder else stem)
    if len(set(names)) != len(names):
        raise SystemExit(f"checkpoint labels {names} are not unique; name them with --labels A,B,...")
    return names


def output_folder(args, default_name=None):
    """--out, else metrics/<--name>, else metrics/<default_name or the first checkpoint's folder>."""
    if args.out:
        return args.out
    name = args.name or default_name or os.path.basename(os.path.dirname(os.path.abspath(args.ckpt[0])))
    return os.path.join("metrics", name)


def write_json(path, command, args, results):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    settings = {key: value for key, value in vars(args).items() if key not in ("command", "handler")}
    with open(path, "w") as file:
        json.dump({"command": command, "settings": settings, "results": results}, file, indent=2)
    print(f"wrote {path}")


def run_eqt(args, device):
    results = []
    for path, label in zip(args.ckpt, checkpoint_labels(args.ckpt, args.labels)):
        generator, _, config = load_generator(path, device)
        try:
            scores = translation_equivariance(
                generator, args.n, args.batch, args.max_shift, args.circular, args.noise, args.seed, progress=True
            )
        except ValueError as error:
            raise SystemExit(f"{path}: {error}") from None
        print(
            f"{label} ({config.position}): EQ-T int {format_value(scores['eqt_int'])} dB, "
            f"EQ-T frac {format_value(scores['eqt_frac'])} dB"
        )
        results.append({"checkpoint": path, "position": config.position, **scores})
    write_json(os.path.join(output_folder(args), "eqt.json"), "eqt", args, results)


def run_eqr(args, device):
    results = []
    for path, label in zip(args.ckpt, checkpoint_labels(args.ckpt, args.labels)):
        generator, _, config = load_generator(path, device)
        try:
            score = rotation_equivariance(
                generator, args.n, args.batch, args.max_rotation, args.noise, args.seed, progress=True
            )
        except ValueError as error:
            raise SystemExit(f"{path}: {error}") from None
        print(f"{label} ({config.position}): EQ-R {format_value(score)} dB")
        results.append({"checkpoint": path, "position": config.position, "eqr": score})
    write_json(os.path.join(output_folder(args), "eqr.json"), "eqr", args, results)


def run_swd(args, device):
    results = []
    for path, label in zip(args.ckpt, checkpoint_labels(args.ckpt, args.labels)):
        generator, _, config = load_generator(path, device)
        dataset, indices = open_real_images(args.path, generator.size, args.n, args.seed)
        real_set = SWDDescriptors(generator.size, args.patches, seed=args.seed)
        fake_set = SWDDescriptors(generator.size, args.patches, seed=args.seed)
        total = len(batch_sizes(len(indices), args.batch))
        for images in tqdm(real_image_batches(dataset, indices, args.batch), total=total, desc="real"):
            real_set.add(images.to(device))
        fakes = generated_batches(
            generator, len(indices), args.batch, args.seed, args.truncation, truncation_mean_latent(generator, args)
        )
        for images in tqdm(fakes, total=total, desc="generated"):
            fake_set.add(images)
        levels, mean = swd(real_set, fake_set, args.directions, args.repeats, args.seed)
        resolutions = swd_resolutions(generator.size)
        print(
            f"{label} ({config.position}): SWD x1e3 {mean:.3f} ("
            + ", ".join(f"{r}px {v:.3f}" for r, v in zip(resolutions, levels))
            + f"; {len(indices)} images)"
        )
        results.append(
            {"checkpoint": path, "position": config.position, "swd": mean, "swd_levels": dict(zip(resolutions, levels))}
        )
    write_json(os.path.join(output_folder(args), "swd.json"), "swd", args, results)


def truncation_mean_latent(generator, args):
    """The mean latent of --truncation_mean samples when --truncation < 1, else None."""
    if args.truncation >= 1:
        return None
    with torch.no_grad():
        return generator.mean_latent(args.truncation_mean)


def run_inception(args, device):
    inception = load_inception(args.inception, device)
    dataset, indices = open_real_images(args.path, args.size, args.n, args.seed)
    total = len(batch_sizes(len(indices), args.batch))
    mean, cov = inception_statistics(
        inception, real_image_batches(dataset, indices, args.batch), total, desc="real", progress=True
    )
    lmdb_name = os.path.basename(os.path.normpath(args.path))
    out = args.real_stats or os.path.join("metrics", f"inception_{lmdb_name}_{args.size}.npz")
    info = {"size": args.size, "n_sample": len(indices), "lmdb": args.path, "inception": os.path.basename(args.inception)}
    save_statistics(out, mean, cov, **info)
    print(f"wrote {out} (Inception statistics of {len(indices)} real images at {args.size} px)")


def run_fid(args, device):
    if not args.real_stats and not args.path:
        raise SystemExit(
            "fid compares with real images: give --path LMDB or --real_stats FILE (from `metrics.py inception`)"
        )
    inception = load_inception(args.inception, device)
    cached = load_statistics(args.real_stats) if args.real_stats else None
    results = []
    for path, label in zip(args.ckpt, checkpoint_labels(args.ckpt, args.labels)):
        generator, _, config = load_generator(path, device)
        if cached is not None:
            real_mean, real_cov, info = cached
            if "size" in info and int(info["size"]) != generator.size:
                raise SystemExit(
                    f"{args.real_stats} holds statistics of {info['size']} px images; "
                    f"{path} renders {generator.size} px. "
                    f"Compute them at {generator.size} px with: python metrics.py inception --size {generator.size} ..."
                )
        else:
            dataset, indices = open_real_images(args.path, generator.size, args.n, args.seed)
            total = len(batch_sizes(len(indices), args.batch))
            real_mean, real_cov = inception_statistics(
                inception, real_image_batches(dataset, indices, args.batch), total, desc="real", progress=True
            )
        warn_few_fid_images(args.n)
        fakes = generated_batches(
            generator, args.n, args.batch, args.seed, args.truncation, truncation_mean_latent(generator, args)
        )
        fake_mean, fake_cov = inception_statistics(
            inception, fakes, len(batch_sizes(args.n, args.batch)), desc="generated", progress=True
        )
        score = frechet_distance(fake_mean, fake_cov, real_mean, real_cov)
        print(f"{label} ({config.position}): FID {score:.3f} ({args.n} generated images)")
        results.append({"checkpoint": path, "position": config.position, "fid": score})
    write_json(os.path.join(output_folder(args), "fid.json"), "fid", args, results)


def run_report(args, device):
    quality_rows, equivariance_rows, samples = spatial_bias_report(args, device)
    out = output_folder(args, default_name="report")
    os.makedirs(out, exist_ok=True)
    write_markdown(os.path.join(out, "report.md"), quality_rows, equivariance_rows, args)
    write_csv(os.path.join(out, "report.csv"), quality_rows, equivariance_rows)
    draw_plot(os.path.join(out, "report.png"), quality_rows)
    save_samples(os.path.join(out, "samples.png"), samples)
    with open(os.path.join(out, "report.md")) as file:
        print(file.read())
    print(f"wrote {out}/report.md, report.csv, report.png, samples.png")


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    common.add_argument("--batch", type=int, default=8, help="images per generator call")
    common.add_argument("--seed", type=int, default=0, help="seed of latents, noise, shifts and patches")

    models = argparse.ArgumentParser(add_help=False, parents=[common])
    models.add_argument(
        "--ckpt", nargs="+", required=True,
        help="checkpoints; a bare name like 550000.pt means checkpoint/<name>/550000.pt",
    )
    models.add_argument("--name", default=None, help="experiment name: where bare --ckpt names and outputs live")
    models.add_argument("--out", default=None, help="output folder (default metrics/<name>)")
    models.add_argument("--labels", default=None, help="comma-separated names of the checkpoints in outputs")

    equivariance = argparse.ArgumentParser(add_help=False)
    equivariance.add_argument(
        "--noise", choices=NOISE_MODES, default="const",
        help="EQ-T/EQ-R noise, the same in both renders: the model's stored maps (const), "
        "fresh maps per batch (random), or none (zero)",
    )

    real = argparse.ArgumentParser(add_help=False)
    real.add_argument("--path", default=None, help="LMDB of real images (prepare_data.py)")

    truncation = argparse.ArgumentParser(add_help=False)
    truncation.add_argument("--truncation", type=float, default=1.0, help="truncation of the renders")
    truncation.add_argument("--truncation_mean", type=int, default=4096, help="latents averaged for the mean")

    sliced = argparse.ArgumentParser(add_help=False)
    sliced.add_argument("--patches", type=int, default=128, help="7x7 patches per image and pyramid level")
    sliced.add_argument("--directions", type=int, default=128, help="random projections per repeat")
    sliced.add_argument("--repeats", type=int, default=4, help="repeats of the random projections")

    eqt = commands.add_parser("eqt", parents=[models, equivariance], help="translation equivariance, EQ-T (dB)")
    eqt.add_argument("--n", type=int, default=1000, help="number of latents")
    eqt.add_argument("--max_shift", type=float, default=0.125, help="largest translation, fraction of the size")
    eqt.add_argument(
        "--no_circular", dest="circular", action="store_false",
        help="shift an infinite plane (positional models) and compare over the region valid in both",
    )
    eqt.set_defaults(handler=run_eqt)

    eqr = commands.add_parser("eqr", parents=[models, equivariance], help="rotation equivariance, EQ-R (dB)")
    eqr.add_argument("--n", type=int, default=1000, help="number of latents")
    eqr.add_argument("--max_rotation", type=float, default=180.0, help="largest rotation in degrees")
    eqr.set_defaults(handler=run_eqr)

    swd_parser = commands.add_parser(
        "swd", parents=[models, real, truncation, sliced], help="sliced Wasserstein distance (x 1e3)"
    )
    swd_parser.add_argument("--n", type=int, default=1000, help="images per set")
    swd_parser.set_defaults(handler=run_swd)

    fid = commands.add_parser("fid", parents=[models, real, truncation], help="Fréchet Inception distance")
    fid.add_argument("--n", type=int, default=50000, help="generated (and real, with --path) images")
    fid.add_argument("--inception", required=True, help="Inception-v3 state dict file (pytorch-fid or torchvision)")
    fid.add_argument("--real_stats", default=None, help="cached real statistics from `metrics.py inception`")
    fid.set_defaults(handler=run_fid)

    cache = commands.add_parser("inception", parents=[common, real], help="cache Inception statistics of real images")
    cache.add_argument("--inception", required=True, help="Inception-v3 state dict file (pytorch-fid or torchvision)")
    cache.add_argument("--size", type=int, required=True, help="resolution of the real images")
    cache.add_argument("--n", type=int, default=50000, help="real images (all when the LMDB holds fewer)")
    cache.add_argument("--real_stats", default=None, help="output file (default metrics/inception_<lmdb>_<size>.npz)")
    cache.set_defaults(handler=run_inception)

    report = commands.add_parser(
        "report", parents=[models, real, equivariance, sliced], help="quality versus shift and EQ-T of checkpoints"
    )
    report.add_argument("--n", type=int, default=1000, help="images per set and shift")
    report.add_argument(
        "--shifts", default="0,0.0625,0.125,0.25,0.375,0.5", help="shifts as fractions of the image size"
    )
    report.add_argument("--direction", choices=list(SHIFT_DIRECTIONS), default="horizontal", help="shift direction")
    report.add_argument("--inception", default=None, help="Inception-v3 weights: adds FID to the report")
    report.add_argument("--eqt_n", type=int, default=1000, help="latents for EQ-T (0 skips it)")
    report.add_argument("--max_shift", type=float, default=0.125, help="largest EQ-T translation, fraction of the size")
    report.set_defaults(handler=run_report)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command in ("inception", "swd", "report") and not args.path:
        raise SystemExit(f"{args.command} compares with real images: give --path LMDB")
    if hasattr(args, "ckpt"):
        args.ckpt = [resolve_checkpoint(ckpt, args.name) for ckpt in args.ckpt]
    device = choose_device(args.device)
    try:
        args.handler(args, device)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(str(error)) from None


if __name__ == "__main__":
    main(sys.argv[1:])
