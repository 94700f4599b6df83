"""Texture sticking (Karras et al. 2021, "Alias-free GANs", Figure 1): detail glued to pixel
coordinates instead of moving with the content.

Two pictures and one number, for any generator through a renderer (generate.py's `Renderer`)
that offers, in the space its latents are blended in (W for the GANs):

    renderer.seed_latents(seeds)      -> (latents [N, ...], noise maps, one [N, 1, h, w] per layer)
    renderer.blend(start, end, t)     -> start + t (end - start) for t a number or [N] tensor
    renderer.render_latents(latents, noises, progress=None, **options) -> images [N, 3, H, W] (CPU)

- The averaged image: the mean of `n` renders whose latents lie around a central latent,
  w_i = w_c + spread (w'_i - w_c) with w'_i the latents of independent seeds
  (`neighbour_seeds`). All of them keep the central latent's noise maps, which are pixel-fixed
  by construction (STICKING_NOISE: or each its own seed's, or none). Without sticking the
  average is blurry; with it the detail stays sharp.
- The interpolation strip: one row of pixels from each frame of a walk from the central latent
  to another, stacked top to bottom. Detail that moves with the content draws slanted lines;
  sticking detail draws vertical streaks.
- The sticking number (dB): with E(x) the high-frequency energy of an image x,

      sticking = 10 log10( E(mean_i x_i) / mean_i E(x_i) ),

  E(x) = sum over colour channels and frequencies f with |f| > cutoff * Nyquist of
  |DFT(x * hann)(f)|^2 / (H W), hann a periodic 2-D Hann window (its DFT spans three bins, so
  nothing of the low frequencies leaks above the cutoff, and the border does not add a seam).
  Averaging only shrinks energy, so the number is at most 0 dB, reached when every render shares
  the same high-frequency detail (complete sticking); detail independent between the renders
  gives about -10 log10(n) dB (`floor_db`). Higher means more sticking. It is measured around
  several central latents and reported as mean and standard deviation.
"""

import math

import numpy as np
import torch
from tqdm import tqdm

# neighbour seeds start here, apart from the central seeds (0, 1, ...) that scripts use
NEIGHBOUR_SEED_BASE = 1_000_000
# the defaults of the flags: neighbours' distance from the centre (fraction of the way to an
# independent latent), frequencies counted as high (fraction of Nyquist), central latents measured
DEFAULT_SPREAD = 0.5
DEFAULT_CUTOFF = 0.5
DEFAULT_CENTRES = 8
# the noise maps of the neighbourhood renders: the centre's for all (what a latent walk does),
# each neighbour its own seed's, or none
STICKING_NOISE = ("centre", "own", "zero")


def neighbour_seeds(centre_seed, n):
    """The `n` seeds whose latents surround the central latent of `centre_seed`: a block of its
    own, disjoint from every other centre's block of the same size."""
    start = NEIGHBOUR_SEED_BASE + centre_seed * n
    return range(start, start + n)


def repeat_noise(noises, n):
    """One image's noise maps ([1, 1, h, w] per layer) for `n` images."""
    return [noise.expand(n, *noise.shape[1:]) for noise in noises]


def neighbourhood_renders(renderer, centre, noises, seeds, spread, progress=None, noise="centre", **options):
    """Renders [len(seeds), 3, H, W], clamped to [-1, 1], of the latents a `spread` of the way
    from `centre` ([1, ...]) to those of `seeds`, with the centre's `noises` (or, as `noise` of
    STICKING_NOISE says, the seeds' own or none); `options` go to the render (a projection's
    shift)."""
    if noise not in STICKING_NOISE:
        raise ValueError(f"noise must be one of {', '.join(STICKING_NOISE)}, not {noise!r}")
    others, own_noises = renderer.seed_latents(seeds)
    latents = renderer.blend(centre, others, spread)
    if noise == "own":
        noises = own_noises
    else:
        noises = repeat_noise([layer * (noise == "centre") for layer in noises], len(latents))
    return renderer.render_latents(latents, noises, progress, **options).clamp(-1, 1)


def walk_strip(renderer, start, end, noises, pics, row, progress=None, **options):
    """The interpolation strip [3, pics, W]: row `row` of each of `pics` frames walking from
    latent `start` to `end` ([1, ...] each) with the noise maps `noises`."""
    latents = renderer.blend(start, end, torch.linspace(0, 1, pics))
    frames = renderer.render_latents(latents, repeat_noise(noises, pics), progress, **options).clamp(-1, 1)
    return frames[:, :, row].permute(1, 0, 2)


