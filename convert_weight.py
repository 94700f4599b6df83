"""Convert NVIDIA's PyTorch network pickles to checkpoints of this project, without running them.

    python convert_weight.py stylegan2-ffhq-1024x1024.pkl [--out stylegan2-ffhq-1024x1024.pt]

Reads a training snapshot or network pickle of stylegan2-ada-pytorch or stylegan3 (`G`, `D`,
`G_ema`, whichever it holds) with utils/nvidia_pickle.py's restricted unpickler: the code the
pickle embeds is never executed, and a file naming any other global is refused. The
architecture comes from each network's constructor arguments (`_init_kwargs`), the weights from
its parameters and persistent buffers:

- StyleGAN2 (skip generator, residual discriminator, as config-f) -> model.Generator(position
  'none') and model.Discriminator under rosinality's names; NVIDIA's const noise buffers become
  the stored noise maps (`randomize_noise=False` renders NVIDIA's noise_mode='const'), and the
  tracked mean of w becomes the checkpoint's `w_avg`, the truncation centre of every script;
- StyleGAN3-T / -R -> stylegan3.AliasFreeGenerator (its filters rebuilt and compared with the
  pickle's), with the discriminator when there is one.

NVIDIA's --cbase becomes --channel_multiplier, cbase / 16384, for both families, and the
discriminator's --mbstd-group becomes --mbstd_group. NVIDIA's
StyleGAN2 layers clamp their activations at +-256 (`conv_clamp`); rosinality's, which these
become, do not, so renders agree wherever no activation reaches the clamp (all of the tests'
networks); StyleGAN3's layers clamp as NVIDIA's do.

Conditional networks, other architectures and settings, and a non-identity user `transform`
buffer are refused with a message. The checkpoint holds `g_ema`, `g` and `d` (those present;
`g_ema` is G's when the file has no G_ema) and `args`, the model configuration: generate.py,
projector.py, metrics.py, closed_form_factorization.py and train.py load it like any other.
"""

import argparse
import os
import sys

import torch

from checkpoint import (
    CHANNEL_BASE_PER_MULTIPLIER,
    MODEL_DEFAULTS,
    build_discriminator,
    build_generator,
    save_checkpoint,
)
from model import channel_counts
from stylegan3 import ARCHS as STYLEGAN3_ARCHS
from utils.nvidia_pickle import NvidiaPickleError, load_network_pickle

# networks of the pickle -> checkpoint entries
ENTRIES = {"G_ema": "g_ema", "G": "g", "D": "d"}
# NVIDIA's mapping networks: layers when mapping_kwargs does not say
MAPPING_LAYERS = {"stylegan2": 8, "stylegan3": 2}


class Refused(Exception):
    """A network this converter does not take; the message says why."""


def require(condition, message):
    if not condition:
        raise Refused(message)


def generator_family(record):
    """'stylegan2' or 'stylegan3': which of NVIDIA's synthesis networks a G record holds."""
    synthesis = record.modules.get("synthesis")
    require(record.class_name == "Generator" and synthesis is not None, f"a {record.class_name} is not a generator")
    if "input" in synthesis.modules:
        return "stylegan3"
    require("b4" in synthesis.modules, "the synthesis network is neither StyleGAN2's nor StyleGAN3's")
    return "stylegan2"


