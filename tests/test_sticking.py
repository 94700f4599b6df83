"""Texture sticking (evaluation/sticking.py, generate.py --mode sticking, metrics.py sticking),
interpolation videos (--mode interpolate) and projector.py's latents as input (--projection of
generate.py and apply_factor.py), on constructed generators and tiny checkpoints."""

import json
import math
import os
import sys

import pytest
import torch
from PIL import Image
from torch import nn

import apply_factor
import generate
import metrics
import projector
from checkpoint import load_generator
from closed_form_factorization import main as factorize_main
from evaluation import sticking
from evaluation.sticking import STICKING_NOISE, high_frequency_energy, texture_sticking
from utils.images import to_tensor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACES = [os.path.join(ROOT, "ref_face", name) for name in ("00006.png", "00003.png")]
KINDS = {"mspe": {"position": "mspe"}, "swagan": {"position": "none", "arch": "swagan"}}
KINDS["stylegan3-t"] = {"position": "none", "arch": "stylegan3-t"}
KINDS["ddpm"] = {"position": "mspe", "arch": "ddpm", "channels": 8, "channel_mult": "1,2", "num_res_blocks": 1}
KINDS["ddpm"].update(attention_resolutions="", dropout=0.0)


def fourier_shift(image, offsets):
    """[N, C, H, W]: the periodic image [C, H, W] moved by each (down, right) of offsets [N, 2]."""
    height, width = image.shape[-2:]
    f_h = torch.fft.fftfreq(height)[:, None]
    f_w = torch.fft.fftfreq(width)[None, :]
    phase = -2j * math.pi * (f_h * offsets[:, 0, None, None] + f_w * offsets[:, 1, None, None])
    return torch.fft.ifft2(torch.fft.fft2(image)[None] * phase.exp()[:, None]).real


class TextureToyGenerator(nn.Module):
    """A stand-in with Generator's call signature: a smooth blob and a fine random texture, moved
    by an offset that is a fixed linear map of the latent (about 6 pixels between a centre and
    its neighbours at spread 0.5). `sticking=True` pastes the texture at the same pixels whatever
    the latent and moves only the blob; False moves the whole picture, its texture with it."""

    def __init__(self, sticking, size=32, style_dim=8):
        super().__init__()
        self.sticking, self.size, self.style_dim, self.n_latent = sticking, size, style_dim, 1
        self.style = nn.Identity()
        rng = torch.Generator().manual_seed(0)
        axis = torch.arange(size, dtype=torch.float32) - size / 2
        blob = (-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * 6**2)).exp()
        self.register_buffer("blob", 0.5 * blob.expand(3, -1, -1))
        self.register_buffer("texture", 0.2 * torch.randn(3, size, size, generator=rng))
        self.register_buffer("to_offset", torch.randn(style_dim, 2, generator=rng) * 8 / math.sqrt(style_dim))

    @property
    def device(self):
        return self.blob.device

    def make_noise(self, batch=1, *, canvas=None, scale=None, rng=None):
        return []

    def forward(self, styles, input_is_latent=False, noise=None, truncation=1, truncation_latent=None):
        offsets = styles[0] @ self.to_offset
        if self.sticking:
            return fourier_shift(self.blob, offsets) + self.texture, None
        return fourier_shift(self.blob + self.texture, offsets), None


def test_sticking_is_high_for_a_pasted_texture_and_low_for_one_that_moves():
    pasted = texture_sticking(generate.Renderer(TextureToyGenerator(sticking=True)), n=32, centres=3)
    moving = texture_sticking(generate.Renderer(TextureToyGenerator(sticking=False)), n=32, centres=3)
    assert pasted["sticking_db"] > -1.5  # 0 dB: the same detail at the same pixels in every render
    assert moving["sticking_db"] < pasted["floor_db"] + 3  # -15 dB: the detail averages out
    assert pasted["sticking_db"] - moving["sticking_db"] > 10
    assert len(pasted["per_centre"]) == 3 and pasted["sticking_db_std"] >= 0


def test_high_frequency_energy_ignores_smooth_content_and_sees_fine_detail():
    axis = torch.arange(32, dtype=torch.float32)
    smooth = torch.cos(2 * math.pi * 2 * axis / 32).expand(1, 3, 32, 32)  # 2 cycles: far below the cutoff
    fine = torch.cos(math.pi * 0.8 * axis).expand(1, 3, 32, 32)  # 0.8 of Nyquist
    assert high_frequency_energy(smooth).item() < 1e-8  # float32 rounding of the image only
    assert high_frequency_energy(fine).item() > 100


