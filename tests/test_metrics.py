"""The metrics (evaluation/: equivariance.py, swd.py, fid.py, inception.py, spatial_bias.py, and their
command line metrics.py): EQ-T / EQ-R on toy generators with known equivariance, SWD, FID, the Inception
loader, FID's features and distance against pytorch-fid's outputs, and the spatial-bias report end to end."""

import csv
import functools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import metrics
from checkpoint import build_generator
from evaluation import equivariance, fid, inception, spatial_bias, swd
from formulas import formula_state
from model import PositionalInput
from utils import shift
from utils.images import psnr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PeriodicToyGenerator(nn.Module):
    """A stand-in with Generator's call signature whose image is a band-limited periodic function.

    Each colour channel is a sum of plane waves cos / sin(2 pi (k_x x + k_y y) / size) with
    integer frequencies of at most `max_frequency` cycles per image, weighted by a fixed linear
    map of the latent. Evaluated at (x - shift_w, y - shift_h) it is exactly shift-equivariant;
    with `rotation` (radians) its coordinates turn about the centre as the model's PEs do.
    `follow_shift=False` / `follow_rotation=False` make it ignore shifts / rotations.
    """

    def __init__(self, size=32, style_dim=8, max_frequency=2, follow_shift=True, follow_rotation=True):
        super().__init__()
        self.size = size
        self.style_dim = style_dim
        self.position = "sspe"
        self.follow_shift = follow_shift
        self.follow_rotation = follow_rotation
        frequencies = [
            (k_x, k_y)
            for k_x in range(-max_frequency, max_frequency + 1)
            for k_y in range(max_frequency + 1)
            if k_y > 0 or k_x > 0
        ]
        self.register_buffer("frequencies", torch.tensor(frequencies, dtype=torch.float32))
        self.style = nn.Identity()
        self.coefficients = nn.Linear(style_dim, 3 * len(frequencies) * 2)
        with torch.no_grad():
            # pixel standard deviation about 0.5, as a generator's images in [-1, 1]
            weights = torch.randn(self.coefficients.weight.shape, generator=torch.Generator().manual_seed(1))
            self.coefficients.weight.copy_(weights * 0.5 / math.sqrt(style_dim * len(frequencies)))
            self.coefficients.bias.zero_()

    def forward(self, styles, input_is_latent=False, shift_h=0, shift_w=0, circular=True, rotation=None, **noise):
        latent = styles[0]
        batch, centre = len(latent), (self.size - 1) / 2
        axis = torch.arange(self.size, dtype=torch.float32)
        y, x = (grid.expand(batch, -1, -1) for grid in torch.meshgrid(axis, axis, indexing="ij"))
        if self.follow_shift:
            x, y = x - shift_w, y - shift_h
        if rotation is not None and self.follow_rotation:
            r_c, r_s = math.cos(rotation), math.sin(rotation)
            x, y = r_c * (x - centre) + r_s * (y - centre) + centre, -r_s * (x - centre) + r_c * (y - centre) + centre
        k_x, k_y = (k.view(1, -1, 1, 1) for k in self.frequencies.unbind(1))
        phase = 2 * math.pi * (x[:, None] * k_x + y[:, None] * k_y) / self.size  # [N, K, H, W]
        weights = self.coefficients(latent).view(batch, 3, -1, 2, 1, 1)
        image = (weights[:, :, :, 0] * phase.cos()[:, None] + weights[:, :, :, 1] * phase.sin()[:, None]).sum(2)
        return image, None


# ---------------------------------------------------------------------------------------------
# rotating images


def test_rotate_images_matches_the_model_input_transform():
    # one low-frequency PE pair (period 50 px) on a 32x32 grid: smooth enough to resample
    encoding = PositionalInput(4, 4, 4, scale=8)
    angle = 0.6
    transform = torch.tensor([math.cos(angle), math.sin(angle), 0.0, 0.0])
    reference = encoding(1, 32, 32)
    rendered = encoding(1, 32, 32, transform=transform)
    rotated, mask = equivariance.rotate_images(reference, angle)
    assert mask.sum() > 0.3 * 32 * 32  # StyleGAN3 leaves out a filter margin and the corners
    assert ((rotated - rendered).abs() * mask).max() < 0.02
    # the opposite direction would be far off
    wrong, _ = equivariance.rotate_images(reference, -angle)
    assert ((wrong - rendered).abs() * mask).max() > 0.3


# ---------------------------------------------------------------------------------------------
# StyleGAN3's own transforms and PSNR, from reference data

STYLEGAN3_REFERENCE = os.path.join(ROOT, "tests", "data", "nvidia_equivariance.pt")


