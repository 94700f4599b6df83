"""Shifts: how far content moves, in which unit, and how images and noise move with it.

Sign and unit, everywhere in this project: a shift of (shift_h, shift_w) moves the content
`shift_h` output pixels down and `shift_w` right, fractions allowed. Inside a generator of
output size S, a feature map of resolution r sees the shift s_r = shift / (S / r)
(`shift_at`). Shifts are circular by default, as in the original code: content that leaves one
border comes back at the other. `circular=False` moves an infinite plane instead (models with
a positional encoding).

This module holds every piece of that: the per-resolution shift, the shifted positions of a
positional encoding and the shifted constant input, moving noise maps with the content,
translating images (whole pixels, Fourier, Lanczos-3), per-sample random rolls for training,
and the circle the shift animations follow.
"""

import math

import torch

# What the per-layer noise maps do when a script shifts the content (`--noise_shift`):
# "move" rolls every map with the content, so texture travels with the face it belongs to;
# "keep" leaves them in place in the frame, as StyleGAN3's equivariance metrics do (its
# 'const' noise is a fixed buffer), which costs noisy generators a little EQ-T.
NOISE_SHIFTS = ("move", "keep")
DEFAULT_NOISE_SHIFT = "move"


def shift_at(shift, size, resolution):
    """The shift, in pixels of a `resolution` feature map, of `shift` output pixels of a
    `size`-pixel generator: s_r = shift / (size / r)."""
    return shift / (size // resolution)


# ---------------------------------------------------------------------------------------------
# inside the generator


def shifted_positions(length, shift, circular=True, device=None):
    """Pixel positions 0..length-1 of a positional encoding after a shift of `shift` pixels.

    Circular (the original): the positions are rolled by round(shift) and offset by
    round(shift) - shift, so position i becomes i - shift, plus the length for the entries that
    wrapped around. Otherwise the plane is infinite and position i becomes i - shift.
    """
    shift = float(shift)  # a 0-d tensor too, which round() does not take
    positions = torch.arange(length, dtype=torch.float32, device=device)
    if shift == 0:
        return positions
    if not circular:
        return positions - shift
    whole = round(shift)
    return torch.roll(positions, whole, 0) + (whole - shift)


def subpixel_roll(input, shift, dim):
    """Roll by a real-valued `shift` along `dim`: the roll by floor(shift), linearly blended
    with the roll by floor(shift) + 1 with weight shift - floor(shift) (how the learned constant
    input of position 'none' moves)."""
    if shift == 0:
        return input
    whole = math.floor(shift)
    fraction = shift - whole
    rolled = torch.roll(input, whole, dim)
    if fraction == 0:
        return rolled
    return rolled * (1 - fraction) + torch.roll(input, whole + 1, dim) * fraction


def move_noise(noises, shift_h, shift_w, height, width, noise_shift=DEFAULT_NOISE_SHIFT):
    """Per-layer noise maps for a render shifted by (shift_h, shift_w) output pixels.

    Args:
        noises: list of [N, 1, h, w] maps, one per layer.
        height, width: size of the rendered image; a map of h rows moves by the shift at its
            resolution, round(shift_at(shift_h, height, h)) rows (likewise columns).
        noise_shift: "move" rolls the maps with the content, "keep" returns them unchanged.
    Returns:
        list of maps shaped like `noises`.
    """
    if noise_shift not in NOISE_SHIFTS:
        raise ValueError(f"noise_shift must be one of {', '.join(NOISE_SHIFTS)}, not {noise_shift!r}")
    if noise_shift == "keep" or (shift_h == 0 and shift_w == 0):
        return list(noises)
    moved = []
    for noise in noises:
        rows = round(shift_at(shift_h, height, noise.shape[2]))
        cols = round(shift_at(shift_w, width, noise.shape[3]))
        moved.append(torch.roll(noise, (rows, cols), (2, 3)))
    return moved


# ---------------------------------------------------------------------------------------------
# translating images: the references a shifted render is compared with


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


def roll_each(images, shift_h, shift_w):
    """Roll every image of [N, C, H, W] by its own whole-pixel shift ([N] integer tensors).

    Equals torch.roll(images[i], (shift_h[i], shift_w[i]), (-2, -1)) for every i, in one gather:
    pixel values are only moved, never changed.
    """
    n, channel, height, width = images.shape
    rows = (torch.arange(height, device=images.device) - shift_h.to(images.device)[:, None]) % height
    cols = (torch.arange(width, device=images.device) - shift_w.to(images.device)[:, None]) % width
    images = images.gather(2, rows[:, None, :, None].expand(n, channel, height, width))
    return images.gather(3, cols[:, None, None, :].expand(n, channel, height, width))


# ---------------------------------------------------------------------------------------------
# animations


def circle_shift(frame, frames, radius):
    """(shift_h, shift_w) of frame `frame` of `frames` on the original demo's circle of `radius`
    pixels, starting at (0, radius)."""
    angle = 2 * math.pi * frame / frames
    return math.sin(angle) * radius, math.cos(angle) * radius
