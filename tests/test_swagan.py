"""SWAGAN (swagan.py): Haar transforms, rosinality's state-dict names, positional encodings, and
train.py --arch swagan through generate.py and the metrics on a tiny model."""

import json
import os

import pytest
import torch

import generate
import metrics
import train
from checkpoint import build_discriminator, build_generator, load_checkpoint
from swagan import Discriminator, Generator, HaarTransform, InverseHaarTransform

TINY = {"arch": "swagan", "size": 32, "latent": 32, "n_mlp": 2, "channel_max": 16}

# rosinality's swagan.py, Generator(32, 64, 2, channel_multiplier=1) and Discriminator(32, channel_multiplier=1)
ROSINALITY_GENERATOR_KEYS = (
    ["style.1.weight", "style.1.bias", "style.2.weight", "style.2.bias", "input.input"]
    + [
        f"conv1.{name}"
        for name in ("conv.weight", "conv.modulation.weight", "conv.modulation.bias", "noise.weight", "activate.bias")
    ]
    + ["to_rgb1.bias", "to_rgb1.conv.weight", "to_rgb1.conv.modulation.weight", "to_rgb1.conv.modulation.bias"]
    + [
        f"convs.{i}.{name}"
        for i in range(4)
        for name in ("conv.weight", "conv.modulation.weight", "conv.modulation.bias", "noise.weight", "activate.bias")
    ]
    + ["convs.0.conv.blur.kernel", "convs.2.conv.blur.kernel"]
    + [
        f"to_rgbs.{i}.{name}"
        for i in range(2)
        for name in ("bias", "conv.weight", "conv.modulation.weight", "conv.modulation.bias", "upsample.kernel")
        + tuple(f"{t}.{band}" for t in ("iwt", "dwt") for band in ("ll", "lh", "hl", "hh"))
    ]
    + [f"noises.noise_{i}" for i in range(5)]
    + [f"iwt.{band}" for band in ("ll", "lh", "hl", "hh")]
)
ROSINALITY_DISCRIMINATOR_KEYS = (
    [f"dwt.{band}" for band in ("ll", "lh", "hl", "hh")]
    + ["from_rgbs.0.conv.0.weight", "from_rgbs.0.conv.1.bias"]
    + [
        f"from_rgbs.{i}.{name}"
        for i in (1, 2)
        for name in ("conv.0.weight", "conv.1.bias", "downsample.kernel")
        + tuple(f"{t}.{band}" for t in ("iwt", "dwt") for band in ("ll", "lh", "hl", "hh"))
    ]
    + [
        f"convs.{i}.{name}"
        for i in range(2)
        for name in ("conv1.0.weight", "conv1.1.bias", "conv2.0.kernel", "conv2.1.weight", "conv2.2.bias")
    ]
    + ["final_conv.0.weight", "final_conv.1.bias"]
    + [f"final_linear.{i}.{name}" for i in range(2) for name in ("weight", "bias")]
)


def test_haar_transform_is_inverted_exactly_and_splits_off_the_detail():
    image = torch.randn(2, 3, 16, 16)
    bands = HaarTransform()(image)
    assert bands.shape == (2, 12, 8, 8)
    assert torch.allclose(InverseHaarTransform()(bands), image, atol=1e-5)
    flat = HaarTransform()(torch.full((1, 3, 16, 16), 0.5))
    assert torch.allclose(flat[:, 3:], torch.zeros(1, 9, 8, 8), atol=1e-6)  # no detail in a flat image
    assert torch.allclose(flat[:, :3], torch.ones(1, 3, 8, 8))  # LL: 2x the 2x2 mean (orthonormal)


def test_state_dict_names_are_rosinalitys_for_position_none():
    generator = Generator(32, 64, 2, channel_multiplier=1)
    discriminator = Discriminator(32, channel_multiplier=1)
    assert sorted(generator.state_dict()) == sorted(ROSINALITY_GENERATOR_KEYS)
    assert sorted(discriminator.state_dict()) == sorted(ROSINALITY_DISCRIMINATOR_KEYS)
    assert generator.n_latent == 6 and generator.num_layers == 5
    image, _ = generator([torch.randn(2, 64)])
    assert image.shape == (2, 3, 32, 32) and discriminator(image).shape == (2, 1)