@pytest.fixture(scope="module")
def kinds(tmp_path_factory, make_tiny_checkpoint):
    """A folder holding checkpoint/<kind>/000100.pt: a tiny untrained generator of every kind."""
    folder = tmp_path_factory.mktemp("sticking")
    for kind, config in KINDS.items():
        make_tiny_checkpoint(folder / "checkpoint" / kind / "000100.pt", **config)
    return folder


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_generator_kind_writes_the_three_sticking_pictures(kinds, kind, monkeypatch, capsys):
    monkeypatch.chdir(kinds)
    generate.main(["--name", kind, "--ckpt", "000100.pt", "--mode", "sticking", "--n_sample", "6", "--pics", "5"])
    folder = kinds / "generate" / kind / "sticking"
    sizes = {name: Image.open(folder / f"seed0000_{name}.png").size for name in ("average", "central", "strip")}
    assert sizes == {"average": (32, 32), "central": (32, 32), "strip": (32, 5)}
    assert "seed0000: texture sticking" in capsys.readouterr().out


def test_a_strip_row_outside_the_image_or_a_single_render_is_refused_before_the_renders(kinds, monkeypatch):
    monkeypatch.chdir(kinds)

    def no_renders(*_args, **_kwargs):
        raise AssertionError("the neighbourhood was rendered before --row was checked")

    monkeypatch.setattr(sticking, "neighbourhood_renders", no_renders)
    with pytest.raises(SystemExit, match="row 32 is outside the 32-pixel image: choose 0..31"):
        generate.main(["--name", "mspe", "--ckpt", "000100.pt", "--mode", "sticking", "--n_sample", "6", "--row", "32"])
    # one render is its own average: it would print a sticking number of 0 dB, all detail stuck
    with pytest.raises(SystemExit, match="texture sticking averages at least 2 neighbour renders, not 1"):
        generate.main(["--name", "mspe", "--ckpt", "000100.pt", "--mode", "sticking", "--n_sample", "1"])


def test_sticking_command_writes_mean_and_spread_of_every_checkpoint(kinds, monkeypatch):
    monkeypatch.chdir(kinds)
    paths = [f"checkpoint/{kind}/000100.pt" for kind in ("mspe", "stylegan3-t")]
    metrics.main(["sticking", "--ckpt", *paths, "--n", "4", "--centres", "2", "--device", "cpu", "--out", "out"])
    results = json.loads((kinds / "out" / "sticking.json").read_text())["results"]
    assert [len(result["per_centre"]) for result in results] == [2, 2]
    assert all(result["floor_db"] - 6 < result["sticking_db"] <= 0 for result in results)


def test_noise_maps_fixed_to_pixels_are_sticking_detail(kinds):
    generator, _ = load_generator(str(kinds / "checkpoint" / "mspe" / "000100.pt"))
    with torch.no_grad():
        for name, weight in generator.named_parameters():
            if name.endswith("noise.weight"):  # untrained, the noise is switched off
                weight.fill_(1.0)
    renderer = generate.Renderer(generator)
    scores = {noise: texture_sticking(renderer, 8, 2, noise=noise)["sticking_db"] for noise in STICKING_NOISE}
    assert scores["centre"] > scores["own"] + 1 and scores["centre"] > scores["zero"] + 1


def gif_frames(path):
    with Image.open(path) as image:
        return image.n_frames


def test_interpolate_writes_a_gif_of_every_step_without_imageio_ffmpeg(kinds, monkeypatch, capsys):
    monkeypatch.chdir(kinds)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if the extra were not installed
    generate.main("--name mspe --ckpt 000100.pt --mode interpolate --seeds 3,0,5 --frames_per_step 4".split())
    assert gif_frames(kinds / "generate" / "mspe" / "interpolate" / "walk.gif") == 2 * 4 + 1
    assert "9 frames, GIF" in capsys.readouterr().out


def test_interpolate_writes_an_mp4_with_imageio_ffmpeg(kinds, monkeypatch, capsys):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    monkeypatch.chdir(kinds)
    generate.main("--name mspe --ckpt 000100.pt --mode interpolate --n_sample 2 --frames_per_step 6".split())
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(kinds / "generate" / "mspe" / "interpolate" / "walk.mp4"))
    assert frames == 7 and "7 frames, mp4" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["mspe", "ddpm"])
def test_the_walk_passes_through_every_seed_image(kinds, kind):
    generator, _ = load_generator(str(kinds / "checkpoint" / kind / "000100.pt"))
    renderer = generate.renderer_for(generator)
    walk = generate.walk_frames(renderer, generate.inputs_of_seeds(generator, [3, 0]), 4)
    keyframes = generate.grid_images(renderer, [3, 0])
    assert len(walk) == 5
    assert torch.allclose(walk[0], keyframes[0], atol=1e-5) and torch.allclose(walk[4], keyframes[1], atol=1e-5)
    assert (walk[2] - keyframes[0]).abs().mean() > 1e-3


# ---------------------------------------------------------------------------------------------
# projections as input


