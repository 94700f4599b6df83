"""model.py: shapes, the PE layout of Choi et al., shift semantics, canvases, scales,
the affine input and rosinality-compatible state dicts."""

import math
import os

import pytest
import torch

import swagan
from model import MODCONVS, Discriminator, Generator, PositionalAdd, PositionalInput, sinusoidal_encoding

LATENT = 32


def tiny_generator(position="mspe", size=32, **kwargs):
    torch.manual_seed(0)
    return Generator(size, LATENT, 2, position=position, channel_max=16, **kwargs).eval()


def render(generator, **kwargs):
    torch.manual_seed(1)
    z = torch.randn(2, LATENT, dtype=generator.conv1.conv.weight.dtype)
    with torch.no_grad():
        return generator([z], randomize_noise=False, **kwargs)[0]


@pytest.mark.parametrize("size", [32, 64, 128, 256])
@pytest.mark.parametrize("position", ["none", "sspe", "mspe"])
def test_generator_renders_its_size(size, position):
    generator = tiny_generator(position, size)
    assert generator.n_latent == 2 * int(math.log2(size)) - 2
    assert generator.num_layers == 2 * int(math.log2(size)) - 3
    image = render(generator)
    assert image.shape == (2, 3, size, size)
    assert torch.isfinite(image).all()
    assert Discriminator(size, channel_max=16)(image).shape == (2, 1)


@pytest.mark.parametrize("size", [512, 1024])
def test_config_f_channels_for_large_sizes(size):
    generator = Generator(size, 512, 8, position="mspe")
    m = 2  # channel_multiplier
    expected = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m, 512: 32 * m, 1024: 16 * m}
    assert generator.channels == expected
    assert generator.convs[-1].conv.weight.shape == (1, expected[size], expected[size], 3, 3)
    assert len(generator.pes) == int(math.log2(size)) - 2
    assert generator.n_latent == 2 * int(math.log2(size)) - 2


