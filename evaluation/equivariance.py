"""Equivariance of a generator to translation (EQ-T) and rotation (EQ-R), in dB.

As the alias-free GAN defines them (Karras et al. 2021, metrics/equivariance.py of
NVlabs/stylegan3): the PSNR, with pixel range [-1, 1] and so peak 2, between "render with the
input transformed" and "transform the rendered image", with the squared errors of all samples
summed before one PSNR is taken. Higher is better: a generator that moves its content when
asked, instead of redrawing it, scores high.

Shifts follow utils/shift.py (+shift moves the content down/right, circular by default), so the
reference translation is circular too: a roll for whole pixels, an exact Fourier phase shift
for fractions, the whole image compared. The phase shift is exact for a render periodic on its
canvas; one whose opposite borders do not meet smoothly rings about that seam when shifted so,
which caps its EQ-T frac however equivariant the network. `circular=False` shifts an infinite
plane (positional models) and compares with StyleGAN3's zero-filled and Lanczos-3 translations
over the region valid in both. Rotations use StyleGAN3's band-limited resampling.

A diffusion model (diffusion.py's DiffusionGenerator) is measured on the same footing: EQ-T is
the PSNR between its deterministic DDIM sample (eta 0) from x_T, translated by s afterwards, and
its sample from x_T translated by s (a roll, or a Fourier shift for fractions) with the PE
shifted by s (diffusion_translation_equivariance).
"""

import dataclasses
import math

import torch
from torch.nn import functional as F
from tqdm import tqdm

from diffusion import DiffusionGenerator
from evaluation.common import batch_sizes, module_device, noise_inputs, render
from model import require_positional
from op import upfirdn2d, upsample_padding
from utils.images import psnr
from utils.shift import DEFAULT_NOISE_SHIFT, sinc, translate_images

# ---------------------------------------------------------------------------------------------
# rotating images (StyleGAN3's band-limited affine resampling)


def lanczos_window(x, a):
    x = x.abs() / a
    return torch.where(x < 1, sinc(x), torch.zeros_like(x))


def rotation_matrix(angle):
    """3x3 matrix [[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]] (the layout of the model's transform)."""
    # cos and sin of the angle rounded to float32, in float32, as StyleGAN3 takes them: entries
    # rounded from float64 differ in their last bit, and so do the pixels resampled with them
    angle = torch.as_tensor(angle, dtype=torch.float32)
    cos, sin = angle.cos().item(), angle.sin().item()
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

    # inverted in float32, as StyleGAN3 does: a float64 inverse rounds the sampling grid's matrix
    # differently in its last bit, which moves the bilinear taps enough to change pixels by 4e-5
    theta = torch.inverse(mat.float()).to(images.device)
    theta[:2, 2] *= 2
    theta[0, 2] += 1 / up / width
    theta[1, 2] += 1 / up / height
    theta[0, :] *= width / (width + pad / up * 2)
    theta[1, :] *= height / (height + pad / up * 2)
    theta = theta[:2, :3].unsqueeze(0).repeat(len(images), 1, 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)

    upsampled = upfirdn2d(images, kernel * up**2, up=up, pad=upsample_padding(kernel.shape[0], up, margin=pad))
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


def masked_error(image, expected, mask):
    """(sum of squared differences inside `mask`, number of values inside it) in float64."""
    mask = mask.expand_as(image)
    return ((image - expected).double().square() * mask).sum().item(), mask.double().sum().item()


def random_shift(rng, max_shift, size, integer):
    """(shift_h, shift_w): each uniform in [-max_shift, max_shift] x size, rounded when `integer`."""
    shift_h, shift_w = ((torch.rand(2, generator=rng, dtype=torch.float64) * 2 - 1) * max_shift * size).tolist()
    if integer:
        return float(round(shift_h)), float(round(shift_w))
    return shift_h, shift_w


def check_max_shift(max_shift):
    """Raise ValueError for an EQ-T max_shift outside (0, 1): no shift to measure, or shifts of
    the plane that leave nothing of the image to compare."""
    if not 0 < max_shift < 1:
        raise ValueError(
            f"--max_shift is a fraction of the image size above 0 and below 1 (StyleGAN3: 0.125), not {max_shift}"
        )