@pytest.fixture(scope="module")
def stylegan3_reference():
    """What NVIDIA's metrics/equivariance.py produced, for the tests below to compare ours with.

    tests/data/nvidia_equivariance.pt was made once, outside the repository, by running
    metrics/equivariance.py of NVlabs/stylegan3 (commit c233a919a6faee6e36a316ddd4eddababad1adf9)
    unmodified on the CPU (torch_utils' reference upfirdn2d; stand-ins for the modules requests and
    pkg_resources, which the functions used never call) with torch 2.14.1+cu130; it holds only
    their outputs:
    - inputs, after torch.manual_seed(0): randn [1, 2, 32, 32] ('square'), then [2, 1, 20, 36]
      ('wide'): batches, channels and non-square sides;
    - apply_integer_translation and apply_fractional_translation(images, tx, ty) (a=3) at the
      (shift_h, shift_w) pixel shifts stored with them, rounded to float32: integer (5, -3) of
      the square and (-7, 11) of the wide inputs; fractional (-0.3, 6.6), (0, -2) and
      (-27.4, 1.5) (a strip of the image left) of the square and (3.7, -10.2) of the wide ones;
    - apply_fractional_rotation and apply_fractional_pseudo_rotation(images, angle) (a=3) at
      NVIDIA angles 0.4 and -2.3 rad (square) and 1.1 (wide), float32 values;
    - apply_affine_transformation(square, mat, a=3, amax=6) for
      mat = [[0.9, 0.2, 0.05], [-0.15, 1.1, -0.1], [0, 0, 1]];
    - construct_affine_bandlimit_filter(mat, a=3, amax=6, up=4), and (rotation_matrix(-0.4),
      a=3, amax=6, up=1), the filter of the pseudo-rotation by 0.4;
    - compute_equivariance_metrics(num_samples=4, batch_size=2, EQ-T, EQ-T frac and EQ-R) after
      torch.manual_seed(5), on a stand-in generator (20 px, 1 channel: six plane waves of the
      latent's amplitudes and phases evaluated at M applied to the pixel centres, as StyleGAN3's
      SynthesisInput applies its transform M, plus a fixed frame noise of std 0.02): every render
      it asked for, the translations t and angle it drew (replayed from the seed and checked
      against the M it set) and the three PSNRs it returned.
    NVIDIA's masks are [N, C, H, W] and were checked to hold one map for every sample and channel;
    that map is stored, as bool.

    The mapping to our conventions (utils/shift.py: +shift_h moves content down, +shift_w right):
    - NVIDIA's (tx, ty) are fractions of the width and height, x first, and move the content the
      same way: shift_h = ty * H, shift_w = tx * W (NVIDIA multiplies in float32; the stored
      shifts are exactly what it got), and its EQ-T sets M[:2, 2] = -t for a render shifted so;
    - NVIDIA's angle is ours negated: apply_fractional_rotation(x, angle) is
      rotate_images(x, -angle), apply_fractional_pseudo_rotation(x, angle) is
      pseudo_rotate_images(x, -angle), and its EQ-R renders with M = rotation_matrix(-angle),
      our generator's rotation -angle;
    - affine_transform_images and affine_bandlimit_filter take NVIDIA's matrix as it is;
    - our masks are that one [1, 1, H, W] map.
    """
    return torch.load(STYLEGAN3_REFERENCE, weights_only=True)


def test_translations_match_stylegan3_reference(stylegan3_reference):
    """Whole-pixel and Lanczos-3 translations of an infinite plane (circular=False; StyleGAN3 has
    no circular ones) give NVIDIA's images and masks. translate_images sends shifts of whole pixels
    on both axes to integer_translate, whose mask keeps every pixel with a source in the image,
    where NVIDIA's fractional translation, even of (0, -2), keeps only those whose 6 taps all lie
    inside: lanczos_translate is compared for that shift, translate_images for the others (our
    EQ-T frac draws real-valued shifts, whole ones with probability 0)."""
    for case in (stylegan3_reference["square"], stylegan3_reference["wide"]):
        images = case["images"]
        for expected in case["integer"]:
            for translate in (shift.integer_translate, shift.translate_images):
                moved, mask = translate(images, expected["shift_h"], expected["shift_w"], circular=False)
                assert torch.equal(moved, expected["images"])
                assert torch.equal(mask.bool(), expected["mask"])
        for expected in case["fractional"]:
            translations = [shift.lanczos_translate]
            if not (expected["shift_h"].is_integer() and expected["shift_w"].is_integer()):
                translations.append(functools.partial(shift.translate_images, circular=False))
            for translate in translations:
                moved, mask = translate(images, expected["shift_h"], expected["shift_w"])
                assert (moved - expected["images"]).abs().max() < 1e-5
                assert torch.equal(mask.bool(), expected["mask"])


