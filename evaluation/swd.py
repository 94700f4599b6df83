"""Sliced Wasserstein distance between two image sets (ProGAN, Karras et al. 2018,
metrics/sliced_wasserstein.py): 7x7 patches of every level of a Laplacian pyramid, normalised
per channel, compared along random directions. Reported x 1e3, per level and averaged; lower
is better. Needs no pretrained network, so it runs anywhere.

ProGAN measures 8-bit images, its renders rounded to them; we measure images as they come, in
[-1, 1] (the normalisation takes the scale out). On 32 px faces, rounding renders to 8 bits moves
SWD by up to about 0.5%.
"""

import numpy as np
import torch
from torch.nn import functional as F

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
