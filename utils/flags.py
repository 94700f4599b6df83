"""The command-line flags that several scripts share, each defined once here. (The model
configuration's flags are checkpoint.py's `add_model_arguments`, beside the configuration.)"""

import argparse
import os
from dataclasses import fields

from diffusion import SAMPLERS, VARIANCES, SamplerSettings
from evaluation.sticking import DEFAULT_SPREAD
from model import MODCONVS, TRUNCATION_MEAN
from utils.device import PRECISIONS
from utils.shift import DEFAULT_NOISE_SHIFT, NOISE_SHIFTS


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: X)" after every flag's help, except where X is None or a switch's
    False: such a flag's help says in its own words what happens without it."""

    def _get_help_string(self, action):
        if action.default is None or (action.default is False and action.nargs == 0):
            return action.help
        return super()._get_help_string(action)


def flag_list(names):
    """Flags named in an error message: {"iter", "batch"} -> "--batch, --iter"."""
    return ", ".join(f"--{name}" for name in sorted(names))


def positive_int(text):
    """argparse type of the counts and sizes that have no meaning at 0: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def fraction(text):
    """argparse type of a share of a whole: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number from 0 to 1, not {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {value}")
    return value


def distinct_stems(paths, what):
    """The file stems of `paths` (`inverse/p/00006.pt` -> `00006`), which name the outputs a script
    makes of them; two files of one stem, whose outputs would overwrite each other's, are refused
    (`what`: the files, plural, as the message names them)."""
    stems = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:
            raise SystemExit(
                f"the {what}' file names must differ: outputs are named after them "
                f"({stems[stem]} and {path} are both {stem!r})"
            )
        stems[stem] = path
    return list(stems)


def add_duration_argument(parser, default, modes=""):
    """--duration: milliseconds per frame of the GIFs (and videos) a script writes."""
    parser.add_argument("--duration", type=positive_int, default=default, help=f"{modes}milliseconds per frame")


def add_device_argument(parser):
    """--device: where the models run."""
    parser.add_argument("--device", type=str, default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")


def add_speed_arguments(parser):
    """--precision, --modconv, --channels_last, --compile: how fast training runs, never what it
    computes (beyond rounding)."""
    add = parser.add_argument
    add("--precision", type=str, default=None, choices=PRECISIONS, help="default: tf32 on CUDA, fp32 on CPU")
    add(
        "--modconv",
        type=str,
        default="grouped",
        choices=MODCONVS,
        help="modulated convolution: per-sample weights in a grouped convolution (the original) or a plain "
        "convolution of scaled activations (the same function, often faster)",
    )
    add("--channels_last", action="store_true", help="channels-last memory format (for tensor cores)")
    add("--compile", action="store_true", help="torch.compile the generator and discriminator forward passes")


def add_truncation_arguments(
    parser, default=1.0, help="truncation ratio (1 = none; below 1 towards the mean, above 1 away from it)"
):
    """--truncation and --truncation_mean."""
    parser.add_argument("--truncation", type=float, default=default, help=help)
    parser.add_argument(
        "--truncation_mean",
        type=positive_int,
        default=TRUNCATION_MEAN,
        help="mapped latents averaged for the truncation centre (unless the checkpoint brings its own: "
        "NVIDIA's tracked mean of w, StyleGAN3's)",
    )


def add_spread_argument(parser):
    """--spread: how far texture sticking's latents lie from their centre (evaluation/sticking.py)."""
    parser.add_argument(
        "--spread",
        type=fraction,
        default=DEFAULT_SPREAD,
        help="texture sticking: latents this fraction of the way (in W) from the centre to independent ones",
    )


def add_radius_argument(parser, modes=""):
    """--radius: the circle of shifts (utils/shift.py's circle_shift) an animation moves along."""
    parser.add_argument("--radius", type=float, default=32, help=f"{modes}radius of the circle of shifts in pixels")


def add_noise_shift_argument(parser):
    """--noise_shift: what a shift does to the per-layer noise maps (utils/shift.py)."""
    parser.add_argument(
        "--noise_shift",
        type=str,
        default=DEFAULT_NOISE_SHIFT,
        choices=NOISE_SHIFTS,
        help="noise maps of a shifted render: move with the content, or keep their place in the frame "
        "(StyleGAN3's EQ-T)",
    )


def add_lpips_weights_argument(parser):
    """--lpips_weights: a local file instead of torchvision's download (evaluation/perceptual.py)."""
    parser.add_argument(
        "--lpips_weights",
        type=str,
        default=None,
        help="local torchvision vgg16 state dict for LPIPS's trunk (default: torchvision downloads it once)",
    )


INCEPTION_WEIGHTS_HELP = (
    "Inception-v3 state dict file (pytorch-fid or torchvision); default: download the FID Inception once"
)


def add_inception_weights_argument(parser, *names, help=INCEPTION_WEIGHTS_HELP):
    """The FID Inception's weights (evaluation/inception.py) under the flag `names` (default
    --inception; rosinality's fid.py calls it --inception_weights, its --inception being the
    real statistics)."""
    names = names or ("--inception",)
    parser.add_argument(*names, dest=names[0].lstrip("-"), type=str, default=None, help=help)


# add_sampler_arguments' flags, named like the SamplerSettings fields they set
SAMPLER_FLAGS = frozenset(field.name for field in fields(SamplerSettings))


def add_sampler_arguments(parser, title="diffusion sampling (checkpoints of --arch ddpm)"):
    """--sampler, --steps, --eta, --variance: how a diffusion model (--arch ddpm) samples
    (diffusion.py's SamplerSettings), in an argument group named `title`. A GAN does not read
    them: a command of one GAN checkpoint refuses them (checkpoint.load_generator)."""
    defaults = SamplerSettings()
    add = parser.add_argument_group(title).add_argument
    add("--sampler", type=str, default=defaults.sampler, choices=SAMPLERS, help="DDIM or DDPM ancestral sampling")
    add("--steps", type=int, default=defaults.steps, help="sampling steps, evenly spaced over the model's T")
    add("--eta", type=float, default=defaults.eta, help="DDIM's eta: 0 deterministic, 1 as DDPM's beta-tilde")
    add(
        "--variance",
        type=str,
        default=defaults.variance,
        choices=VARIANCES,
        help="DDPM's per-step variance: the posterior's beta-tilde, or beta",
    )
