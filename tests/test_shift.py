"""utils/shift.py: the unit and sign of shifts, noise that moves with the content, image translations."""

import math

import pytest
import torch

from utils import shift


def test_shift_at_a_resolution_is_in_that_maps_pixels():
    assert shift.shift_at(16, 256, 4) == 0.25  # a 4x4 input cell spans 64 output pixels
    assert shift.shift_at(16, 256, 256) == 16
    assert shift.shift_at(-3.5, 32, 16) == -1.75


def test_noise_moves_with_the_content_at_each_resolution():
    noises = [torch.randn(2, 1, 4, 4), torch.randn(2, 1, 8, 16), torch.randn(2, 1, 32, 32)]
    moved = shift.move_noise(noises, 8, -16, 32, 32)
    assert torch.equal(moved[0], torch.roll(noises[0], (1, -2), (2, 3)))
    assert torch.equal(moved[1], torch.roll(noises[1], (2, -8), (2, 3)))  # rows of 8, columns of 16
    assert torch.equal(moved[2], torch.roll(noises[2], (8, -16), (2, 3)))
    kept = shift.move_noise(noises, 8, -16, 32, 32, noise_shift="keep")
    assert all(a is b for a, b in zip(kept, noises))
    with pytest.raises(ValueError, match="move, keep"):
        shift.move_noise(noises, 1, 1, 32, 32, noise_shift="drift")


def test_the_circle_starts_to_the_right_and_turns_down():
    assert shift.circle_shift(0, 4, 8) == pytest.approx((0, 8))
    assert shift.circle_shift(1, 4, 8) == pytest.approx((8, 0), abs=1e-9)


def test_roll_each_rolls_every_image_by_its_own_shift():
    images = torch.randn(3, 2, 5, 7)
    shift_h, shift_w = torch.tensor([0, 2, -1]), torch.tensor([3, -4, 7])
    rolled = shift.roll_each(images, shift_h, shift_w)
    for index in range(3):
        expected = torch.roll(images[index], (int(shift_h[index]), int(shift_w[index])), (-2, -1))
        assert torch.equal(rolled[index], expected)


@pytest.mark.parametrize("circular", [True, False])
def test_integer_translate_moves_content_by_plus_shift(circular):
    images = torch.zeros(1, 1, 8, 8)
    images[0, 0, 2, 5] = 1
    moved, mask = shift.integer_translate(images, 3, -4, circular)
    assert moved[0, 0, 5, 1] == 1 and moved.sum() == 1
    if circular:
        assert mask.all()
    else:
        # rows 0..2 and columns 4..7 have no source inside the image
        assert mask[0, 0, 3:, :4].all() and mask.sum() == 5 * 4


def test_fractional_translations_match_the_shifted_function():
    size, shift_h, shift_w = 32, 1.25, -2.5
    axis = torch.arange(size, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")

    def wave(y, x):
        return (torch.cos(2 * math.pi * (2 * x + y) / size) + torch.sin(2 * math.pi * 3 * y / size))[None, None]

    expected = wave(y - shift_h, x - shift_w)
    circular = shift.fourier_translate(wave(y, x), shift_h, shift_w)
    assert torch.allclose(circular, expected, atol=1e-9)

    plane, mask = shift.lanczos_translate(wave(y, x), shift_h, shift_w)
    # StyleGAN3's valid region: every tap of the 6-tap filter lies inside the image
    assert mask.sum() == (size - 5) ** 2
    assert ((plane - expected).abs() * mask).max() < 0.02