# affine_transform_images samples at torch.inverse(mat) in float32, as NVIDIA's does, and the last
# bit of that inverse depends on torch's LAPACK (MKL) build: torch 2.4.1's rounds those of the
# -2.3 and 1.1 rad rotations apart from 2.11's and 2.14's, and a one-ulp change of the sampling
# matrix moves pixels (up to 4.1) by up to 2.4e-5 (measured), as a float64 inverse does. Given the
# same inverse, ours is NVIDIA's to the bit on either torch; the float32 inverse is checked apart.
RESAMPLED_TOLERANCE = 5e-5


def test_affine_resampling_inverts_in_float32_as_stylegan3(monkeypatch):
    dtypes = []
    inverse = torch.inverse
    monkeypatch.setattr(torch, "inverse", lambda matrix: dtypes.append(matrix.dtype) or inverse(matrix))
    equivariance.rotate_images(torch.zeros(1, 1, 8, 8), 0.4)
    assert dtypes == [torch.float32]


def test_rotations_and_affine_resampling_match_stylegan3_reference(stylegan3_reference):
    """Band-limited rotation, pseudo-rotation, general affine resampling and their filters give
    NVIDIA's images, masks and taps (the resampled images within RESAMPLED_TOLERANCE)."""
    filters = stylegan3_reference["filters"]
    kernel = equivariance.affine_bandlimit_filter(filters["affine_matrix"], a=3, amax=6, up=4)
    assert (kernel - filters["affine_up4"]).abs().max() < 1e-7
    kernel = equivariance.affine_bandlimit_filter(filters["rotation_matrix"], a=3, amax=6, up=1)
    assert (kernel - filters["rotation_up1"]).abs().max() < 1e-7

    square = stylegan3_reference["square"]
    affine = square["affine"]
    transformed, mask = equivariance.affine_transform_images(square["images"], affine["matrix"], a=3, amax=6)
    assert (transformed - affine["images"]).abs().max() < RESAMPLED_TOLERANCE
    assert torch.equal(mask.bool(), affine["mask"])

    for case in (square, stylegan3_reference["wide"]):
        for expected in case["rotations"]:
            angle = -expected["nvidia_angle"]
            rotated, rotated_mask = equivariance.rotate_images(case["images"], angle)
            filtered, filtered_mask = equivariance.pseudo_rotate_images(case["images"], angle)
            assert (rotated - expected["rotated"]).abs().max() < RESAMPLED_TOLERANCE
            assert torch.equal(rotated_mask.bool(), expected["rotated_mask"])
            assert (filtered - expected["pseudo"]).abs().max() < 1e-5
            assert torch.equal(filtered_mask.bool(), expected["pseudo_mask"])


def test_eqt_and_eqr_of_stylegan3_renders_match_its_psnrs(stylegan3_reference):
    """On the renders NVIDIA's compute_equivariance_metrics got, our metrics' arithmetic (the
    translation or rotation of the reference, masked_error's squared errors and counts summed over
    samples and batches, one PSNR of peak 2) gives the EQ-T, EQ-T frac and EQ-R it returned."""
    metric = stylegan3_reference["metric"]
    sums = {"eqt_int": [0.0, 0.0], "eqt_frac": [0.0, 0.0], "eqr": [0.0, 0.0]}
    for batch in metric["batches"]:
        reference = batch["reference"]
        height, width = reference.shape[-2:]
        for key, t, image in (
            ("eqt_int", batch["t_int"], batch["image_int"]),
            ("eqt_frac", batch["t_frac"], batch["image_frac"]),
        ):
            expected, mask = shift.translate_images(
                reference, float(t[1] * height), float(t[0] * width), circular=False
            )
            error, values = equivariance.masked_error(image, expected, mask)
            sums[key][0] += error
            sums[key][1] += values
        angle = -batch["angle"].item()
        expected, expected_mask = equivariance.rotate_images(reference, angle)
        filtered, filtered_mask = equivariance.pseudo_rotate_images(batch["image_rot"], angle)
        error, values = equivariance.masked_error(filtered, expected, expected_mask * filtered_mask)
        sums["eqr"][0] += error
        sums["eqr"][1] += values
    for key, (error, values) in sums.items():
        assert psnr(error / values) == pytest.approx(metric[key], abs=1e-5)


# ---------------------------------------------------------------------------------------------
# equivariance


@pytest.mark.parametrize("circular", [True, False])
def test_eqt_is_high_for_an_equivariant_generator_and_low_when_shifts_are_ignored(circular):
    equivariant = equivariance.translation_equivariance(PeriodicToyGenerator(), n_sample=16, batch=4, circular=circular)
    ignoring = equivariance.translation_equivariance(
        PeriodicToyGenerator(follow_shift=False), n_sample=16, batch=4, circular=circular
    )
    assert equivariant["eqt_int"] > 50 and equivariant["eqt_frac"] > 50
    assert ignoring["eqt_int"] < 20 and ignoring["eqt_frac"] < 20