def test_pe_channel_layout_follows_spec():
    channel, height, width, scale = 16, 3, 5, 2.0
    pe = sinusoidal_encoding(
        torch.arange(width).float().view(1, width), torch.arange(height).float().view(height, 1), channel, scale
    )
    d = channel // 2
    for k in range(d // 2):
        frequency = math.exp(-(2 * k) * math.log(10000) / d) / scale
        for y in range(height):
            for x in range(width):
                expected = [
                    math.sin(x * frequency),
                    math.cos(x * frequency),
                    math.sin(y * frequency),
                    math.cos(y * frequency),
                ]
                got = [pe[2 * k, y, x], pe[2 * k + 1, y, x], pe[d + 2 * k, y, x], pe[d + 2 * k + 1, y, x]]
                assert [float(v) for v in got] == pytest.approx(expected, abs=1e-5)


def pe_contributions(generator, **kwargs):
    """What each MS-PE layer adds (gamma * PE), recorded with forward hooks."""
    added = []
    hooks = [pe.register_forward_hook(lambda m, i, o: added.append(o - i[0])) for pe in generator.pes]
    render(generator, **kwargs)
    for hook in hooks:
        hook.remove()
    return added


def positional_maps(generator, **kwargs):
    """The input PE, then what each MS-PE layer adds, recorded with forward hooks."""
    maps = []
    hook = generator.input.register_forward_hook(lambda m, i, o: maps.append(o))
    maps += pe_contributions(generator, **kwargs)
    hook.remove()
    return maps


def test_integer_shift_rolls_every_pe_circularly():
    generator = tiny_generator("mspe", 32)
    shift_h, shift_w = 8, -16  # whole cells of the 4x4 input grid: integer at every level
    unshifted = pe_contributions(generator)
    shifted = pe_contributions(generator, shift_h=shift_h, shift_w=shift_w)
    for level, (before, after) in enumerate(zip(unshifted, shifted)):
        cells = 8 * 2**level / 32
        expected = torch.roll(before, (int(shift_h * cells), int(shift_w * cells)), (2, 3))
        assert torch.allclose(after, expected, atol=1e-6)
    input_pe = generator.input(1, 4, 4, shift_h / 8, shift_w / 8)
    assert torch.allclose(input_pe, torch.roll(generator.input(1, 4, 4), (1, -2), (2, 3)), atol=1e-6)


def test_fractional_shift_moves_positions_continuously():
    pe = PositionalInput(8, 4, 4)
    quarter = pe.encoding(4, 4, 0.0, 0.25)
    # position i becomes i - 0.25 (plus the grid length where the roll wrapped)
    frequency = 1.0  # f_0
    for x in range(4):
        assert float(quarter[0, 0, x]) == pytest.approx(math.sin((x - 0.25) * frequency), abs=1e-6)
    plane = pe.encoding(4, 4, 0.0, 2.75, circular=False)
    wrapped = pe.encoding(4, 4, 0.0, 2.75)
    positions_plane = [x - 2.75 for x in range(4)]
    positions_wrapped = [x - 2.75 + (4 if x < 3 else 0) for x in range(4)]
    for x in range(4):
        assert float(plane[0, 0, x]) == pytest.approx(math.sin(positions_plane[x]), abs=1e-6)
        assert float(wrapped[0, 0, x]) == pytest.approx(math.sin(positions_wrapped[x]), abs=1e-6)


@pytest.mark.parametrize("position", ["none", "sspe", "mspe"])
def test_shift_zero_is_exact_and_shifts_do_not_leak(position):
    generator = tiny_generator(position)
    reference = render(generator)
    assert torch.equal(render(generator, shift_h=0, shift_w=0), reference)
    shifted = render(generator, shift_h=3.5, shift_w=-2)
    assert not torch.allclose(shifted, reference)
    assert torch.equal(render(generator), reference)  # the original kept shifts in module state
    assert torch.equal(render(generator, shift_h=torch.tensor(3.5), shift_w=torch.tensor(-2)), shifted)


def test_constant_input_shifts_as_an_image():
    generator = tiny_generator("none")
    constant = generator.input.input
    one_cell = generator.input(1, 4, 4, 1.0, 0.0)
    assert torch.equal(one_cell, torch.roll(constant, 1, 2))
    half = generator.input(1, 4, 4, 0.0, -0.5)  # floor(-0.5) = -1: blend of rolls by -1 and 0
    assert torch.allclose(half, 0.5 * torch.roll(constant, -1, 3) + 0.5 * constant)


@pytest.mark.parametrize("position", ["none", "sspe", "mspe"])
def test_arbitrary_canvas(position):
    generator = tiny_generator(position)
    wide = render(generator, canvas=(32, 96))
    assert wide.shape == (2, 3, 32, 96)
    torch.manual_seed(3)
    assert generator([torch.randn(1, LATENT)], canvas=(48, 16))[0].shape == (1, 3, 48, 16)
    with pytest.raises(ValueError, match="multiple of 8"):
        render(generator, canvas=(30, 32))
    with pytest.raises(ValueError, match="canvas 0x32 must be a positive multiple of 8"):
        render(generator, canvas=(0, 32))


def test_wide_canvas_of_a_constant_input_tiles_it():
    generator = tiny_generator("none")
    tiled = generator.input(1, 4, 12)
    for start in (0, 4, 8):
        assert torch.equal(tiled[..., start : start + 4], generator.input.input)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_scale_changes_resolution_not_content_placement(scale):
    generator = tiny_generator("mspe")
    image = render(generator, scale=scale)
    assert image.shape[-1] == int(32 * scale)
    # every encoding the network reads, the input's and each MS-PE layer's, samples the same
    # continuous coordinates x / scale: the finer grid, taken every other pixel, is the coarser one
    scaled, default = positional_maps(generator, scale=scale), positional_maps(generator)
    fine, coarse = (scaled, default) if scale == 2.0 else (default, scaled)
    assert len(fine) == len(coarse) == 1 + len(generator.pes)
    for fine_map, coarse_map in zip(fine, coarse):
        assert torch.allclose(fine_map[..., ::2, ::2], coarse_map, atol=1e-6)
    with pytest.raises(ValueError, match="scale"):
        Generator(32, LATENT, 2, position="none", scale=2.0)
    with pytest.raises(ValueError, match="scale"):  # a learned constant has no finer grid to sample
        render(tiny_generator("none"), scale=scale)


def test_non_wrapping_shift_needs_a_positional_model():
    assert render(tiny_generator("sspe"), shift_w=40, circular=False).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="circular=False"):
        render(tiny_generator("none"), shift_w=4, circular=False)


