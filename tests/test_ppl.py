"""Perceptual path length (ppl.py, `metrics.py ppl`) with LPIPS on a random-weight VGG16 trunk:
nothing is downloaded."""

import json

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