def stylegan2_channels(kwargs, size):
    """{resolution: channels} of a StyleGAN2 network: min(channel_base / res, channel_max)."""
    base, cap = kwargs.get("channel_base", 32768), kwargs.get("channel_max", 512)
    return {res: min(base // res, cap) for res in (2**i for i in range(2, size.bit_length()))}


def generator_config(record):
    """The model configuration (MODEL_DEFAULTS keys) of a G record, or Refused."""
    kwargs = record.init_kwargs
    kwargs.update(kwargs.pop("synthesis_kwargs", {}))  # stylegan2-ada-pytorch nests them
    family = generator_family(record)
    mapping = kwargs.get("mapping_kwargs", {})
    require(
        kwargs.get("c_dim", 0) == 0, f"a conditional network (c_dim {kwargs.get('c_dim')}): labels are not supported"
    )
    require(kwargs.get("img_channels", 3) == 3, f"{kwargs.get('img_channels')} image channels: only RGB is supported")
    require(kwargs["z_dim"] == kwargs["w_dim"], f"z_dim {kwargs['z_dim']} != w_dim {kwargs['w_dim']}")
    require(mapping.get("lr_multiplier", 0.01) == 0.01, "a mapping learning-rate multiplier other than 0.01")
    config = dict(MODEL_DEFAULTS, size=kwargs["img_resolution"], latent=kwargs["z_dim"])
    config["n_mlp"] = mapping.get("num_layers", MAPPING_LAYERS[family])
    if family == "stylegan2":
        require(kwargs.get("architecture", "skip") == "skip", f"generator architecture {kwargs.get('architecture')!r}")
        channels = stylegan2_channels(kwargs, config["size"])
        config["channel_max"] = kwargs.get("channel_max", 512)
        multipliers = [
            m for m in (2, 1, 4) if all(channel_counts(m, config["channel_max"])[r] == c for r, c in channels.items())
        ]
        require(multipliers, f"channels {channels} match no channel multiplier of model.Generator")
        config["channel_multiplier"] = multipliers[0]
        return config
    radial = kwargs.get("use_radial_filters", False)
    config["arch"] = "stylegan3-r" if radial else "stylegan3-t"
    require(
        kwargs.get("conv_kernel", 3) == STYLEGAN3_ARCHS[config["arch"]]["conv_kernel"],
        "a kernel size unlike T's and R's",
    )
    doubled = 2 if radial else 1  # NVIDIA's -R doubles --cbase and --cmax for G
    base, unit = kwargs.get("channel_base", 32768), CHANNEL_BASE_PER_MULTIPLIER * doubled
    require(base % unit == 0, f"channel_base {base} (a multiple of {unit}, NVIDIA's --cbase 16384 x k, is needed)")
    config["channel_multiplier"] = base // unit
    schedule = {"num_layers": 14, "num_critical": 2, "first_cutoff": 2, "first_stopband": 2**2.1}
    schedule.update(last_stopband_rel=2**0.3, margin_size=10, output_scale=0.25, filter_size=6, lrelu_upsampling=2)
    for key, default in schedule.items():
        require(
            kwargs.get(key, default) == default, f"{key} {kwargs.get(key)} (only the paper's {default} is supported)"
        )
    config["channel_max"] = kwargs.get("channel_max", 512) // doubled  # --channel_max is NVIDIA's --cmax
    return config


def mapping_state(state, n_mlp):
    """NVIDIA's mapping.fc{i} -> style.{i + 1} (style.0 is the pixel norm)."""
    return {f"style.{i + 1}.{p}": state[f"mapping.fc{i}.{p}"] for i in range(n_mlp) for p in ("weight", "bias")}


def styled_conv_state(state, source, target, noise=None):
    """A SynthesisLayer (conv0/conv1) -> StyledConv; its const noise -> noises.noise_{noise}."""
    converted = {
        f"{target}.conv.weight": state[f"{source}.weight"].unsqueeze(0),
        f"{target}.conv.modulation.weight": state[f"{source}.affine.weight"],
        f"{target}.conv.modulation.bias": state[f"{source}.affine.bias"],
        f"{target}.noise.weight": state[f"{source}.noise_strength"].reshape(1),
        f"{target}.activate.bias": state[f"{source}.bias"],
    }
    converted[f"noises.noise_{noise}"] = state[f"{source}.noise_const"][None, None]
    return converted


def to_rgb_state(state, source, target):
    return {
        f"{target}.conv.weight": state[f"{source}.weight"].unsqueeze(0),
        f"{target}.conv.modulation.weight": state[f"{source}.affine.weight"],
        f"{target}.conv.modulation.bias": state[f"{source}.affine.bias"],
        f"{target}.bias": state[f"{source}.bias"].view(1, -1, 1, 1),
    }


def check_resample_filters(state, model):
    """NVIDIA's resample_filter buffers must be the [1, 3, 3, 1] kernel our layers use."""
    kernel = torch.tensor([1.0, 3.0, 3.0, 1.0])
    expected = torch.outer(kernel, kernel) / kernel.sum() ** 2
    for name, tensor in state.items():
        if name.endswith("resample_filter"):
            require(torch.allclose(tensor, expected), f"{model} {name} is not the [1, 3, 3, 1] filter")


def stylegan2_generator_state(record, config):
    """(rosinality-named state dict, w_avg) of a StyleGAN2 G record."""
    state = record.state_dict()
    check_resample_filters(state, "generator")
    converted = mapping_state(state, config["n_mlp"])
    converted["input.input"] = state["synthesis.b4.const"].unsqueeze(0)
    converted.update(styled_conv_state(state, "synthesis.b4.conv1", "conv1", noise=0))
    converted.update(to_rgb_state(state, "synthesis.b4.torgb", "to_rgb1"))
    for i in range(int(config["size"]).bit_length() - 3):
        block = f"synthesis.b{2 ** (i + 3)}"
        converted.update(styled_conv_state(state, f"{block}.conv0", f"convs.{2 * i}", noise=2 * i + 1))
        converted.update(styled_conv_state(state, f"{block}.conv1", f"convs.{2 * i + 1}", noise=2 * i + 2))
        converted.update(to_rgb_state(state, f"{block}.torgb", f"to_rgbs.{i}"))
    return converted, state["mapping.w_avg"]


def stylegan3_generator_state(record, config):
    """This project's state dict of a StyleGAN3 G record; a user transform must be the identity."""
    state, synthesis = record.state_dict(), record.modules["synthesis"]
    require(torch.equal(state["synthesis.input.transform"], torch.eye(3)), "a non-identity user transform buffer")
    converted = mapping_state(state, config["n_mlp"])
    converted["w_avg"] = state["mapping.w_avg"]
    converted["input_convention"] = torch.tensor(1)  # NVIDIA's (stylegan3.NVIDIA_TRANSFORM)
    for name in ("weight", "freqs", "phases"):
        converted[f"input.{name}"] = state[f"synthesis.input.{name}"]
    converted["affine_fourier.weight"] = state["synthesis.input.affine.weight"]
    converted["affine_fourier.bias"] = state["synthesis.input.affine.bias"]
    for index, name in enumerate(synthesis.state["layer_names"]):
        for source, target in [("weight", "weight"), ("bias", "bias"), ("magnitude_ema", "magnitude_ema")]:
            converted[f"layers.{index}.{target}"] = state[f"synthesis.{name}.{source}"]
        converted[f"layers.{index}.modulation.weight"] = state[f"synthesis.{name}.affine.weight"]
        converted[f"layers.{index}.modulation.bias"] = state[f"synthesis.{name}.affine.bias"]
    return converted


def check_filters(generator, record):
    """Our rebuilt filters of every layer must be the pickle's (to float32 rounding)."""
    state = record.state_dict()
    for index, name in enumerate(record.modules["synthesis"].state["layer_names"]):
        layer = generator.layers[index]
        for kind in ("up_filter", "down_filter"):
            ours, theirs = getattr(layer, kind), state.get(f"synthesis.{name}.{kind}")
            same = (ours is None) == (theirs is None) and (ours is None or ours.shape == theirs.shape)
            require(
                same and (ours is None or torch.allclose(ours, theirs, atol=1e-6)), f"{name}.{kind} differs from ours"
            )


def discriminator_group(record):
    """The minibatch-stddev group of a D record (--mbstd_group; NVIDIA's default is 4, their FFHQ-U
    256 and paper256 StyleGAN2 configs take 8), or Refused."""
    epilogue = record.init_kwargs.get("epilogue_kwargs", {})
    channels, group = epilogue.get("mbstd_num_channels", 1), epilogue.get("mbstd_group_size", 4)
    require(channels == 1, f"a minibatch stddev of {channels} channels (ours has 1)")
    require(
        isinstance(group, int) and group >= 1, f"a minibatch-stddev group of {group!r} (--mbstd_group takes a count)"
    )
    return group


def discriminator_state(record, config):
    """Rosinality-named state dict of a residual StyleGAN2 D record."""
    kwargs = record.init_kwargs
    require(kwargs.get("c_dim", 0) == 0, f"a conditional discriminator (c_dim {kwargs.get('c_dim')})")
    require(
        kwargs.get("architecture", "resnet") == "resnet", f"discriminator architecture {kwargs.get('architecture')!r}"
    )
    channels = stylegan2_channels(kwargs, config["size"])
    expected = channel_counts(config["channel_multiplier"], config["channel_max"])
    require(
        all(expected[r] == c for r, c in channels.items()), f"discriminator channels {channels} unlike the generator's"
    )
    state = record.state_dict()
    check_resample_filters(state, "discriminator")
    size = config["size"]
    converted = {"convs.0.0.weight": state[f"b{size}.fromrgb.weight"], "convs.0.1.bias": state[f"b{size}.fromrgb.bias"]}
    for index, res in enumerate(2**i for i in range(size.bit_length() - 1, 2, -1)):
        block, target = f"b{res}", f"convs.{index + 1}"
        converted[f"{target}.conv1.0.weight"] = state[f"{block}.conv0.weight"]
        converted[f"{target}.conv1.1.bias"] = state[f"{block}.conv0.bias"]
        converted[f"{target}.conv2.1.weight"] = state[f"{block}.conv1.weight"]
        converted[f"{target}.conv2.2.bias"] = state[f"{block}.conv1.bias"]
        converted[f"{target}.skip.1.weight"] = state[f"{block}.skip.weight"]
    converted["final_conv.0.weight"], converted["final_conv.1.bias"] = state["b4.conv.weight"], state["b4.conv.bias"]
    for index, layer in enumerate(("fc", "out")):
        converted[f"final_linear.{index}.weight"] = state[f"b4.{layer}.weight"]
        converted[f"final_linear.{index}.bias"] = state[f"b4.{layer}.bias"]
    return converted


def loaded(module, converted, what):
    """`module` with the converted weights; its own constants (blur kernels) fill in the rest."""
    state = module.state_dict()
    unknown = sorted(set(converted) - set(state))
    missing = sorted(name for name in set(state) - set(converted) if not name.endswith("kernel"))
    require(not unknown and not missing, f"{what}: names {unknown or missing} do not map onto ours")
    mismatched = [
        f"{n} {tuple(t.shape)} vs ours {tuple(state[n].shape)}"
        for n, t in converted.items()
        if t.shape != state[n].shape
    ]
    require(not mismatched, f"{what}: shapes differ: {'; '.join(mismatched[:3])}")
    state.update({name: tensor.to(state[name].dtype) for name, tensor in converted.items()})
    module.load_state_dict(state)
    return module


def convert(networks):
    """(checkpoint dict, config, why D was left out or None) of the records {'G', 'D', 'G_ema'}.
    A discriminator this project cannot build is left out, not the conversion: the generators
    render and are measured without it, and train.py fine-tunes with a fresh one."""
    generators = {key: record for key, record in networks.items() if key != "D"}
    require(generators, "the file holds a discriminator only; a generator (G or G_ema) is needed")
    config = generator_config(next(iter(generators.values())))
    checkpoint = {}
    for key, record in generators.items():
        require(generator_config(record) == config, "G and G_ema have different configurations")
        generator = build_generator(config)
        if config["arch"] in STYLEGAN3_ARCHS:
            check_filters(generator, record)
            converted = stylegan3_generator_state(record, config)
        else:
            converted, w_avg = stylegan2_generator_state(record, config)
            if key == "G_ema" or "G_ema" not in networks:
                checkpoint["w_avg"] = w_avg.clone()  # the truncation centre (checkpoint.load_generator)
        checkpoint[ENTRIES[key]] = loaded(generator, converted, key).state_dict()
    if "g_ema" not in checkpoint:  # a network pickle's G alone: it is the generator to render with
        checkpoint["g_ema"] = checkpoint["g"]
    d_left_out = None
    if "D" in networks:
        try:
            with_group = dict(config, mbstd_group=discriminator_group(networks["D"]))
            state = discriminator_state(networks["D"], with_group)
            checkpoint["d"] = loaded(build_discriminator(with_group), state, "D").state_dict()
            config = with_group
        except (Refused, KeyError) as error:
            d_left_out = f"a tensor or argument {error} is missing" if isinstance(error, KeyError) else str(error)
    checkpoint["args"] = argparse.Namespace(**config)
    return checkpoint, config, d_left_out


def build_parser():
    parser = argparse.ArgumentParser(
        description="Convert an NVIDIA StyleGAN2-ADA / StyleGAN3 .pkl, without running it."
    )
    parser.add_argument("network", help="NVIDIA's network pickle or training snapshot (.pkl)")
    parser.add_argument("--out", help="checkpoint to write (default: the pickle's name with .pt)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = args.out or os.path.splitext(args.network)[0] + ".pt"
    if not os.path.isfile(args.network):
        raise SystemExit(f"{args.network} is not a file: pass the path of an NVIDIA network pickle (.pkl)")
    if os.path.exists(out) and os.path.samefile(out, args.network):
        raise SystemExit(f"--out {out} is the pickle itself, which the checkpoint would replace: give another --out")
    try:
        networks = load_network_pickle(args.network)
        checkpoint, config, d_left_out = convert(networks)
    except NvidiaPickleError as error:
        raise SystemExit(str(error)) from None
    except (Refused, KeyError) as error:
        reason = f"a tensor or argument {error} is missing" if isinstance(error, KeyError) else str(error)
        raise SystemExit(f"{args.network} cannot be converted: {reason}. Nothing was written.") from None
    generator = networks.get("G_ema") or networks["G"]
    multiplier = config["channel_multiplier"]
    print(
        f"{args.network}: {config['arch']} ({generator_family(generator)} networks), {config['size']} px, "
        f"latent {config['latent']}, {config['n_mlp']} mapping layers, "
        f"channel multiplier {multiplier} (--cbase {CHANNEL_BASE_PER_MULTIPLIER * multiplier}), "
        f"channel max {config['channel_max']}; "
        f"holds {', '.join(key for key in ('G', 'D', 'G_ema') if key in networks)}"
        + (f"; D's minibatch-stddev group {config['mbstd_group']}" if "d" in checkpoint else "")
    )
    save_checkpoint(checkpoint, out)
    written = [key for key in ("g_ema", "g", "d", "w_avg", "args") if key in checkpoint]
    print(f"wrote {out} ({', '.join(written)})")
    if d_left_out:
        print(
            f"left out D: {d_left_out}. The generators render and are measured as they are; train.py fine-tunes "
            "from them with a discriminator trained from scratch"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