def test_eqr_is_high_for_a_rotation_equivariant_generator_and_low_when_rotations_are_ignored():
    assert equivariance.rotation_equivariance(PeriodicToyGenerator(), n_sample=8, batch=4) > 50
    assert equivariance.rotation_equivariance(PeriodicToyGenerator(follow_rotation=False), n_sample=8, batch=4) < 20


def test_eqt_of_a_real_generator_sees_the_noise_that_does_not_move_with_the_content():
    torch.manual_seed(0)
    generator = build_generator({"size": 32, "latent": 32, "n_mlp": 2, "position": "mspe", "channel_max": 16}).eval()
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("noise.weight"):
                parameter.fill_(1.0)
    without_noise = equivariance.translation_equivariance(generator, n_sample=4, batch=4, noise_mode="zero")
    with_noise = equivariance.translation_equivariance(
        generator, n_sample=4, batch=4, noise_mode="random", noise_shift="keep"
    )
    assert with_noise["eqt_int"] < without_noise["eqt_int"] - 1
    # the infinite-plane shift of a positional model, compared over the region valid in both
    plane = equivariance.translation_equivariance(generator, n_sample=2, batch=2, circular=False, noise_mode="zero")
    assert all(math.isfinite(value) for value in plane.values())


def test_eqt_is_higher_when_the_noise_moves_with_the_content():
    torch.manual_seed(0)
    generator = build_generator({"size": 32, "latent": 32, "n_mlp": 2, "position": "mspe", "channel_max": 16}).eval()
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("noise.weight"):
                parameter.fill_(1.0)
    scores = {
        noise_shift: equivariance.translation_equivariance(
            generator, n_sample=8, batch=4, noise_mode="random", noise_shift=noise_shift
        )["eqt_int"]
        for noise_shift in ("move", "keep")
    }
    # measured: -1.4 dB moving, -5.8 dB keeping (a tiny untrained model with strong noise)
    assert scores["move"] > scores["keep"] + 2