def test_same_initialisation_and_pixels_as_rosinalitys_swagan():
    """tests/data/swagan_rosinality.pt holds what rosinality's swagan.py (commit bef283a, on this
    project's op/ references) gave for Generator(16, 8, 1, channel_multiplier=1) built after
    torch.manual_seed(0) and Discriminator(16, channel_multiplier=1) after torch.manual_seed(1):
    the image of `z` with the stored noise, and the scores of that image and its mirror."""
    golden = torch.load(os.path.join(os.path.dirname(__file__), "data", "swagan_rosinality.pt"), weights_only=True)
    torch.manual_seed(0)
    generator = Generator(16, 8, 1, channel_multiplier=1)
    torch.manual_seed(1)
    discriminator = Discriminator(16, channel_multiplier=1)
    with torch.no_grad():
        image, _ = generator([golden["z"]], randomize_noise=False)
        score = discriminator(torch.cat([image, image.flip(3)]))
    assert torch.allclose(image, golden["image"], atol=1e-5)
    assert torch.allclose(score, golden["score"], atol=1e-5)


@pytest.mark.parametrize("position", ["sspe", "mspe"])
def test_positional_swagan_has_the_pe_at_every_feature_resolution(position):
    generator = build_generator({**TINY, "position": position})
    keys = generator.state_dict().keys()
    assert "input.input" not in keys
    assert [key for key in keys if key.startswith("pes.")] == (
        ["pes.0.gamma", "pes.1.gamma"] if position == "mspe" else []
    )
    z = torch.randn(2, 32)
    noise = generator.make_noise(2)
    with torch.no_grad():
        plain, _ = generator([z], noise=noise)
        unshifted, _ = generator([z], noise=noise, shift_h=0, shift_w=0)
        shifted, _ = generator([z], noise=noise, shift_h=8, shift_w=0)
        wide, _ = generator([z], canvas=(32, 64))
    assert torch.equal(plain, unshifted) and not torch.allclose(plain, shifted)
    assert wide.shape == (2, 3, 32, 64)


def test_a_swagan_smaller_than_16_is_refused():
    with pytest.raises(ValueError, match="from 16"):
        build_discriminator({**TINY, "size": 8})


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("position", ["none", "mspe"])
def test_training_writes_a_checkpoint_that_generate_and_metrics_read(position, tmp_path, monkeypatch, synthetic_lmdb):
    monkeypatch.chdir(tmp_path)
    train.main(
        [
            *"--name sw --path".split(),
            synthetic_lmdb,
            *"--arch swagan --position".split(),
            position,
            *"--size 32 --channel_max 16 --latent 32 --n_mlp 2 --batch 4 --n_sample 4 --iter 2".split(),
            *"--workers 0 --log_every 1 --d_reg_every 2".split(),
        ]
    )
    checkpoint = load_checkpoint(tmp_path / "checkpoint" / "sw" / "000002.pt")
    assert checkpoint["args"].arch == "swagan" and "iwt.ll" in checkpoint["g_ema"] and "dwt.ll" in checkpoint["d"]
    # no --arch: generate.py and the metrics take it from the checkpoint
    generate.main([*"--name sw --ckpt 000002.pt --n_sample 2 --mode shift --pics 2 --radius 4 --save grid".split()])
    assert (tmp_path / "generate" / "sw" / "shift" / "grid.gif").is_file()
    metrics.main(["eqt", "--name", "sw", "--ckpt", "000002.pt", "--n", "4", "--batch", "4", "--device", "cpu"])
    with open(tmp_path / "metrics" / "sw" / "eqt.json") as file:
        assert json.load(file)["results"][0]["position"] == position