def test_affine_input_starts_as_identity_and_renders_the_transform_it_learns():
    plain = tiny_generator("mspe")
    affine = Generator(32, LATENT, 2, position="mspe", channel_max=16, affine=True).eval()
    missing, unexpected = affine.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["affine_fourier.weight", "affine_fourier.bias"] and not unexpected
    assert torch.allclose(render(affine), render(plain), atol=1e-6)
    identity = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert torch.allclose(render(plain, transform=identity), render(plain), atol=1e-6)
    # with its zero weight the bias is every latent's transform, normalised as an explicit one:
    # (r_c, r_s) to a unit vector, the translation divided alike
    with torch.no_grad():
        affine.affine_fourier.bias.copy_(torch.tensor([2.0, 0.0, 1.0, -0.5]))
    learned = render(affine)
    assert not torch.allclose(learned, render(plain), atol=1e-2)
    assert torch.allclose(learned, render(plain, transform=torch.tensor([1.0, 0.0, 0.5, -0.25])), atol=1e-6)


def test_rotated_input_samples_every_channel_on_the_rotated_grid():
    pe_input = PositionalInput(16, 4, 4)
    upright = pe_input(1, 4, 4)[0]
    quarter_turn = pe_input(1, 4, 4, transform=torch.tensor([0.0, 2.0, 0.0, 0.0]))[0]  # normalised to 90 deg
    half = 8
    # x' = y and y' = (W - 1) - x on a square grid rotated by 90 degrees about its centre
    assert torch.allclose(quarter_turn[:half], upright[half:], atol=1e-5)
    assert torch.allclose(quarter_turn[half:], upright[:half].flip(-1), atol=1e-5)
    translated = pe_input(1, 4, 4, transform=torch.tensor([1.0, 0.0, 1.0, 0.0]))[0]
    assert torch.allclose(translated, pe_input.encoding(4, 4, 0.0, 1.0, circular=False), atol=1e-6)


def test_an_added_encoding_turns_on_the_grid_the_input_turns_on():
    """MS-PE's gamma * PE at a resolution, turned by (r_c, r_s), is the input PE turned alike: a
    rotation turns every position the network reads, as a shift moves them all."""
    added = PositionalAdd(16, 8, 8)
    turn = torch.tensor([math.cos(0.7), math.sin(0.7), 0.0, 0.0])
    turned = added(torch.zeros(1, 16, 8, 8), rotation=turn)
    assert torch.allclose(turned, PositionalInput(16, 8, 8)(1, 8, 8, transform=turn), atol=1e-6)
    assert not torch.allclose(turned, added(torch.zeros(1, 16, 8, 8)), atol=1e-2)


def test_rotation_turns_the_input_and_every_added_encoding():
    mspe = tiny_generator("mspe")
    assert torch.allclose(render(mspe, rotation=0.0), render(mspe), atol=1e-5)
    input_only = mspe.rotate_transform(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), 0.7)
    assert not torch.allclose(render(mspe, rotation=0.7), render(mspe, transform=input_only), atol=1e-3)
    # sspe has no added encodings: its rotation is the input's
    sspe = tiny_generator("sspe")
    assert torch.allclose(render(sspe, rotation=0.7), render(sspe, transform=input_only), atol=1e-6)
    with pytest.raises(ValueError, match="rotation"):
        render(tiny_generator("none"), rotation=0.7)