def test_equivariance_errors_name_the_fix_for_position_none(tmp_path, make_tiny_checkpoint):
    checkpoint = make_tiny_checkpoint(tmp_path / "none.pt", "none")
    # shifts of the plane by the image size or more leave nothing to compare; none measure nothing
    for max_shift in ("1", "0"):
        with pytest.raises(SystemExit, match=f"--max_shift is a fraction .* above 0 and below 1 .*, not {max_shift}"):
            metrics.main(["eqt", "--ckpt", checkpoint, "--max_shift", max_shift, "--n", "2", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="sspe'/'mspe"):
        metrics.main(["eqr", "--ckpt", checkpoint, "--n", "2", "--device", "cpu", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="circular"):
        metrics.main(
            ["eqt", "--ckpt", checkpoint, "--no_circular", "--n", "2", "--device", "cpu", "--out", str(tmp_path)]
        )


def test_eqt_and_eqr_commands_write_their_results(tmp_path, capsys, make_tiny_checkpoint):
    none = make_tiny_checkpoint(tmp_path / "none" / "000010.pt", "none")
    affine = make_tiny_checkpoint(tmp_path / "affine" / "000010.pt", "mspe", affine=True)
    out = str(tmp_path / "out")
    metrics.main(["eqt", "--ckpt", none, affine, "--n", "2", "--batch", "2", "--device", "cpu", "--out", out])
    metrics.main(["eqr", "--ckpt", affine, "--n", "2", "--batch", "2", "--device", "cpu", "--out", out])
    printed = capsys.readouterr().out
    assert "none/000010 (none): EQ-T int" in printed and "affine/000010 (mspe): EQ-R" in printed
    assert os.path.isfile(os.path.join(out, "eqt.json")) and os.path.isfile(os.path.join(out, "eqr.json"))
    # a second run of other settings replaces eqt.json and joins the first in eqt.jsonl
    metrics.main(["eqt", "--ckpt", none, "--n", "3", "--batch", "2", "--device", "cpu", "--out", out])
    with open(os.path.join(out, "eqt.json")) as file:
        assert json.load(file)["settings"]["n"] == 3
    with open(os.path.join(out, "eqt.jsonl")) as file:
        runs = [json.loads(line) for line in file]
    assert [(run["settings"]["n"], len(run["results"])) for run in runs] == [(2, 2), (3, 1)]
    # a folder of results from before the history: the old eqt.json becomes its first line
    os.remove(os.path.join(out, "eqt.jsonl"))
    metrics.main(["eqt", "--ckpt", none, "--n", "2", "--batch", "2", "--device", "cpu", "--out", out])
    with open(os.path.join(out, "eqt.jsonl")) as file:
        assert [json.loads(line)["settings"]["n"] for line in file] == [3, 2]


# ---------------------------------------------------------------------------------------------
# SWD and FID


def swd_of(images_a, images_b):
    set_a = swd.SWDDescriptors(32, patches_per_image=32)
    set_b = swd.SWDDescriptors(32, patches_per_image=32)
    set_a.add(images_a)
    set_b.add(images_b)
    return swd.swd(set_a, set_b, directions=32, repeats=2)


def test_swd_is_zero_for_the_same_set_and_grows_with_noise():
    images = PeriodicToyGenerator()([torch.randn(16, 8, generator=torch.Generator().manual_seed(0))])[0]
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    levels, same = swd_of(images, images)
    assert len(levels) == 2 and same == pytest.approx(0, abs=1e-6)
    _, slightly = swd_of(images, images + 0.05 * noise)
    _, strongly = swd_of(images, images + 0.5 * noise)
    assert 1 < slightly < strongly


NVIDIA_SWD_PPL = os.path.join(ROOT, "tests", "data", "nvidia_swd_ppl.pt")


@pytest.fixture(scope="module")
def progan_swd():
    """What ProGAN's metrics/sliced_wasserstein.py produced, for the tests below to compare ours with.

    The 'swd' part of tests/data/nvidia_swd_ppl.pt was made once, outside the repository, by running
    metrics/sliced_wasserstein.py of tkarras/progressive_growing_of_gans (commit
    2504c3f3cb98ca58751610ad61fa1097313152bd; the file is unchanged since a92638a4, and NVlabs/stylegan
    has none) unmodified with numpy 2.4.6 and scipy 1.17.1. It holds only inputs and their outputs:
    - images_a, images_b: 3 + 3 uint8 images [3, 3, 32, 32] (bilinearly upsampled 8x8 noise plus
      pixel noise, torch seeds 10 and 11), SWD's two pyramid levels 32 and 16;
    - pyr_down(a[:1]), pyr_up(pyr_down(a[:1])) and generate_laplacian_pyramid(a, 2) of the images
      as float32;
    - get_descriptors_for_minibatch(level, 7, 8) of each level of a's pyramid ('pieces_raw_a') and
      finalize_descriptors of a's and b's ('pieces_final_a', 'pieces_final_b');
    - sliced_wasserstein(final_a, final_b, 4, 128) per level ('pieces_sliced');
    - API(3, [3, 32, 32]): feed('reals', a) then feed('fakes', b), each in batches of 2 and 1, end()'s
      [SWD x1e3 at 32, at 16, mean] ('whole'; 7x7 patches, 128 an image, 4 x 128 directions).
    NVIDIA draws patch centres and directions from numpy's global generator; they were replaced by
    ours, replayed from the seeds the tests give SWDDescriptors and sliced_wasserstein (torch's
    generator, seed 0: per add() and level, rows then columns [batch, P, 1, 1]; per repeat a
    [147, 128] normal draw), so both sides cut the same patches and project along the same
    directions. NVIDIA's descriptor holds each patch transposed (its axis 2 runs along x): its
    directions got the same permutation of components, which leaves every projection unchanged.
    """
    return torch.load(NVIDIA_SWD_PPL, weights_only=True)["swd"]


def progan_patches(descriptors):
    """ProGAN's [M, 3, 7, 7] or [M, 147] descriptors in our layout, [M, 3, 7, 7] with axis 2 along y."""
    return descriptors.reshape(len(descriptors), 3, 7, 7).transpose(-1, -2)


def test_laplacian_pyramid_matches_progan(progan_swd):
    """Bit for bit: integer pixels and the binomial kernels' dyadic weights (k / 256, k / 64) leave
    every sum exactly representable in float32, whatever the order of summation."""
    images = progan_swd["images_a"].float()
    assert torch.equal(swd.pyramid_down(images[:1]), progan_swd["pyr_down"])
    assert torch.equal(swd.pyramid_up(swd.pyramid_down(images[:1])), progan_swd["pyr_up"])
    pyramid = swd.laplacian_pyramid(images, 2)
    assert len(pyramid) == len(progan_swd["pyramid"])
    for ours, theirs in zip(pyramid, progan_swd["pyramid"]):
        assert torch.equal(ours, theirs)


def test_swd_patches_and_their_normalisation_match_progan(progan_swd):
    """The patches cut from ProGAN's own pyramid levels are its descriptors exactly; normalised per
    channel over the set they agree to 1.2e-6 (values up to about 4: float32 means and standard
    deviations summed in another order), allowed 1e-5."""
    cutter = swd.SWDDescriptors(32, patches_per_image=8, seed=0)
    assert len(progan_swd["pyramid"]) == len(progan_swd["pieces_raw_a"])
    for band, theirs in zip(progan_swd["pyramid"], progan_swd["pieces_raw_a"]):
        assert torch.equal(cutter.cut(band), progan_patches(theirs))
    for name in ("a", "b"):
        descriptors = swd.SWDDescriptors(32, patches_per_image=8, seed=0)
        descriptors.add(progan_swd[f"images_{name}"].float())
        levels = descriptors.descriptors()
        assert len(levels) == len(progan_swd[f"pieces_final_{name}"])
        for ours, theirs in zip(levels, progan_swd[f"pieces_final_{name}"]):
            assert (ours - progan_patches(theirs).flatten(1)).abs().max() < 1e-5


def test_sliced_wasserstein_matches_progan_along_the_same_directions(progan_swd):
    """On ProGAN's descriptors: 4e-8 apart relatively (it normalises the directions in float64,
    we in float32), allowed 1e-6."""
    levels = progan_swd["pieces_final_a"], progan_swd["pieces_final_b"], progan_swd["pieces_sliced"]
    assert len({len(level) for level in levels}) == 1
    for final_a, final_b, theirs in zip(*levels):
        ours = swd.sliced_wasserstein(progan_patches(final_a).flatten(1), progan_patches(final_b).flatten(1))
        assert ours == pytest.approx(theirs.item(), rel=1e-6)


def test_swd_of_images_in_minus_one_to_one_matches_progan_on_8_bit_images(progan_swd):
    """The whole metric at ProGAN's settings. We measure [-1, 1] images, ProGAN 8-bit ones: the
    per-channel normalisation takes the scale out, and the figures agree to 1.4e-7 relatively
    (allowed 1e-6). ProGAN also rounds renders to 8 bits, which we do not (evaluation/swd.py)."""
    sets = [swd.SWDDescriptors(32, seed=0) for _ in range(2)]
    for descriptors, name in zip(sets, ("images_a", "images_b")):
        for batch in progan_swd[name].split(2):
            descriptors.add(batch.float() / 127.5 - 1)
    levels, mean = swd.swd(*sets)
    assert [*levels, mean] == pytest.approx(progan_swd["whole"].tolist(), rel=1e-6)


def test_fid_is_zero_for_identical_features_symmetric_and_sees_a_mean_shift():
    rng = np.random.default_rng(0)
    features_a = rng.standard_normal((400, 16))
    features_b = rng.standard_normal((400, 16)) * 1.5 + 0.2
    stats_a = fid.feature_statistics(features_a)
    stats_b = fid.feature_statistics(features_b)
    assert fid.frechet_distance(*stats_a, *stats_a) == pytest.approx(0, abs=1e-6)
    assert fid.frechet_distance(*stats_a, *stats_b) == pytest.approx(fid.frechet_distance(*stats_b, *stats_a))
    # equal covariances: the distance is the squared distance of the means, 16 * 1^2
    shifted = fid.feature_statistics(features_a + 1.0)
    assert fid.frechet_distance(*stats_a, *shifted) == pytest.approx(16.0, rel=1e-6)
    # diagonal covariances: the trace term is the sum of (sigma_a - sigma_b)^2 per dimension
    variances_a, variances_b = rng.uniform(0.5, 2, 16), rng.uniform(0.5, 2, 16)
    expected = ((np.sqrt(variances_a) - np.sqrt(variances_b)) ** 2).sum()
    distance = fid.frechet_distance(np.zeros(16), np.diag(variances_a), np.zeros(16), np.diag(variances_b))
    assert distance == pytest.approx(expected, rel=1e-9)


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """State dict files of torchvision's inception_v3 (random weights) and of the FID Inception
    (formula_state's weights, those of the pytorch-fid reference data)."""
    folder = tmp_path_factory.mktemp("inception")
    torch.manual_seed(0)
    torchvision_path = str(folder / "inception_v3_random.pt")
    torch.save(inception.tv_inception.Inception3(init_weights=False).state_dict(), torchvision_path)
    fid_path = str(folder / "pt_inception_formula.pth")
    torch.save(formula_state(inception.fid_inception_v3().state_dict()), fid_path)
    return torchvision_path, fid_path


def test_inception_gives_2048_pool_features_for_both_weight_formats(inception_weights):
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    for path in inception_weights:
        with torch.no_grad():
            features = inception.load_inception(path)(images)
        assert features.shape == (1, 2048) and torch.isfinite(features).all()


def test_missing_inception_weights_say_where_they_come_from(tmp_path):
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05") as error:
        inception.load_inception(str(tmp_path / "missing.pth"))
    assert "inception_v3" in str(error.value) and "IMAGENET1K_V1" in str(error.value)


# ---------------------------------------------------------------------------------------------
# pytorch-fid's FID Inception features and Fréchet distance, from reference data

PYTORCH_FID_REFERENCE = os.path.join(ROOT, "tests", "data", "pytorch_fid_reference.pt")
# the image batches whose features are compared, (count, side): the Inception resizes them to
# its 299 px, up from 64 and 256 px (the default model size), down from 512 px
FORMULA_IMAGE_BATCHES = ((4, 64), (1, 256), (1, 299), (1, 512))


def formula_images(count, side):
    """[count, 3, side, side] float32 images in [-1, 1], a generator's range: a smooth wave of each
    image and channel plus stripes of a 4 px period, which the choice of resampling changes."""
    axis = (torch.arange(side, dtype=torch.float64) + 0.5) / side
    rows, columns = torch.meshgrid(axis, axis, indexing="ij")
    images = torch.empty(count, 3, side, side, dtype=torch.float64)
    for image in range(count):
        for channel in range(3):
            smooth = torch.sin(2 * math.pi * ((image + 1) * columns + (channel + 1) * rows) + image - channel)
            stripes = torch.cos(2 * math.pi * side / 4 * (columns + (image % 2) * rows) + channel)
            images[image, channel] = 0.6 * smooth + 0.4 * stripes
    return images.float()


@pytest.fixture(scope="module")
def pytorch_fid_reference():
    """What mseitzer's pytorch-fid computed, for the tests below to compare ours with.

    tests/data/pytorch_fid_reference.pt was made once, outside the repository, with pytorch-fid
    0.3.0 from PyPI, unmodified, on the CPU (torch 2.14.1+cu130, torchvision 0.29.1, numpy 2.4.6,
    scipy 1.17.1); it holds only its outputs:
    - 'features' {side: [count, 2048] float32} for each (count, side) of FORMULA_IMAGE_BATCHES:
      formula_state (tests/formulas.py) of our fid_inception_v3's state dict was handed to pytorch-fid's
      fid_inception_v3 in place of its download of FID_WEIGHTS_URL (its strict load_state_dict
      took it, and its network's state dict then equalled it entry for entry: its key layout is
      ours); InceptionV3(output_blocks=[3], resize_input=True, normalize_input=True,
      use_fid_inception=True) in eval mode was given (formula_images(count, side) + 1) / 2, its
      input range being [0, 1] where ours is a generator's [-1, 1], and its pool3 output
      [count, 2048, 1, 1] squeezed as get_activations does;
    - 'distances' {case: {'features_a', 'features_b', 'distance'}}: two float64 feature sets of
      16 dimensions (Gaussian, numpy's default_rng(2024), through random mixing matrices, b's
      mean shifted by 0.3) of 64 and 48 samples ('well_conditioned') and of 6 and 5 samples
      ('fewer_samples_than_dimensions', singular covariances, as FID from few images has), their
      statistics np.mean(axis=0) and np.cov(rowvar=False) (calculate_activation_statistics'
      arithmetic) and calculate_frechet_distance of them (default eps; with this scipy its
      sqrtm stays finite even for the singular product, so neither side takes its eps branch);
    - 'pytorch_fid_version'.
    """
    return torch.load(PYTORCH_FID_REFERENCE, weights_only=True)


def test_fid_inception_features_match_pytorch_fid(pytorch_fid_reference, inception_weights):
    """The same weights, loaded from a file as a pt_inception file is, give pytorch-fid's pool3
    features on images of 64 px (resized up to 299, in a batch of 4), 256, 299 and 512 px
    (resized down): the TensorFlow blocks, the bilinear resize and the input range agree.

    In float64 the two networks agree to 3e-14 (measured); in float32 each lies up to 6.2e-5
    from its float64 features (of magnitudes up to 17), so two float32 runs, even with another
    torch's kernels, stay within 2e-4 of each other. Each difference tried moved some feature by
    0.24 or more: count_include_pad in the TensorFlow average pool, Mixed_7c's max pool made an
    average pool, bicubic or align_corners resizing, an antialiased downsampling, [0, 1] input.
    """
    inception_features = inception.load_inception(inception_weights[1])
    for count, side in FORMULA_IMAGE_BATCHES:
        with torch.no_grad():
            features = inception_features(formula_images(count, side))
        expected = pytorch_fid_reference["features"][side]
        assert features.shape == expected.shape == (count, 2048)
        assert (features - expected).abs().max() < 2e-4, side


def test_frechet_distance_matches_pytorch_fid(pytorch_fid_reference):
    """Our statistics and Fréchet distance of two feature sets give pytorch-fid's FID, also when
    there are fewer samples than dimensions. An independent computation of the trace of the
    square root (numpy's eigenvalues of the product) differs from scipy's sqrtm by 1.2e-9
    relative on the singular case, hence the tolerance of 1e-7."""
    for case in pytorch_fid_reference["distances"].values():
        statistics_a = fid.feature_statistics(case["features_a"].numpy())
        statistics_b = fid.feature_statistics(case["features_b"].numpy())
        assert fid.frechet_distance(*statistics_a, *statistics_b) == pytest.approx(case["distance"], rel=1e-7)


# ---------------------------------------------------------------------------------------------
# the report


def test_report_command_end_to_end(synthetic_lmdb, tmp_path, make_tiny_checkpoint):
    none = make_tiny_checkpoint(tmp_path / "none" / "000100.pt", "none")
    mspe = make_tiny_checkpoint(tmp_path / "mspe" / "000100.pt", "mspe")
    out = tmp_path / "report"
    command = [sys.executable, os.path.join(ROOT, "metrics.py"), "report", "--ckpt", none, mspe]
    command += ["--path", synthetic_lmdb, "--n", "4", "--batch", "4", "--eqt_n", "2", "--shifts", "0,0.5"]
    command += ["--patches", "16", "--directions", "32", "--sticking_n", "4", "--device", "cpu", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr

    markdown = (out / "report.md").read_text()
    assert "| 0.5 |" in markdown and "none/000100 SWD x1e3" in markdown and "| mspe/000100 | mspe |" in markdown
    assert "sticking (dB)" in markdown and " ± " in markdown
    with open(out / "report.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(row["checkpoint"], row["shift_px"]) for row in rows] == [
        ("none/000100", "0.0"),
        ("none/000100", "16.0"),
        ("mspe/000100", "0.0"),
        ("mspe/000100", "16.0"),
    ]
    assert all(float(row["swd"]) > 0 and float(row["eqt_int_db"]) > 0 for row in rows)
    assert all(-10 < float(row["sticking_db"]) <= 0 for row in rows)

    plot = np.asarray(Image.open(out / "report.png").convert("RGB")).reshape(-1, 3)
    for colour in spatial_bias.LINE_COLOURS[:2]:  # one line per checkpoint
        rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
        assert (plot == rgb).all(axis=1).sum() > 50
    assert Image.open(out / "samples.png").size[0] > 2 * 32  # one column per shift


def test_report_with_fid_adds_a_fid_column(
    synthetic_lmdb, tmp_path, inception_weights, monkeypatch, make_tiny_checkpoint
):
    # scipy's sqrtm of two 2048x2048 covariances takes a minute on 2 cores: the plumbing is
    # tested here with a cheap stand-in, the distance itself above
    def mean_distance(mean_a, cov_a, mean_b, cov_b):
        return float(np.abs(mean_a - mean_b).sum())

    monkeypatch.setattr(spatial_bias, "frechet_distance", mean_distance)
    mspe = make_tiny_checkpoint(tmp_path / "mspe" / "000100.pt", "mspe")
    out = tmp_path / "report"
    metrics.main(
        ["report", "--ckpt", mspe, "--path", synthetic_lmdb, "--n", "2", "--batch", "2", "--eqt_n", "0"]
        + ["--shifts", "0.5", "--inception", inception_weights[0], "--device", "cpu", "--out", str(out)]
    )
    with open(out / "report.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 1 and float(rows[0]["fid"]) > 0 and rows[0]["eqt_int_db"] == ""
    assert "FID" in (out / "report.md").read_text()
    assert Image.open(out / "report.png").size[0] == 2 * 560  # SWD and FID panels


def test_report_needs_real_images(tmp_path, make_tiny_checkpoint):
    checkpoint = make_tiny_checkpoint(tmp_path / "mspe.pt", "mspe")
    with pytest.raises(SystemExit, match="--path LMDB"):
        metrics.main(["report", "--ckpt", checkpoint, "--device", "cpu"])


@pytest.mark.parametrize("command, flag", [("eqt", "--n"), ("swd", "--batch"), ("report", "--patches")])
def test_a_count_of_zero_is_refused_by_name(command, flag, capsys):
    with pytest.raises(SystemExit):
        metrics.main([command, "--ckpt", "any.pt", flag, "0"])
    assert f"argument {flag}: must be at least 1, not 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command, flags, message",
    [
        ("report", "--shifts ,", "argument --shifts: takes comma-separated numbers"),
        ("report", "--sticking_n 1", "argument --sticking_n: is 0 (skip it) or at least 2 renders, not '1'"),
        ("sticking", "--cutoff 1.5", "argument --cutoff: must be from 0 to below sqrt(2)"),  # NaN in the JSON
    ],
)
def test_settings_that_would_fail_after_measuring_are_refused_first(command, flags, message, capsys):
    with pytest.raises(SystemExit):
        metrics.main([command, "--ckpt", "any.pt", "--path", "any", *flags.split()])
    assert message in capsys.readouterr().err


def test_the_border_band_sees_a_band_along_a_border_and_not_the_wrap_seam():
    """Evenly textured images score about 1; a noisy band along the bottom border scores well above it; a
    textured ramp whose top and bottom rows differ (it does not wrap around) still scores about 1."""
    rng = torch.Generator().manual_seed(0)
    rows = torch.linspace(-1, 1, 32).view(1, 1, 32, 1)
    texture = 0.3 * torch.randn(16, 3, 32, 32, generator=rng)
    even = rows + texture  # textured vertical ramp: its top and bottom rows differ
    banded = even.clone()
    banded[:, :, -3:] += torch.randn(16, 3, 3, 32, generator=rng)

    def band(images):
        return spatial_bias.border_ratio(spatial_bias.laplacian_energy(images))

    assert 0.8 < band(even) < 1.25
    assert band(banded) > 2
