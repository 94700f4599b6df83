"""Adaptive discriminator augmentation (training/augment.py): aligned resampling, identity at p = 0,
second derivatives for R1, and the adaptation of p."""

import math

import pytest
import torch

from training.augment import AdaptiveAugment, apply_color, apply_geometric, augment, rotate2d, sample_color, scale2d


def smooth_images(batch=2, size=32):
    coords = torch.arange(size, dtype=torch.float32) * 2 * math.pi / size
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    image = torch.stack([torch.sin(x + 0.3) * torch.cos(y), torch.cos(x + 2 * y), torch.sin(2 * y + 1)])
    return image.expand(batch, -1, -1, -1).clone()


def test_augment_with_p_zero_is_the_identity():
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    assert augment(images, 0.0) is images


def test_geometric_resampling_is_aligned():
    images = smooth_images()
    identity = torch.eye(3).repeat(2, 1, 1)
    torch.testing.assert_close(apply_geometric(images, identity), images, atol=1e-5, rtol=0)
    # the inverse matrix of a quarter turn: output = torch.rot90(input) up to filtering
    quarter = rotate2d(torch.full((2,), math.pi / 2), 2, "cpu")
    assert (apply_geometric(images, quarter) - torch.rot90(images, 1, (2, 3))).abs().max() < 0.05
    flip = scale2d(torch.full((2,), -1.0), 1, 2, "cpu")
    assert (apply_geometric(images, flip) - images.flip(3)).abs().max() < 0.05


def test_colour_with_p_zero_is_the_identity_matrix():
    color = sample_color(0.0, 3, "cpu")
    assert torch.equal(color, torch.eye(4).repeat(3, 1, 1))
    images = torch.rand(3, 3, 8, 8)
    assert torch.equal(apply_color(images, color), images)


def test_augment_keeps_shape_and_range_and_is_twice_differentiable():
    torch.manual_seed(0)
    images = (torch.rand(8, 3, 32, 32) * 2 - 1).requires_grad_(True)
    augmented = augment(images, 1.0)
    assert augmented.shape == images.shape
    assert torch.isfinite(augmented).all()
    assert augmented.abs().max() < 8  # colour transforms may leave [-1, 1], but not by far
    assert not torch.allclose(augmented, images)

    # R1 through augmentation: gradient of a critic at the images, then its gradient
    weight = torch.randn(4, 3, 3, 3, requires_grad=True)
    score = torch.nn.functional.conv2d(augmented, weight).square().mean()
    (grad,) = torch.autograd.grad(score, images, create_graph=True)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    grad.square().sum().backward()
    assert torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0


def test_adaptive_augment_moves_p_by_the_sign_of_real_predictions():
    ada = AdaptiveAugment(target=0.6, length=1000, update_every=8)
    ada.tune(torch.ones(4, 1))
    assert ada.p == 0  # not yet 8 images
    ada.tune(torch.ones(4, 1))
    assert ada.p == pytest.approx(8 / 1000) and ada.r_t == 1
    for _ in range(4):
        ada.tune(-torch.ones(4, 1))
    assert ada.p == 0  # down by 8/1000 twice, clamped at 0