def rosinality_keys(size, n_mlp):
    """The generator state-dict keys of rosinality/stylegan2-pytorch, written out by hand."""
    keys = []
    for i in range(1, n_mlp + 1):
        keys += [f"style.{i}.weight", f"style.{i}.bias"]
    keys.append("input.input")

    def styled(prefix, upsample):
        names = [
            f"{prefix}.conv.weight",
            f"{prefix}.conv.modulation.weight",
            f"{prefix}.conv.modulation.bias",
            f"{prefix}.noise.weight",
            f"{prefix}.activate.bias",
        ]
        return names + ([f"{prefix}.conv.blur.kernel"] if upsample else [])

    def to_rgb(prefix, upsample):
        names = [
            f"{prefix}.bias",
            f"{prefix}.conv.weight",
            f"{prefix}.conv.modulation.weight",
            f"{prefix}.conv.modulation.bias",
        ]
        return names + ([f"{prefix}.upsample.kernel"] if upsample else [])

    keys += styled("conv1", False) + to_rgb("to_rgb1", False)
    levels = int(math.log2(size)) - 2
    for level in range(levels):
        keys += styled(f"convs.{2 * level}", True) + styled(f"convs.{2 * level + 1}", False)
        keys += to_rgb(f"to_rgbs.{level}", True)
    keys += [f"noises.noise_{i}" for i in range(2 * levels + 1)]
    return set(keys)


def test_state_dict_names_match_rosinality():
    plain = tiny_generator("none", 64)
    assert set(plain.state_dict()) == rosinality_keys(64, 2)
    mspe = tiny_generator("mspe", 64)
    expected = (rosinality_keys(64, 2) - {"input.input"}) | {"pes.0.gamma", "pes.1.gamma", "pes.2.gamma", "pes.3.gamma"}
    assert set(mspe.state_dict()) == expected  # PE grids are buffers, but not saved
    assert set(tiny_generator("sspe", 64).state_dict()) == rosinality_keys(64, 2) - {"input.input"}


def test_rosinality_state_dict_loads_strict_and_renders_identically():
    source = tiny_generator("none")
    state = {key: value.clone() for key, value in source.state_dict().items()}
    target = Generator(32, LATENT, 2, channel_max=16)
    target.load_state_dict(state, strict=True)
    assert torch.equal(render(target.eval()), render(source))


def test_grids_are_buffers_that_follow_the_module():
    generator = tiny_generator("mspe").double()
    assert generator.input.pe.dtype == torch.float64
    assert render(generator).dtype == torch.float64


def test_grouped_and_plain_modulated_convolutions_agree():
    generator = tiny_generator("mspe")
    reference = render(generator)
    plain = tiny_generator("mspe", modconv="plain")
    assert plain.state_dict().keys() == generator.state_dict().keys()
    assert torch.allclose(render(plain), reference, atol=1e-5)
    with pytest.raises(ValueError, match="grouped, plain"):
        tiny_generator("mspe", modconv="fast")


