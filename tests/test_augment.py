"""Adaptive discriminator augmentation (training/augment.py): aligned resampling, identity at p = 0,
second derivatives for R1, the adaptation of p, and all of them against rosinality's non_leaking.py."""

import math
import os

import pytest
import torch

from replay import ScriptedDraws
from training.augment import (
    AdaptiveAugment,
    apply_color,
    apply_geometric,
    augment,
    rotate2d,
    sample_color,
    sample_geometric,
    scale2d,
)


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


# ---------------------------------------------------------------------------------------------
# against rosinality/stylegan2-pytorch's non_leaking.py


@pytest.fixture(scope="module")
def rosinality():
    """tests/data/rosinality_augment_reference.pt holds what rosinality/stylegan2-pytorch (commit
    bef283a, non_leaking.py, on the CPU: op.upfirdn2d's upfirdn2d_native, and F.grid_sample for its
    grid_sample, whose hand-written backward no longer runs on torch 2.x) computed:

    - `images` [4, 3, 16, 24] in [-1, 1] and `grad_weight`, drawn after torch.manual_seed(0);
    - `augment`, for p = 0, 0.3 and 1 (each after torch.manual_seed(1 + 10 p)): augment(images, p),
      its (inverse geometric, colour) matrices, the gradient of sum(augmented * grad_weight) with
      respect to the images, and `draws`: every value its samplers returned (category_sample,
      uniform_sample, lognormal_sample, normal_sample, bernoulli_sample, recorded in call order;
      `draw_kinds` names them);
    - `adaptive`: AdaptiveAugment(0.6, 200, update_every=5, "cpu").tune on each of 300 batches of
      4 `real_pred` (exact zeros among them, and one window at exactly r_t = 0.6): p and r_t_stat
      after each call.
    """
    path = os.path.join(os.path.dirname(__file__), "data", "rosinality_augment_reference.pt")
    return torch.load(path, weights_only=True)


def reference_case(rosinality, p):
    (case,) = [case for case in rosinality["augment"] if case["p"] == p]
    return case


# the largest float32 below 1, the most that torch.rand returns
NEARLY_ONE = 1 - 2**-24


def draws_of_ours(reference_draws, p):
    """What torch.rand / randn / randint must return for training.augment's samplers to build the
    transforms that rosinality's drew at probability `p`: each parameter mapped through the bgc
    strengths back to the uniform or normal draw that ours scales, and each Bernoulli selection
    to a uniform just below the transform's probability if it was selected, just above if not
    (by 1e-6 of it: beyond the probability's float32 rounding, so that a gate with any other
    probability decides otherwise where the data have both outcomes). Rosinality draws a
    transform's parameter, then its selection, as ours does; its translations are [2, N] with y
    first, ours [N, 2] with x first."""
    parameters, selections = reference_draws[0::2], reference_draws[1::2]
    flip, quarter_turns, integer_shift, scale, theta_pre, aniso, theta_post, fractional_shift = parameters[:8]
    brightness, contrast, luma_flip, hue, saturation = parameters[8:]
    parameter_draws = [
        ("randint", flip),
        ("randint", quarter_turns),
        ("rand", (integer_shift.flip(0).t() / 0.125 + 1) / 2),
        ("randn", torch.log2(scale) / 0.2),
        ("rand", (theta_pre / math.pi + 1) / 2),
        ("randn", torch.log2(aniso) / 0.2),
        ("rand", (theta_post / math.pi + 1) / 2),
        ("randn", fractional_shift.flip(0).t() / 0.125),
        ("randn", brightness / 0.2),
        ("randn", torch.log2(contrast) / 0.5),
        ("randint", luma_flip),
        ("rand", (hue / math.pi + 1) / 2),
        ("randn", torch.log2(saturation) / 1.0),
    ]
    p_rotate = 1 - math.sqrt(1 - p)  # each of the two rotations: together probability p
    probabilities = [p, p, p, p, p_rotate, p, p_rotate, p] + [p] * 5
    gate_draws = [
        ("rand", torch.where(selected.bool(), probability * (1 - 1e-6), min(probability * (1 + 1e-6), NEARLY_ONE)))
        for selected, probability in zip(selections, probabilities)
    ]
    return [draw for pair in zip(parameter_draws, gate_draws) for draw in pair]


def test_reference_draws_are_one_parameter_then_one_selection_per_transform(rosinality):
    geometric = ["category", "category", "uniform", "lognormal", "uniform", "lognormal", "uniform", "normal"]
    color = ["normal", "lognormal", "category", "uniform", "lognormal"]
    for case in rosinality["augment"]:
        assert case["draw_kinds"][0::2] == [f"{kind}_sample" for kind in geometric + color]
        assert set(case["draw_kinds"][1::2]) == {"bernoulli_sample"}


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_sampled_matrices_match_rosinality_given_the_same_draws(rosinality, p, monkeypatch):
    case = reference_case(rosinality, p)
    batch, _, height, width = rosinality["images"].shape
    scripted = ScriptedDraws(draws_of_ours(case["draws"], case["p"]), monkeypatch)
    geometric = sample_geometric(case["p"], batch, height, width, "cpu")
    color = sample_color(case["p"], batch, "cpu")
    assert not scripted.draws
    # rosinality composes the forward transforms and inverts them (torch.inverse), ours composes
    # the inverses: float32 rounding, measured at most 4e-7 of max(1, |entry|) (colour: 1.2e-7)
    torch.testing.assert_close(geometric, case["geometric"], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(color, case["color"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_resampling_and_colour_match_rosinality_given_the_same_matrices(rosinality, p):
    case = reference_case(rosinality, p)
    images = rosinality["images"].clone().requires_grad_(True)
    augmented = apply_color(apply_geometric(images, case["geometric"]), case["color"])
    (grad,) = torch.autograd.grad((augmented * rosinality["grad_weight"]).sum(), images)
    # ours filters in one 2-D pass with the kernel normalised to unit gain, rosinality's in two
    # 1-D passes with the raw symlet taps (gain 1/2 up, 2 down): measured differences 1.2e-6 in
    # the images (up to 1.9), 2.4e-6 in the gradient (up to 5.2)
    torch.testing.assert_close(augmented, case["augmented"], atol=4e-6, rtol=0)
    torch.testing.assert_close(grad, case["grad"], atol=8e-6, rtol=0)


@pytest.mark.parametrize("p", [0.3, 1.0])  # at p = 0 ours returns the images, rosinality's resamples them
def test_augment_matches_rosinality_given_the_same_draws(rosinality, p, monkeypatch):
    case = reference_case(rosinality, p)
    ScriptedDraws(draws_of_ours(case["draws"], case["p"]), monkeypatch)
    augmented = augment(rosinality["images"], case["p"])
    # the matrices' rounding (above) moves the sampling points by ~1e-6 pixels, in noise
    # images: measured 1.1e-5
    torch.testing.assert_close(augmented, case["augmented"], atol=4e-5, rtol=0)


def test_adaptive_augment_follows_rosinality_p(rosinality):
    reference = rosinality["adaptive"]
    real_pred = reference["real_pred"]
    assert reference["p"].max() == 1 and reference["p"][-1] == 0  # the data reach both bounds
    # rosinality's update_every counts calls of tune, ours real images: the same for equal batches
    update_every = reference["update_steps"] * real_pred.shape[1]
    ada = AdaptiveAugment(target=reference["target"], length=reference["length"], update_every=update_every)
    trace = torch.tensor([(ada.tune(pred), ada.r_t) for pred in real_pred], dtype=torch.float64)
    assert torch.equal(trace, torch.stack([reference["p"], reference["r_t"]], dim=1))