@pytest.fixture(scope="module")
def projected(kinds):
    """kinds/inverse/mspe/: 00006.pt and 00003.pt, shifted W+ projections of two reference faces (a few MSE
    steps)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(kinds)
        projector.main(
            ["--name", "mspe", "--ckpt", "000100.pt", "--loss", "mse", "--step", "3", "--n_mean_latent", "64"]
            + ["--w_plus", "--shift_w", "3", *FACES]
        )
    return kinds / "inverse" / "mspe"


def test_a_projection_regenerates_its_image_bit_exactly(kinds, projected, monkeypatch):
    monkeypatch.chdir(kinds)
    generate.main(["--name", "mspe", "--ckpt", "000100.pt", "--projection", str(projected / "00006.pt")])
    regenerated = Image.open(kinds / "generate" / "mspe" / "grid" / "00006.png")
    assert regenerated.tobytes() == Image.open(projected / "00006-project.png").tobytes()

    # the float images too, rendered in the batch they were projected in (other batch sizes round
    # a convolution differently, by about 1e-7)
    generator, _ = load_generator("checkpoint/mspe/000100.pt")
    files = [str(projected / name) for name in ("00006.pt", "00003.pt")]
    images = generate.grid_images(generate.Renderer(generator), generate.inputs_of_projections(generator, files))
    for image, path in zip(images, files):
        assert torch.equal(image, projector.load_projection(path, generator)["img"])


def test_a_projection_can_be_shifted_walked_and_edited(kinds, projected, monkeypatch, capsys):
    monkeypatch.chdir(kinds)
    projection = str(projected / "00006.pt")
    common = ["--name", "mspe", "--ckpt", "000100.pt", "--projection", projection]
    generate.main([*common, "--mode", "shift", "--pics", "3", "--radius", "4", "--save", "single"])
    assert gif_frames(kinds / "generate" / "mspe" / "shift" / "00006.gif") == 3
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    generate.main([*common, str(projected / "00003.pt"), "--mode", "interpolate", "--frames_per_step", "3"])
    assert gif_frames(kinds / "generate" / "mspe" / "interpolate" / "walk.gif") == 3 + 1
    generate.main([*common, "--mode", "sticking", "--n_sample", "3", "--pics", "4"])
    assert (kinds / "generate" / "mspe" / "sticking" / "00006_strip.png").exists()

    factorize_main(["checkpoint/mspe/000100.pt", "--out", "factor.pt"])
    ckpt = "checkpoint/mspe/000100.pt"
    apply_factor.main(["-d", "3", "--ckpt", ckpt, "--projection", projection, "factor.pt"])  # untruncated
    # rows +3, 0, -3 of one column, 2 px of padding: the middle row is the projection's image
    grid = to_tensor(Image.open(kinds / "factor_index-0_degree-3.0.png"))
    unedited = grid[:, 2 + 34 : 2 + 34 + 32, 2 : 2 + 32]
    assert torch.equal(unedited, to_tensor(Image.open(projected / "00006-project.png")))
    assert "was made from" not in capsys.readouterr().err


def test_a_projection_or_factor_file_of_another_checkpoint_is_a_warning(
    kinds, projected, make_tiny_checkpoint, monkeypatch, capsys
):
    monkeypatch.chdir(kinds)
    make_tiny_checkpoint(kinds / "checkpoint" / "other" / "000100.pt", position="mspe")
    projection = str(projected / "00006.pt")
    generate.main(["--name", "other", "--ckpt", "000100.pt", "--projection", projection])
    assert (
        f"warning: {projection} was made from checkpoint/mspe/000100.pt, not from checkpoint/other/000100.pt: "
        "its latents belong to that network"
    ) in capsys.readouterr().err
    factorize_main(["checkpoint/mspe/000100.pt", "--out", "factor.pt"])
    apply_factor.main(["--ckpt", "checkpoint/other/000100.pt", "-n", "1", "--pics", "0", "factor.pt"])
    assert "factor.pt was made from checkpoint/mspe/000100.pt, not from checkpoint/other/000100.pt: its directions" in (
        capsys.readouterr().err
    )


def test_a_projection_of_another_generator_names_both_shapes(kinds, projected, make_tiny_checkpoint, monkeypatch):
    monkeypatch.chdir(kinds)
    make_tiny_checkpoint(kinds / "checkpoint" / "wide" / "000100.pt", latent=16)
    with pytest.raises(SystemExit, match=r"shape \[1, 8, 32\].*\[1, 16\] \(W\) or \[1, 8, 16\] \(W\+\)"):
        generate.main(["--name", "wide", "--ckpt", "000100.pt", "--projection", str(projected / "00006.pt")])
    with pytest.raises(SystemExit, match="--mode grid, shift, interpolate, sticking"):
        generate.main(["--name", "mspe", "--ckpt", "000100.pt", "--mode", "mix", "--projection", "x.pt"])
