"""Perceptual path length (ppl.py, `metrics.py ppl`) with LPIPS on a random-weight VGG16 trunk:
nothing is downloaded."""

import json
import math
import os

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import metrics
import ppl
from evaluation import ppl as ppl_metric
from evaluation.perceptual import build_lpips


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    """A randomly initialised torchvision vgg16 `features` state dict (the real file's shape)."""
    torch.manual_seed(0)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    path = tmp_path_factory.mktemp("vgg") / "vgg16_random.pt"
    torch.save({f"features.{key}": value for key, value in features.state_dict().items()}, path)
    return str(path)


@pytest.fixture(scope="module")
def percept(vgg_weights):
    return build_lpips(vgg_weights, "cpu")


class ToyGenerator(nn.Module):
    """Images a fixed pattern plus `sensitivity` times a smooth function of the latent."""

    style_dim = 8

    def __init__(self, sensitivity):
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.register_buffer("pattern", torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1)
        self.register_buffer("projection", torch.randn(8, 3 * 32 * 32, generator=generator))
        self.style = nn.Identity()
        self.sensitivity = sensitivity

    def make_noise(self, batch, rng=None):
        return []

    def forward(self, styles, input_is_latent=False, noise=None):
        change = torch.tanh(styles[0] @ self.projection).view(-1, 3, 32, 32)
        return self.pattern + self.sensitivity * 0.5 * change, None


@pytest.mark.parametrize("space", ["z", "w"])
def test_ppl_is_zero_when_the_image_ignores_the_latent_and_grows_with_sensitivity(percept, space):
    scores = [
        ppl_metric.perceptual_path_length(ToyGenerator(sensitivity), percept, 16, 8, space=space, sampling="full")
        for sensitivity in (0.0, 0.1, 1.0)
    ]
    assert scores[0] == pytest.approx(0, abs=1e-6)
    assert 0 < scores[1] < scores[2]


def test_slerp_ends_at_its_inputs_and_stays_on_the_sphere():
    a, b = torch.randn(4, 16), torch.randn(4, 16)
    assert torch.allclose(ppl_metric.slerp(a, b, torch.zeros(4, 1)), ppl_metric.normalize(a), atol=1e-5)
    assert torch.allclose(ppl_metric.slerp(a, b, torch.ones(4, 1)), ppl_metric.normalize(b), atol=1e-4)
    assert torch.allclose(ppl_metric.slerp(a, b, torch.full((4, 1), 0.3)).norm(dim=1), torch.ones(4))


def test_the_percentile_filter_drops_the_outliers():
    distances = np.concatenate([np.full(198, 1.0), [0.0, 1e6]])
    assert ppl_metric.filtered_mean(distances) == pytest.approx(1.0)


NVIDIA_SWD_PPL = os.path.join(os.path.dirname(__file__), "data", "nvidia_swd_ppl.pt")


@pytest.fixture(scope="module")
def stylegan3_ppl():
    """What StyleGAN3's metrics/perceptual_path_length.py produced, for the tests below.

    The 'ppl' part of tests/data/nvidia_swd_ppl.pt was made once, outside the repository, by running
    metrics/perceptual_path_length.py of NVlabs/stylegan3 (commit c233a919a6faee6e36a316ddd4eddababad1adf9)
    on the CPU with torch 2.14.1 and numpy 2.4.6, changed only where numpy 2 removed percentile's
    `interpolation` keyword (now `method`, same values). It holds only inputs and their outputs:
    - 'interpolation': z0, z1 [8, 8] (torch seed 2) and t [8, 1] (0 to 1, 0.4999 and 0.5 among
      them), its slerp(z0, z1, t) and slerp(z0, z1, t + 1e-4), and w0.lerp(w1, t) of
      PPLSampler's [N, num_ws, w_dim] layout with z0, z1 for w, in float32 and float64;
    - 'crop_maps': PPLSampler(crop=True)'s crop of 64, 60 and 36 px renders whose pixels hold
      their own index (recorded at its feature detector, undoing its [0, 255] scaling);
    - 'cases': compute_ppl(num_samples n, epsilon 1e-4, space, sampling, crop, batch_size) of
      StandInGenerator's formulas behind StyleGAN3's G interface (mapping returns one w per
      sample, [N, 1, 8]; no noise buffers) with a feature detector whose squared embedding
      distance is msd below: the per-pair distances PPLSampler returned and the PPL. Its
      torch.rand and torch.randn were replaced by the draws of our path_distances(seed) replayed
      (per batch z [2 * count, 8], pairs interleaved, then t [count, 1] when sampling is full),
      so both sides measure the same pairs.
    """
    return torch.load(NVIDIA_SWD_PPL, weights_only=True)["ppl"]


class StandInGenerator(nn.Module):
    """The generator the PPL reference data were made with: a normalised linear mapping and the
    tanh of a linear map of w as a `size` px image (weights from torch seed 1), no noise maps."""

    style_dim = 8

    def __init__(self, size):
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.register_buffer("mapping_weight", torch.randn(8, 8, generator=generator))
        self.register_buffer("synthesis_weight", torch.randn(8, 3 * size * size, generator=generator))
        self.size = size

    def style(self, z):
        return (z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)) @ self.mapping_weight / math.sqrt(8)

    def make_noise(self, batch, rng=None):
        return []

    def forward(self, styles, input_is_latent=False, noise=None):
        w = styles[0] if input_is_latent else self.style(styles[0])
        return torch.tanh(w @ self.synthesis_weight / math.sqrt(8)).view(-1, 3, self.size, self.size), None


def msd(image_a, image_b):
    """The stand-in for LPIPS: the mean squared difference of two [-1, 1] images."""
    return (image_a - image_b).square().flatten(1).mean(1)


