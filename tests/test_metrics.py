"""The metrics (evaluation/: equivariance.py, swd.py, fid.py, inception.py, spatial_bias.py, and their
command line metrics.py): EQ-T / EQ-R on toy generators with known equivariance, SWD, FID, the Inception
loader and the spatial-bias report end to end."""

import csv
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
from model import PositionalInput

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
    """Random-weight state dicts of torchvision's inception_v3 and of the FID Inception."""
    folder = tmp_path_factory.mktemp("inception")
    torch.manual_seed(0)
    torchvision_path = str(folder / "inception_v3_random.pt")
    torch.save(inception.tv_inception.Inception3(init_weights=False).state_dict(), torchvision_path)
    fid_path = str(folder / "pt_inception_random.pth")
    torch.save(inception.fid_inception_v3().state_dict(), fid_path)
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