@torch.no_grad()
def translation_equivariance(
    generator,
    n_sample=1000,
    batch=8,
    max_shift=0.125,
    circular=True,
    noise_mode="const",
    noise_shift=DEFAULT_NOISE_SHIFT,
    seed=0,
    progress=False,
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
        noise_mode: 'const' | 'random' | 'zero' (`evaluation.common.noise_inputs`).
        noise_shift: 'move' rolls the noise maps of the shifted render with its content, 'keep'
            gives both renders the same maps (StyleGAN3's convention); see utils/shift.py.
    Returns:
        {'eqt_int': dB, 'eqt_frac': dB}.

    A DiffusionGenerator is measured by diffusion_translation_equivariance (noise arguments unused).
    Raises ValueError for a max_shift outside (0, 1) (check_max_shift).
    """
    check_max_shift(max_shift)
    if isinstance(generator, DiffusionGenerator):
        return diffusion_translation_equivariance(generator, n_sample, batch, max_shift, circular, seed, progress)
    if not circular:
        require_positional(generator.position, "non-circular EQ-T (an infinite-plane shift; measure circular shifts)")
    device = module_device(generator)
    size = generator.size
    rng = torch.Generator().manual_seed(seed)
    sums = {"eqt_int": [0.0, 0.0], "eqt_frac": [0.0, 0.0]}
    for count in tqdm(batch_sizes(n_sample, batch), desc="EQ-T", disable=not progress):
        latent = torch.randn(count, generator.style_dim, generator=rng).to(device)
        noises = noise_inputs(generator, count, noise_mode, rng)
        reference = render(generator, latent, noises)
        for key in sums:
            shift_h, shift_w = random_shift(rng, max_shift, size, integer=key == "eqt_int")
            image = render(generator, latent, noises, shift_h, shift_w, noise_shift, circular=circular)
            expected, mask = translate_images(reference, shift_h, shift_w, circular)
            error, values = masked_error(image, expected, mask)
            sums[key][0] += error
            sums[key][1] += values
    return {key: psnr(error / values) for key, (error, values) in sums.items()}


@torch.no_grad()
def diffusion_translation_equivariance(
    generator, n_sample=1000, batch=8, max_shift=0.125, circular=True, seed=0, progress=False
):
    """EQ-T (integer) and EQ-T (fractional) of a diffusion model, in dB.

    Per batch of initial noises x_T (drawn from `seed`): the deterministic DDIM sample (eta 0,
    the generator's step count) of x_T, translated by s afterwards, against the sample of x_T
    translated by s with the PE shifted by s. s is drawn as the GANs' (one per batch, each
    component uniform in [-max_shift, max_shift] x size, rounded for 'eqt_int'); translations are
    circular, rolls for whole pixels and Fourier phase shifts for fractions (utils/shift.py), and
    the squared errors of all samples are summed before one PSNR is taken (peak 2). A model that
    moves its sample with its noise scores high; zero padding and strided convolutions, which
    know where the border is, lower it.

    Returns {'eqt_int': dB, 'eqt_frac': dB}; ValueError for circular=False (a diffusion sample
    is drawn from noise on a finite canvas: only circular shifts move it).
    """
    if not circular:
        raise ValueError("a diffusion model's EQ-T shifts circularly: its noise x_T cannot move as an infinite plane")
    sampler = dataclasses.replace(generator.sampler, sampler="ddim", eta=0.0)
    size = generator.size
    rng = torch.Generator().manual_seed(seed)
    sums = {"eqt_int": [0.0, 0.0], "eqt_frac": [0.0, 0.0]}
    for count in tqdm(batch_sizes(n_sample, batch), desc="EQ-T", disable=not progress):
        x_T, step_seed = generator.make_noise(count, rng=rng)
        latent = torch.zeros(count, 0)
        reference = generator([latent], noise=[x_T, step_seed], sampler=sampler)[0].cpu()
        for key in sums:
            shift_h, shift_w = random_shift(rng, max_shift, size, integer=key == "eqt_int")
            moved_noise, _ = translate_images(x_T, shift_h, shift_w)
            noise = [moved_noise, step_seed]
            image = generator([latent], noise=noise, shift_h=shift_h, shift_w=shift_w, sampler=sampler)[0].cpu()
            expected, mask = translate_images(reference, shift_h, shift_w)
            error, values = masked_error(image, expected, mask)
            sums[key][0] += error
            sums[key][1] += values
    return {key: psnr(error / values) for key, (error, values) in sums.items()}


@torch.no_grad()
def rotation_equivariance(
    generator, n_sample=1000, batch=8, max_rotation=180.0, noise_mode="const", seed=0, progress=False
):
    """EQ-R of a positional generator, in dB (StyleGAN3's definition).

    Per batch: a reference render and a render turned about the image centre by a random angle
    uniform in [-max_rotation, max_rotation] degrees (the generator's `rotation`: its input PE's
    grid turns, composed with the learned affine transform of `affine` models, and so do MS-PE's
    added encodings, as a shift moves them all). The reference is rotated with StyleGAN3's band-limited
    resampling, the rotated render filtered to the same band limit (pseudo-rotation), and both
    compared inside the rotated frame. Both renders get the same noise maps (`noise_mode`):
    a rotation cannot move them.

    Returns the PSNR in dB. Raises ValueError for position 'none', which has no input to rotate,
    and for a diffusion model, whose noise x_T a rotation cannot turn without resampling it.
    """
    if isinstance(generator, DiffusionGenerator):
        raise ValueError("EQ-R turns a GAN's input; a diffusion model's x_T cannot turn unresampled: measure eqt")
    require_positional(generator.position, "EQ-R (a rotation of the input; ideally trained with --affine)")
    device = module_device(generator)
    rng = torch.Generator().manual_seed(seed)
    squared_error, values = 0.0, 0.0
    for count in tqdm(batch_sizes(n_sample, batch), desc="EQ-R", disable=not progress):
        latent = generator.style(torch.randn(count, generator.style_dim, generator=rng).to(device))
        noises = noise_inputs(generator, count, noise_mode, rng)
        angle = (torch.rand([], generator=rng, dtype=torch.float64).item() * 2 - 1) * math.radians(max_rotation)
        reference = render(generator, latent, noises, input_is_latent=True)
        image = render(generator, latent, noises, input_is_latent=True, rotation=angle)
        expected, expected_mask = rotate_images(reference, angle)
        filtered, filtered_mask = pseudo_rotate_images(image, angle)
        error, masked_values = masked_error(filtered, expected, expected_mask * filtered_mask)
        squared_error += error
        values += masked_values
    return psnr(squared_error / values)
