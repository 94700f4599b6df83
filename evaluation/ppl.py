"""Perceptual path length (PPL; Karras et al., StyleGAN, 2019): how much the image changes,
perceptually, for a small step along the latent space.

For random pairs of latents (z0, z1) and t in [0, 1] (t = 0 with `--sampling end`, uniform with
`full`), the distance is LPIPS(G(l(t)), G(l(t + eps))) / eps^2, with l the spherical
interpolation of z0 and z1 in Z (`--space z`) or the linear interpolation of their mapped
latents in W (`--space w`). Both images of a pair share their noise maps; renders larger than
256 px are average-pooled to 256 before LPIPS, as StyleGAN's PPL does (rosinality's resizes
bilinearly), by the size after the crop as StyleGAN's TensorFlow code does: StyleGAN3 divides
the full resolution by 256, so with --crop from 512 px on it pools the crop to half our size.
The PPL is the mean distance after dropping those below the 1st and above the 99th percentile.
Lower means a smoother latent space.

`ppl.py` (rosinality's command line) and `metrics.py ppl` measure it.
"""

import numpy as np
import torch
from tqdm import tqdm

from evaluation.common import batch_sizes, module_device
from evaluation.perceptual import perceptual_input

SPACES = ("z", "w")
SAMPLINGS = ("end", "full")


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


def slerp(a, b, t):
    """Spherical interpolation of the directions of a and b [N, D] at t [N, 1]; unit vectors."""
    a, b = normalize(a), normalize(b)
    cosine = (a * b).sum(-1, keepdim=True).clamp(-1, 1)
    angle = t * torch.acos(cosine)
    orthogonal = normalize(b - cosine * a)
    return normalize(a * torch.cos(angle) + orthogonal * torch.sin(angle))


def lerp(a, b, t):
    return a + (b - a) * t


def face_crop(image):
    """StyleGAN's PPL crop: rows 3/8..7/8 and columns 2/8..6/8, the face of an FFHQ image."""
    cell = image.shape[2] // 8
    return image[:, :, cell * 3 : cell * 7, cell * 2 : cell * 6]


@torch.no_grad()
def path_distances(
    generator, percept, n_sample, batch, space="w", eps=1e-4, crop=False, sampling="end", seed=0, progress=False
):
    """The PPL distances [n_sample] (numpy) of `generator` measured with the LPIPS `percept`.

    Latents, t and noise maps are drawn on the CPU from `seed`: the same figures on any device.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}, not {space!r}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, not {sampling!r}")
    device = module_device(generator)
    rng = torch.Generator().manual_seed(seed)
    distances = []
    sizes = batch_sizes(n_sample, batch)
    for count in tqdm(sizes, desc="ppl", disable=not progress):
        z = torch.randn(2 * count, generator.style_dim, generator=rng)
        t = torch.rand(count, 1, generator=rng) if sampling == "full" else torch.zeros(count, 1)
        noise = [layer.repeat_interleave(2, 0).to(device) for layer in generator.make_noise(count, rng=rng)]
        z, t = z.to(device), t.to(device)
        if space == "w":
            w = generator.style(z)
            ends = torch.stack([lerp(w[::2], w[1::2], t), lerp(w[::2], w[1::2], t + eps)], 1)
            image, _ = generator([ends.flatten(0, 1)], input_is_latent=True, noise=noise)
        else:
            ends = torch.stack([slerp(z[::2], z[1::2], t), slerp(z[::2], z[1::2], t + eps)], 1)
            image, _ = generator([ends.flatten(0, 1)], noise=noise)
        if crop:
            image = face_crop(image)
        image = perceptual_input(image.float())
        distance = percept(image[::2], image[1::2]).view(count) / eps**2
        distances.append(distance.cpu().double().numpy())
    return np.concatenate(distances)


def filtered_mean(distances):
    """Mean of the distances from the 1st to the 99th percentile (StyleGAN's outlier filter)."""
    low = np.percentile(distances, 1, method="lower")
    high = np.percentile(distances, 99, method="higher")
    return float(distances[(low <= distances) & (distances <= high)].mean())


def perceptual_path_length(
    generator, percept, n_sample, batch, space="w", eps=1e-4, crop=False, sampling="end", seed=0, progress=False
):
    """The PPL (filtered mean distance) of `generator`; see path_distances."""
    return filtered_mean(
        path_distances(generator, percept, n_sample, batch, space, eps, crop, sampling, seed, progress)
    )