def test_grouped_and_plain_modulated_convolutions_train_alike():
    """The same gradients, to the style inputs through demodulation and the weights (float64)."""
    gradients = {}
    for modconv in MODCONVS:
        generator = tiny_generator("mspe", modconv=modconv).double()
        z = torch.randn(2, LATENT, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        image = generator([z], randomize_noise=False)[0]
        image.square().mean().backward()
        gradients[modconv] = {name: parameter.grad for name, parameter in generator.named_parameters()}
    for name, grad in gradients["grouped"].items():
        assert torch.allclose(gradients["plain"][name], grad, rtol=1e-9, atol=1e-12), name


@pytest.mark.parametrize("modconv", MODCONVS)
def test_bf16_autocast_keeps_feature_maps_bfloat16_and_the_image_float32(modconv):
    """--precision bf16: the float32 parameters added between convolutions (noise strength, MS-PE
    gamma, demodulation) must not turn the feature maps float32 (twice the memory and traffic);
    the RGB image, accumulated over resolutions, stays float32."""
    generator = tiny_generator("mspe", 64, modconv=modconv)
    dtypes = {}

    def record(name):
        def hook(module, args, out):
            dtypes[name] = out.dtype

        return hook

    for name, module in generator.named_modules():
        if type(module).__name__ in ("StyledConv", "PositionalAdd"):
            module.register_forward_hook(record(name))
    reference = render(generator)
    dtypes.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        image = render(generator)
    # at 64 px: 9 styled convolutions (4 px, then two per resolution) and 4 MS-PE additions
    assert len(dtypes) == 13 and set(dtypes.values()) == {torch.bfloat16}, dtypes
    assert image.dtype == torch.float32
    assert (image - reference).pow(2).mean().sqrt() < 0.05 * reference.pow(2).mean().sqrt()


def test_seeded_noise_and_truncation_centre_are_the_same_every_time():
    generator = tiny_generator("mspe")
    first = generator.make_noise(2, rng=torch.Generator().manual_seed(5))
    again = generator.make_noise(2, rng=torch.Generator().manual_seed(5))
    assert [tuple(noise.shape) for noise in first] == [
        (2, 1, 4, 4),
        (2, 1, 8, 8),
        (2, 1, 8, 8),
        (2, 1, 16, 16),
        (2, 1, 16, 16),
        (2, 1, 32, 32),
        (2, 1, 32, 32),
    ]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    wide = generator.make_noise(canvas=(32, 64), scale=2.0)
    assert wide[-1].shape == (1, 1, 64, 128) and wide[0].shape == (1, 1, 8, 16)

    assert generator.truncation_latent(1.0) is None
    torch.manual_seed(123)  # the global RNG plays no part
    centre = generator.truncation_latent(0.7, 64)
    torch.manual_seed(456)
    assert torch.equal(generator.truncation_latent(0.5, 64), centre)
    assert centre.shape == (1, LATENT)


def test_style_mixing_and_truncation():
    generator = tiny_generator("mspe")
    torch.manual_seed(0)
    z1, z2 = torch.randn(2, 1, LATENT)
    with torch.no_grad():
        single = generator([z1], randomize_noise=False)[0]
        mixed, latent = generator([z1, z2], inject_index=3, randomize_noise=False, return_latents=True)
        mean = generator.mean_latent(64)
        truncated = generator([z1], truncation=0.0, truncation_latent=mean, randomize_noise=False)[0]
        at_mean = generator([mean], input_is_latent=True, randomize_noise=False)[0]
    w1, w2 = generator.get_latent(z1), generator.get_latent(z2)
    assert torch.allclose(latent[:, :3], w1.unsqueeze(1).expand(-1, 3, -1))
    assert torch.allclose(latent[:, 3:], w2.unsqueeze(1).expand(-1, generator.n_latent - 3, -1))
    assert not torch.allclose(mixed, single)
    assert torch.allclose(truncated, at_mean, atol=1e-6)
    assert [noise.shape[-1] for noise in generator.make_noise()] == [4, 8, 8, 16, 16, 32, 32]


@pytest.mark.parametrize("position", ["none", "sspe", "mspe"])
def test_same_images_as_the_original_code(position):
    """tests/data/original_outputs.pt holds images rendered by the original research code
    (jychoi118/toward_spatial_unbiased, model.py with channels capped at 16, run on CPU with
    this repository's op/) from the stored state dicts, latents and shifts: a rosinality-format
    state dict loads strict and renders the same pixels, shifted ones included."""
    golden = torch.load(os.path.join(os.path.dirname(__file__), "data", "original_outputs.pt"), weights_only=True)
    generator = Generator(32, LATENT, 2, position=position, channel_max=16).eval()
    generator.load_state_dict(golden["states"][position], strict=True)
    for (shift_h, shift_w), expected in zip(golden["shifts"], golden["images"][position]):
        with torch.no_grad():
            image = generator([golden["latents"]], randomize_noise=False, shift_h=shift_h, shift_w=shift_w)[0]
        assert torch.allclose(image, expected, atol=1e-5), (shift_h, shift_w)


@pytest.mark.parametrize("module", ["model", "swagan"])
def test_a_discriminators_blur_kernel_reaches_every_downsampling_layer(module):
    discriminator_class = Discriminator if module == "model" else swagan.Discriminator
    discriminator = discriminator_class(32, blur_kernel=[1, 1], channel_max=16)
    kernels = {name: buffer.shape for name, buffer in discriminator.named_buffers() if name.endswith("kernel")}
    assert kernels and set(kernels.values()) == {(2, 2)}, kernels
