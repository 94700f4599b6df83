"""Closed-form factorization (closed_form_factorization.py) and apply_factor.py on a tiny
MS-PE generator."""

import pytest
import torch
from PIL import Image

import apply_factor
from checkpoint import load_checkpoint, load_generator
from closed_form_factorization import factorize, modulation_weights
from closed_form_factorization import main as factorize_main
from generate import Renderer, seed_inputs


@pytest.fixture(scope="module")
def factored(tmp_path_factory, make_tiny_checkpoint):
    """(folder, checkpoint path, factor path) after closed_form_factorization.py CKPT --out factor.pt."""
    folder = tmp_path_factory.mktemp("sefa")
    ckpt = make_tiny_checkpoint(folder / "tiny.pt", position="mspe")
    factor = str(folder / "factor.pt")
    factorize_main([ckpt, "--out", factor])
    return folder, ckpt, factor


def test_directions_are_orthonormal_strongest_first_and_saved_with_the_checkpoint_name(factored):
    _, ckpt, factor_path = factored
    factor = torch.load(factor_path, weights_only=True)
    assert factor["ckpt"] == ckpt
    eigvec = factor["eigvec"]
    assert eigvec.shape == (32, 32)
    assert torch.allclose(eigvec.T @ eigvec, torch.eye(32), atol=1e-5)
    state = load_checkpoint(ckpt)["g_ema"]
    weights = modulation_weights(state)
    # styled convolutions only: conv1 (16 in-channels) and 2 per resolution 8, 16, 32; no ToRGB layer
    assert weights.shape == (16 + 6 * 16, 32)
    gains = (weights @ eigvec).norm(dim=0)
    assert torch.all(gains[:-1] >= gains[1:] - 1e-5) and gains[0] > 2 * gains[-1]
    assert torch.allclose(factorize(state), eigvec)


def test_moving_along_a_direction_changes_the_image_and_degree_zero_does_not(factored):
    _, ckpt, factor_path = factored
    generator, _ = load_generator(ckpt)
    eigvec = apply_factor.load_directions(factor_path, generator.style_dim)
    z, noises = seed_inputs(generator, range(3))
    with torch.no_grad():
        w = generator.style(z)
        plain = generator([w], input_is_latent=True, noise=noises)[0]
        moved = apply_factor.moved_renders(Renderer(generator), w, noises, eigvec[:, 0][None], [0.0, 5.0])
    assert torch.equal(moved[0], plain)
    assert (moved[1] - plain).abs().mean() > 0.02


def test_shift_renders_the_edit_at_the_shifted_position(factored):
    """--shift_h/--shift_w: every row is the generator's shifted render, noise moved along."""
    _, ckpt, factor_path = factored
    generator, _ = load_generator(ckpt)
    with torch.no_grad():
        for name, weight in generator.named_parameters():
            if name.endswith("noise.weight"):  # untrained, the noise is switched off: where it lies would not show
                weight.fill_(1.0)
    direction = apply_factor.load_directions(factor_path, generator.style_dim)[:, 0][None]
    z, noises = seed_inputs(generator, range(2))
    with torch.no_grad():
        w = generator.style(z)
        edited, plain = apply_factor.moved_renders(
            Renderer(generator), w, noises, direction, [5.0, 0.0], shift_h=8, shift_w=-4, noise_shift="move"
        )
        shifted_noise = apply_factor.move_noise(noises, 8, -4, 32, 32)
        expected = generator([w + 5.0 * direction], input_is_latent=True, noise=shifted_noise, shift_h=8, shift_w=-4)[0]
        unshifted = generator([w], input_is_latent=True, noise=noises)[0]
    assert torch.equal(edited, expected)
    assert (plain - unshifted).abs().mean() > 0.05


def test_the_original_command_line_writes_the_grid_and_the_sweep(factored, monkeypatch):
    folder, ckpt, factor = factored
    monkeypatch.chdir(folder)
    apply_factor.main(["-i", "1", "-d", "3", "--ckpt", ckpt, "-n", "3", "--pics", "4", "--shift_h", "4", factor])
    with Image.open(folder / "factor_index-1_degree-3.0.png") as grid:
        assert grid.size == (2 + 3 * 34, 2 + 3 * 34)  # 3 samples x (+d, 0, -d)
    with Image.open(folder / "factor_index-1_degree-3.0.gif") as gif:
        assert gif.n_frames == 4 and gif.size == (2 + 3 * 34, 34 + 2)
    with pytest.raises(SystemExit, match="index must be 0..31"):
        apply_factor.main(["-i", "32", "--ckpt", ckpt, factor])


def test_an_alias_free_generator_is_factorized_without_its_to_rgb_layer(tmp_path, make_tiny_checkpoint, monkeypatch):
    ckpt = make_tiny_checkpoint(tmp_path / "sg3.pt", position="none", arch="stylegan3-t")
    factorize_main([ckpt, "--out", str(tmp_path / "factor.pt")])
    generator, _ = load_generator(ckpt)
    styled = [layer.modulation.weight for layer in generator.layers if not layer.to_rgb]
    assert len(styled) == len(generator.layers) - 1  # the input's affine_fourier is no style either
    assert torch.equal(modulation_weights(generator.state_dict()), torch.cat(styled))
    monkeypatch.chdir(tmp_path)
    apply_factor.main(["-d", "3", "--ckpt", ckpt, "-n", "2", "factor.pt"])
    with Image.open(tmp_path / "factor_index-0_degree-3.0.png") as grid:
        assert grid.size == (2 + 2 * 34, 2 + 3 * 34)


def test_a_generator_without_styled_layers_is_refused_naming_the_architectures():
    with pytest.raises(ValueError, match="SeFa factorizes stylegan2, swagan and stylegan3-t/-r generators"):
        factorize({"layers.0.weight": torch.zeros(3, 3)})


def test_out_in_a_folder_that_does_not_exist_yet_is_made(factored):
    folder, ckpt, _ = factored
    out = folder / "factors" / "tiny" / "factor.pt"
    factorize_main([ckpt, "--out", str(out)])
    assert torch.load(out, weights_only=True)["eigvec"].shape == (32, 32)
