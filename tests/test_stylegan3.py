"""The alias-free generator (stylegan3.py) and its op, filtered_lrelu."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

import generate
import metrics
from checkpoint import load_generator
from evaluation.equivariance import rotation_equivariance, translation_equivariance
from model import Generator
from op import filtered_lrelu, filtered_lrelu_ref
from stylegan3 import AliasFreeGenerator, design_lowpass_filter, layer_schedule
from training import gan
from utils.images import psnr

# ---------------------------------------------------------------------------------------------
# filtered_lrelu


def upsample_explicit(x, kernel, up, pad):
    """Zero insertion, zero padding and a true 2-D convolution, with torch.nn.functional only."""
    n, c, h, w = x.shape
    stuffed = x.new_zeros(n, c, h * up, w * up)
    stuffed[:, :, ::up, ::up] = x
    stuffed = F.pad(stuffed, [pad[0], pad[1], pad[2], pad[3]])
    weight = kernel.flip([0, 1]).to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(stuffed, weight, groups=c)


def downsample_explicit(x, kernel, down):
    c = x.shape[1]
    weight = kernel.flip([0, 1]).to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=c, stride=down)


FILTER_CASES = [
    # up, down, padding, separable filters, gain, slope, clamp: the layers of StyleGAN3-T/-R
    (2, 2, (5, 6, 5, 6), True, 2**0.5, 0.2, None),
    (2, 1, (3, 4, 4, 3), False, 2**0.5, 0.2, 0.5),
    (1, 2, (2, 2, 2, 2), True, 1.0, 1.0, 256.0),
    (1, 1, (0, 0, 0, 0), True, 2**0.5, 0.2, None),
]


@pytest.mark.parametrize("up,down,padding,separable,gain,slope,clamp", FILTER_CASES)
def test_filtered_lrelu_equals_upsample_lrelu_downsample(up, down, padding, separable, gain, slope, clamp):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    taps_up, taps_down = 4 * up if up > 1 else 1, 3 * down if down > 1 else 1
    fu, fd = torch.rand(taps_up, dtype=torch.float64), torch.rand(taps_down, dtype=torch.float64)
    fu, fd = fu / fu.sum(), fd / fd.sum()
    fu2, fd2 = fu[:, None] * fu[None, :], fd[:, None] * fd[None, :]
    if not separable:
        fu, fd = fu2, fd2
    out = filtered_lrelu_ref(x, fu, fd, bias, up, down, padding, gain, slope, clamp)

    expected = upsample_explicit(x + bias.view(1, -1, 1, 1), fu2 * up**2, up, padding)
    expected = F.leaky_relu(expected, slope) * gain
    if clamp is not None:
        expected = expected.clamp(-clamp, clamp)
    expected = downsample_explicit(expected, fd2, down)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-12)


@pytest.mark.cuda
@pytest.mark.parametrize("separable", [True, False])
def test_filtered_lrelu_cuda_matches_reference(separable):
    torch.manual_seed(0)
    x = torch.randn(4, 8, 20, 20, device="cuda", requires_grad=True)
    bias = torch.randn(8, device="cuda", requires_grad=True)
    fu = torch.rand(12, device="cuda")
    fu = fu / fu.sum()
    fd = fu if separable else fu[:, None] * fu[None, :]
    args = (fu, fd, bias, 2, 2, (5, 6, 5, 6), 2**0.5, 0.2, 1.0)
    out = filtered_lrelu(x, *args, impl="cuda")
    ref = filtered_lrelu_ref(x, *args)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, bias), grad)
    ref_grads = torch.autograd.grad(ref, (x, bias), grad)
    for fast, slow in zip(grads, ref_grads):
        torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# the generator


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def tiny(arch, seed=0):
    torch.manual_seed(seed)
    return AliasFreeGenerator(32, 32, 2, arch=arch, channel_max=16).eval()


def test_schedule_is_the_papers_at_1024():
    schedule = layer_schedule(1024, channel_base=32768, channel_max=512)
    assert schedule["cutoffs"][0] == 2 and schedule["stopbands"][0] == pytest.approx(2**2.1)
    assert list(schedule["cutoffs"][-3:]) == [512] * 3  # the last two layers and ToRGB are critically sampled
    assert schedule["stopbands"][-1] == pytest.approx(512 * 2**0.3)
    assert schedule["sizes"][0] == 16 + 2 * 10 and list(schedule["sizes"][-2:]) == [1024, 1024]
    assert schedule["channels"][0] == 512 and schedule["channels"][-2] == 32 and schedule["channels"][-1] == 3


def test_filters_are_low_pass_with_unit_gain():
    sinc = design_lowpass_filter(12, cutoff=4, width=4, sampling_rate=32)
    jinc = design_lowpass_filter(12, cutoff=4, width=4, sampling_rate=32, radial=True)
    assert sinc.shape == (12,) and jinc.shape == (12, 12)
    assert sinc.sum().item() == pytest.approx(1) and jinc.sum().item() == pytest.approx(1)
    assert torch.allclose(jinc, jinc.t()) and torch.allclose(jinc, jinc.flip(0))  # radially symmetric
    response = torch.fft.rfft(sinc, 256).abs()  # 256 bins over 32 samples per unit: 8 bins per cycle
    assert response[:8].min() > 0.98 and response[8 * 4] == pytest.approx(0.5, abs=0.01)  # -6 dB at the cutoff
    assert response[8 * 6 :].max() < 0.05  # stopband from cutoff + width / 2


def test_forward_interface_as_the_scripts_call_it():
    generator = tiny("stylegan3-t")
    z = torch.randn(2, 32)
    with torch.no_grad():
        image, latent = generator([z], return_latents=True, noise=[], randomize_noise=False)
        assert image.shape == (2, 3, 32, 32) and latent.shape == (2, 16, 32)
        assert torch.equal(generator([z], shift_h=0, shift_w=0)[0], image)
        assert generator.make_noise(2) == [] and not hasattr(generator, "noise_shapes")
        truncated = generator([z], truncation=0.5)[0]
        centre = generator([generator.w_avg.expand(2, -1)], input_is_latent=True)[0]
        assert torch.allclose(generator([z], truncation=0.0)[0], centre)  # truncation pulls to the tracked mean
        assert not torch.equal(truncated, image)
    for options, message in [
        ({"shift_w": 1.5}, "circular=False"),
        ({"canvas": (32, 33)}, "multiples of 2"),
        ({"canvas": (16, 32)}, "at least 32"),
        ({"scale": 2}, "own scale"),
        ({"noise": [torch.zeros(2, 1, 4, 4)]}, "no noise inputs"),
    ]:
        with pytest.raises(ValueError, match=message):
            generator([z], **options)
    names = set(generator.state_dict())
    assert {"w_avg", "style.1.weight", "affine_fourier.bias", "input.freqs", "input.weight"} <= names
    assert {"layers.0.modulation.weight", "layers.0.magnitude_ema", "layers.14.weight", "layers.14.bias"} <= names


def test_a_canvas_extends_the_plane_right_and_down():
    generator = tiny("stylegan3-t")
    z = torch.randn(2, 32)
    with torch.no_grad():
        image = generator([z])[0]
        wide = generator([z], canvas=(32, 64))[0]
        moved = generator([z], shift_w=-32.0, circular=False)[0]
    assert wide.shape == (2, 3, 32, 64)
    tolerance = 1e-3 * image.abs().max()  # measured: 2e-5 of 0.05 away from the image's right edge
    assert (wide[..., :24] - image[..., :24]).abs().max() < tolerance  # the image is the top-left corner
    assert (wide[..., 36:60] - moved[..., 4:28]).abs().max() < tolerance  # and the rest is the plane beside it


def test_running_statistics_follow_training_only():
    generator = tiny("stylegan3-r")
    with torch.no_grad():
        generator([torch.randn(4, 32)])
        assert generator.w_avg.abs().sum() == 0 and generator.layers[3].magnitude_ema == 1
        generator.train()([torch.randn(4, 32)])
    assert generator.w_avg.abs().sum() > 0 and generator.layers[3].magnitude_ema != 1
    g_ema = tiny("stylegan3-r")
    gan.accumulate(g_ema, generator)  # the EMA generator renders with the trained statistics
    assert torch.equal(g_ema.w_avg, generator.w_avg)
    assert torch.equal(g_ema.layers[3].magnitude_ema, generator.layers[3].magnitude_ema)


LEGACY_DATA = os.path.join(os.path.dirname(__file__), "data", "stylegan3_legacy_transform.pt")
LEGACY_CONFIG = {"arch": "stylegan3-t", "size": 32, "latent": 32, "n_mlp": 2, "channel_max": 16}


def test_checkpoints_of_the_old_input_convention_render_as_before(tmp_path):
    """tests/data/stylegan3_legacy_transform.pt holds, from the code before the input followed
    NVIDIA's convention, the state dict of a tiny StyleGAN3-T with a non-identity learned input
    transform (affine weights N(0, 0.3), bias (0.8, 0.5, 0.3, -0.2); input magnitudes 0.7), and
    its renders of 2 latents, plain and shifted by (1.5, -2) pixels. The renders are bit-exact on
    the CPU that made them; another CPU rounds differently (3e-6 seen between two Xeons), while
    the two conventions differ by 0.49 here."""
    stored = torch.load(LEGACY_DATA, weights_only=True)
    assert "input_convention" not in stored["state"]  # what a checkpoint saved before it was recorded holds
    path = tmp_path / "old.pt"
    torch.save({"g_ema": stored["state"], "args": LEGACY_CONFIG}, path)
    generator, _ = load_generator(str(path))
    z = stored["z"]
    with torch.no_grad():
        assert torch.allclose(generator([z])[0], stored["images"], atol=1e-5)
        shifted = generator([z], shift_h=1.5, shift_w=-2.0, circular=False)[0]
        assert torch.allclose(shifted, stored["shifted"], atol=1e-5)
        # a caller's transform has NVIDIA's meaning for old models too: the learned one, converted
        w = generator.style(z)
        transform = generator.input_transform(w)
        again = generator([w], input_is_latent=True, transform=transform)[0]
    assert (again - stored["images"]).abs().max() < 1e-5
    assert generator.state_dict()["input_convention"] == 0  # and saved again, it stays an old model
    new = tiny("stylegan3-t")
    new.load_state_dict({**stored["state"], "input_convention": new.input_convention})
    with torch.no_grad():
        assert (new([z])[0] - stored["images"]).abs().max() > 1e-2  # the conventions differ for this transform


def test_input_transform_follows_nvidias_convention():
    # q = R (p - t), R = [[c, -s], [s, c]], the whole transform divided by |(c, s)| (t too)
    generator = tiny("stylegan3-t")
    w = generator.style(torch.randn(1, 32))
    rotation, offset = generator.input_frame(torch.tensor([[0.0, 2.0, 0.5, 0.0]]), (0.0, 0.0))
    assert torch.allclose(rotation, torch.tensor([[[0.0, -1.0], [1.0, 0.0]]]))
    assert torch.allclose(offset, torch.tensor([[0.0, 0.25]]))  # R t: t turns with the frame
    quarter = generator.rotate_transform(torch.tensor([[1.0, 0.0, 0.25, 0.0]]), math.pi / 2)
    assert torch.allclose(quarter, torch.tensor([[0.0, -1.0, 0.0, 0.25]]), atol=1e-7)
    with torch.no_grad():
        image = generator([w], input_is_latent=True, transform=torch.tensor([1.0, 0.0, 0.0, 0.0]))[0]
        assert torch.equal(image, generator([w], input_is_latent=True)[0])  # identity at initialisation


def chance_psnr(generator):
    """PSNR between renders of different latents: what an EQ figure is worth at this output scale."""
    with torch.no_grad():
        images = generator([torch.randn(16, 32, generator=torch.Generator().manual_seed(1))])[0]
    return psnr((images - images.roll(1, 0)).square().mean().item())


def test_equivariance_at_initialisation():
    # At initialisation the alias-free generators' outputs are small (output scale 0.25), which
    # raises every PSNR, so each figure is also compared with the PSNR between renders of
    # different latents ("chance"). Measured (seed 0, 16 latents; seed 1 within 3 dB):
    #   StyleGAN3-T, EQ-T plane:      int 74.8, frac 80.5 dB, chance 30.8 dB
    #   StyleGAN3-R, EQ-T plane:      int 99.4, frac 87.6 dB, chance 18.2 dB
    #   StyleGAN2 ('none'), circular: int  9.7, frac 11.0 dB, chance  3.9 dB
    #   EQ-R: StyleGAN3-R 84.6 dB, StyleGAN3-T 33.7 dB
    sg3_t, sg3_r = tiny("stylegan3-t"), tiny("stylegan3-r")
    torch.manual_seed(0)
    sg2 = Generator(32, 32, 2, channel_max=16).eval()
    eqt_t = translation_equivariance(sg3_t, 16, 8, circular=False)
    eqt_2 = translation_equivariance(sg2, 16, 8)
    chance_t, chance_2 = chance_psnr(sg3_t), chance_psnr(sg2)
    for key in ("eqt_int", "eqt_frac"):
        assert eqt_t[key] > eqt_2[key] + 50
        assert eqt_t[key] - chance_t > 35 and eqt_2[key] - chance_2 < 10
    eqr_r, eqr_t = rotation_equivariance(sg3_r, 16, 8), rotation_equivariance(sg3_t, 16, 8)
    chance_r = chance_psnr(sg3_r)
    assert eqr_r > eqr_t + 40
    assert eqr_r - chance_r > 55 and eqr_t - chance_t < 8


# ---------------------------------------------------------------------------------------------
# training and the scripts downstream


def test_discriminator_blur_fades_out():
    settings = gan.StepSettings(blur_sigma=10.0, blur_fade_iterations=100)
    assert [settings.blur_sigma_at(i) for i in (0, 50, 100, 200)] == [10.0, 5.0, 0.0, 0.0]
    images = torch.randn(2, 3, 32, 32)
    assert gan.blur_images(images, 0.0) is images
    blurred = gan.blur_images(images, 2.0)
    assert blurred.shape == images.shape and blurred.std() < 0.5 * images.std()  # white noise loses its highs
    constant = torch.full((1, 3, 32, 32), 0.5)
    assert torch.allclose(gan.blur_images(constant, 2.0)[..., 6:-6, 6:-6], constant[..., 6:-6, 6:-6])


@pytest.mark.parametrize("arch", ["stylegan3-t", "stylegan3-r"])
def test_train_then_generate_and_measure(arch, synthetic_lmdb, tmp_path, monkeypatch):
    command = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "--name",
        arch,
        "--path",
        synthetic_lmdb,
        "--arch",
        arch,
        *"--size 32 --channel_max".split(),
        "16" if arch == "stylegan3-t" else "8",
        *"--latent 32 --batch 4 --n_sample 4 --iter 2 --save_every 2 --sample_every 2 --log_every 1".split(),
        *"--workers 0".split(),
    ]
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert f"{arch} recipe" in result.stdout

    with open(tmp_path / "checkpoint" / arch / "config.json") as file:
        config = json.load(file)
    # NVIDIA's configs: G lr 0.0025, D lr 0.002, no mixing, 2 mapping layers, gamma 2 at 256 px
    assert (config["lr"], config["d_lr"], config["mixing"], config["n_mlp"]) == (0.0025, 0.002, 0.0, 2)
    assert config["r1"] == pytest.approx(2 * (32 / 256) ** 2) and config["g_reg_every"] == 0
    assert config["blur_sigma"] == (10 if arch == "stylegan3-r" else 0)

    path = str(tmp_path / "checkpoint" / arch / "000002.pt")
    generator, loaded = load_generator(path)
    assert isinstance(generator, AliasFreeGenerator) and loaded.arch == arch
    assert generator.layers[0].weight.shape[-1] == (3 if arch == "stylegan3-t" else 1)
    assert generator.layers[0].weight.shape[0] == 16  # -R doubles --channel_max, as NVIDIA's --cmax

    monkeypatch.chdir(tmp_path)
    generate.main(
        ["--name", arch, *"--ckpt 000002.pt --mode shift --n_sample 2 --pics 3 --radius 4 --truncation 0.7".split()]
    )
    assert (tmp_path / "generate" / arch / "shift" / "grid.gif").exists()
    generate.main(["--name", arch, "--ckpt", "000002.pt", "--mode", "rotate", "--n_sample", "2", "--pics", "2"])
    assert (tmp_path / "generate" / arch / "rotate" / "seed0001_0001.png").exists()
    generate.main(["--name", arch, "--ckpt", "000002.pt", "--mode", "canvas", "--width", "64", "--n_sample", "1"])
    assert (tmp_path / "generate" / arch / "canvas" / "grid_32x64.png").exists()
    with pytest.raises(SystemExit, match="own scale"):
        generate.main(["--name", arch, "--ckpt", "000002.pt", "--mode", "scale", "--scales", "2", "--n_sample", "1"])

    out = str(tmp_path / "metrics")
    metrics.main(["eqt", "--ckpt", path, "--n", "4", "--batch", "4", "--no_circular", "--out", out])
    metrics.main(["eqr", "--ckpt", path, "--n", "4", "--batch", "4", "--out", out])
    with open(os.path.join(out, "eqt.json")) as file:
        eqt = json.load(file)["results"][0]
    with open(os.path.join(out, "eqr.json")) as file:
        eqr = json.load(file)["results"][0]
    assert eqt["position"] == arch and eqt["eqt_int"] > 30 and eqr["eqr"] > 20
    with pytest.raises(SystemExit, match="--no_circular"):
        metrics.main(["eqt", "--ckpt", path, "--n", "4", "--batch", "4", "--out", out])