def test_slerp_and_lerp_match_stylegan3(stylegan3_ppl):
    """slerp is StyleGAN3's to the bit here (our clamp of the cosine only acts where rounding would
    make its acos NaN); 1e-6 leaves room for other CPUs' vectorised acos / sin / cos. lerp: torch.lerp
    computes b - (b - a)(1 - t) from t = 0.5 on, a float32 ulp (1.2e-7 here) from a + (b - a) t."""
    reference = stylegan3_ppl["interpolation"]
    for bits, dtype, tolerance in (("32", torch.float32, 1e-6), ("64", torch.float64, 1e-12)):
        z0, z1, t = (reference[name].to(dtype) for name in ("interp_z0", "interp_z1", "interp_t"))
        for step, suffix in ((0, ""), (1e-4, "eps_")):
            slerped = ppl_metric.slerp(z0, z1, t + step)
            assert (slerped - reference[f"slerp_{suffix}{bits}"]).abs().max() <= tolerance
            assert (ppl_metric.lerp(z0, z1, t + step) - reference[f"lerp_{suffix}{bits}"]).abs().max() <= tolerance


def test_face_crop_matches_stylegan3(stylegan3_ppl):
    for size, theirs in stylegan3_ppl["crop_maps"].items():
        indices = torch.arange(size * size, dtype=torch.int32).view(1, 1, size, size)
        assert torch.equal(ppl_metric.face_crop(indices)[0, 0], theirs)


def test_path_distances_and_ppl_match_stylegan3(stylegan3_ppl):
    """Both spaces and samplings, the face crop at 64 px and the average pooling of 512 px renders
    to 256. An eps = 1e-4 difference of float32 images is itself rounded: StyleGAN3's own float32
    distances differ from a float64 run of it by up to 5.6e-3 (its PPL by 1.6e-4). Ours differ
    from its float32 ones by up to 1.4e-3 (w, full sampling: torch.lerp rounds apart from
    a + (b - a) t) and its PPL by 3.1e-5: allowed 1e-2 and 2e-4.

    Not compared: with --crop above 256 px StyleGAN3 pools by the full resolution // 256, a 512 px
    render's 256 px crop to 128 px, where we (and StyleGAN's TensorFlow code) pool by the crop's
    own size, so not at all (this stand-in's PPL comes out 4.0 times StyleGAN3's); LPIPS itself
    (StyleGAN3's takes [0, 255] images, lpips [-1, 1]); the noise maps (StyleGAN3 draws one for a
    whole batch, we one per pair)."""
    for case in stylegan3_ppl["cases"]:
        settings = {key: case[key] for key in ("space", "eps", "crop", "sampling", "seed")}
        distances = ppl_metric.path_distances(StandInGenerator(case["size"]), msd, case["n"], case["batch"], **settings)
        theirs = case["distances"].double().numpy()
        np.testing.assert_allclose(distances, theirs, rtol=1e-2)
        assert ppl_metric.filtered_mean(distances) == pytest.approx(case["ppl"], rel=2e-4)


def test_the_percentile_filter_matches_stylegan3(stylegan3_ppl):
    """On StyleGAN3's own distances: its float32 mean of the kept ones is 6e-8 from ours, allowed
    1e-6. Of 200 distances the filter drops the smallest and the largest, moving the mean by 0.5%
    to 1.1%."""
    for case in stylegan3_ppl["cases"]:
        theirs = case["distances"].double().numpy()
        assert ppl_metric.filtered_mean(theirs) == pytest.approx(case["ppl"], rel=1e-6)


def test_the_original_command_line_and_the_metrics_command(
    tmp_path, monkeypatch, capsys, vgg_weights, make_tiny_checkpoint
):
    ckpt = make_tiny_checkpoint(tmp_path / "checkpoint" / "tiny" / "000100.pt", position="mspe")
    monkeypatch.chdir(tmp_path)
    ppl.main(
        [
            *"--space w --batch 4 --n_sample 8 --size 32 --eps 1e-2 --crop --sampling full".split(),
            *"--lpips_weights".split(),
            vgg_weights,
            "--device",
            "cpu",
            ckpt,
        ]
    )
    printed = float(capsys.readouterr().out.split("ppl:")[1].split()[0])
    with open(tmp_path / "metrics" / "tiny" / "ppl.json") as file:
        written = json.load(file)["results"][0]
    assert written["ppl"] == pytest.approx(printed) and printed > 0
    metrics.main(
        [
            "ppl",
            "--ckpt",
            ckpt,
            *"--space z --n 4 --batch 4 --lpips_weights".split(),
            vgg_weights,
            *"--device cpu --out".split(),
            str(tmp_path / "out"),
        ]
    )
    with open(tmp_path / "out" / "ppl.json") as file:
        assert json.load(file)["results"][0]["ppl"] > 0


def test_an_alias_free_checkpoint_is_labelled_by_its_architecture(tmp_path, capsys, vgg_weights, make_tiny_checkpoint):
    ckpt = make_tiny_checkpoint(tmp_path / "sg3.pt", position="none", arch="stylegan3-t")
    out = tmp_path / "out"
    metrics.main(
        ["ppl", "--ckpt", ckpt, "--n", "2", "--lpips_weights", vgg_weights, "--device", "cpu", "--out", str(out)]
    )
    assert "(stylegan3-t): PPL" in capsys.readouterr().out
    with open(out / "ppl.json") as file:
        assert json.load(file)["results"][0]["position"] == "stylegan3-t"


def test_without_network_lpips_says_how_to_proceed(tmp_path, monkeypatch, make_tiny_checkpoint):
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt", position="mspe")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "")
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # unreachable
    with pytest.raises(SystemExit, match="--lpips_weights"):
        ppl.main(["--n_sample", "2", "--batch", "2", "--device", "cpu", ckpt])