def check_neighbours(n):
    """Raise ValueError unless `n` neighbourhood renders can make a sticking number: an average
    of one render is that render, and all its detail would count as stuck."""
    if n < 2:
        raise ValueError(f"texture sticking averages at least 2 neighbour renders, not {n}")


def sticking_pictures(renderer, centre, noises, seeds, spread, pics, row=None, progress=None, **options):
    """{'average': [3, H, W] mean of the neighbourhood renders of `seeds`, 'central': [3, H, W]
    the centre's render, 'strip': [3, pics, W] the walk from the centre to the first seed's
    latent, 'sticking_db': the sticking number of these renders}. `centre` [1, ...] and `noises`
    as neighbourhood_renders; `row`: the strip's image row (default: the centre row)."""
    check_neighbours(len(seeds))
    # the centre first: its height judges `row` before the many renders
    central = renderer.render_latents(centre, noises, progress, **options).clamp(-1, 1)[0]
    height = central.shape[1]
    row = height // 2 if row is None else row
    if not 0 <= row < height:
        raise ValueError(f"row {row} is outside the {height}-pixel image: choose 0..{height - 1}")
    renders = neighbourhood_renders(renderer, centre, noises, seeds, spread, progress, **options)
    end, _ = renderer.seed_latents(seeds[:1])
    strip = walk_strip(renderer, centre, end, noises, pics, row, progress, **options)
    return {"average": renders.mean(0), "central": central, "strip": strip, "sticking_db": sticking_db(renders)}


# ---------------------------------------------------------------------------------------------
# the number


def high_frequency_energy(images, cutoff=DEFAULT_CUTOFF):
    """E(x) of the module docstring for every image of [N, C, H, W]: the energy [N] (float64) of
    the Hann-windowed images' spectrum above `cutoff` times the Nyquist frequency (radially)."""
    height, width = images.shape[-2:]
    window = torch.outer(
        torch.hann_window(height, periodic=True, dtype=torch.float64),
        torch.hann_window(width, periodic=True, dtype=torch.float64),
    )
    spectrum = torch.fft.fft2(images.double() * window)
    # frequencies in units of the Nyquist frequency (0.5 cycles per pixel)
    f_h = torch.fft.fftfreq(height, dtype=torch.float64)[:, None] * 2
    f_w = torch.fft.fftfreq(width, dtype=torch.float64)[None, :] * 2
    high = (f_h.square() + f_w.square()).sqrt() > cutoff
    return (spectrum.abs().square() * high).sum(dim=(1, 2, 3)) / (height * width)


def sticking_db(renders, cutoff=DEFAULT_CUTOFF):
    """10 log10(E(mean of `renders`) / mean E(render)) in dB for renders [n, C, H, W]; NaN when
    the renders hold no high-frequency energy at all."""
    mean_energy = high_frequency_energy(renders, cutoff).mean().item()
    average_energy = high_frequency_energy(renders.mean(0, keepdim=True), cutoff).item()
    if mean_energy == 0:
        return math.nan
    return 10 * math.log10(max(average_energy, 1e-300) / mean_energy)


def texture_sticking(
    renderer,
    n=64,
    centres=DEFAULT_CENTRES,
    spread=DEFAULT_SPREAD,
    cutoff=DEFAULT_CUTOFF,
    seed=0,
    progress=False,
    noise="centre",
):
    """The sticking number around the central latents of seeds seed .. seed + centres - 1, each
    with `n` neighbours `spread` away (neighbour_seeds) rendered with the `noise` maps of
    STICKING_NOISE. Returns {'sticking_db': mean,
    'sticking_db_std': standard deviation over the centres (0 for one), 'per_centre': [dB],
    'floor_db': -10 log10(n), about what detail independent between the renders scores}."""
    check_neighbours(n)
    if centres < 1:
        raise ValueError(f"texture sticking needs at least 1 centre, not {centres}")
    scores = []
    with tqdm(total=centres * n, desc="sticking", unit="img", disable=not progress) as bar:
        for centre_seed in range(seed, seed + centres):
            centre, noises = renderer.seed_latents([centre_seed])
            seeds = neighbour_seeds(centre_seed, n)
            renders = neighbourhood_renders(renderer, centre, noises, seeds, spread, bar, noise)
            scores.append(sticking_db(renders, cutoff))
    return {
        "sticking_db": float(np.mean(scores)),
        "sticking_db_std": float(np.std(scores)),
        "per_centre": scores,
        "floor_db": -10 * math.log10(n),
    }
