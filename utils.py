"""What several scripts need, once: device and precision, checkpoints and their model
configuration, images, grids and GIFs."""

import argparse
import contextlib
import copy
import math
import os

import torch
from PIL import Image
from torchvision import utils as tv_utils

from model import POSITIONS, Discriminator, Generator

# Model configuration as stored in a checkpoint's `args`, with the values the original code used
# for keys its checkpoints lack.
MODEL_DEFAULTS = {
    "size": 256,
    "latent": 512,
    "n_mlp": 8,
    "channel_multiplier": 2,
    "position": "none",
    "kernel_size": 3,
    "channel_max": 512,
    "affine": False,
}


# ---------------------------------------------------------------------------------------------
# device and precision


def choose_device(name="auto"):
    """torch.device for 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


PRECISIONS = ("fp32", "tf32", "bf16")


def setup_precision(precision, device):
    """Configure matmul/conv precision; return a context manager for the forward passes.

    fp32: exact float32. tf32: float32 storage with TF32 tensor-core math on CUDA (same as
    fp32 on CPU). bf16: autocast to bfloat16 (losses, R1 and EMA stay float32 outside it).
    """
    if precision not in PRECISIONS:
        raise SystemExit(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if device.type == "cuda":
        allow_tf32 = precision != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        torch.backends.cudnn.allow_tf32 = allow_tf32
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


# ---------------------------------------------------------------------------------------------
# checkpoints


def resolve_checkpoint(ckpt, name):
    """`--ckpt 550000.pt` means checkpoint/<name>/550000.pt unless it is a path that exists."""
    if os.path.exists(ckpt):
        return ckpt
    candidate = os.path.join("checkpoint", name or "", ckpt)
    if os.path.exists(candidate):
        return candidate
    folder = os.path.dirname(candidate)
    present = sorted(f for f in os.listdir(folder) if f.endswith(".pt")) if os.path.isdir(folder) else []
    hint = f"; {folder} holds {', '.join(present)}" if present else ""
    raise SystemExit(f"checkpoint {ckpt!r} not found (looked at {ckpt} and {candidate}{hint})")


def checkpoint_iteration(path):
    """The training iteration a checkpoint file's numeric name encodes (0 when it has none)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return int(stem) if stem.isdigit() else 0


def load_checkpoint(path, map_location="cpu"):
    """torch.load with weights_only=True: tensors, plain containers and argparse.Namespace only.

    A file that would need to run code to unpickle is refused, never executed.
    """
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SystemExit(
            f"{path} is not a checkpoint this project can load safely ({reason}). Checkpoints hold "
            "tensors, plain containers and argparse.Namespace only; re-save it from its state dicts."
        ) from None
    if not isinstance(checkpoint, dict) or not any(key in checkpoint for key in ("g_ema", "g")):
        raise SystemExit(f"{path} is not a generator checkpoint: it has no 'g_ema' or 'g' entry")
    return checkpoint


def save_checkpoint(checkpoint, path):
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.tmp")
    torch.save(checkpoint, temporary)
    os.replace(temporary, path)


def model_config(args):
    """The model configuration (MODEL_DEFAULTS keys) of a Namespace or dict, defaults filled in."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    return {key: default if values.get(key) is None else values[key] for key, default in MODEL_DEFAULTS.items()}


def add_model_arguments(parser, title="model (stored in checkpoints; taken from --ckpt unless given)"):
    """The model-configuration flags (MODEL_DEFAULTS keys).

    With a checkpoint, their defaults are only fallbacks: merge_model_config takes the stored
    value of every flag that is not on the command line.
    """
    add = parser.add_argument_group(title).add_argument
    add("--size", type=int, default=MODEL_DEFAULTS["size"], help="image resolution")
    add("--latent", type=int, default=MODEL_DEFAULTS["latent"], help="dimension of z and w")
    add("--n_mlp", type=int, default=MODEL_DEFAULTS["n_mlp"], help="layers of the mapping network")
    add("--channel_multiplier", type=int, default=MODEL_DEFAULTS["channel_multiplier"], help="channel multiplier (2 = config-f)")
    add("--channel_max", type=int, default=MODEL_DEFAULTS["channel_max"], help="cap on every layer's channels (small values make tiny models)")
    add("--position", type=str, default=MODEL_DEFAULTS["position"], choices=POSITIONS, help="positional encoding: none (StyleGAN2), sspe or mspe")
    add("--kernel_size", type=int, default=MODEL_DEFAULTS["kernel_size"], help="kernel size of the generator's styled convolutions")
    add("--affine", action="store_true", help="learned rotation/translation of the input PE (alias-free GAN's Fourier features)")


def add_checkpoint_arguments(parser):
    """--ckpt, --name, --device and the model flags: what scripts that load a generator take."""
    parser.add_argument("--ckpt", type=str, default="550000.pt", help="checkpoint file, or its name inside checkpoint/<name>/")
    parser.add_argument("--name", type=str, default="test", help="experiment name")
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda or cuda:N")
    add_model_arguments(parser, "model (read from the checkpoint; a flag given here must agree with it)")


def load_model(parser, args, argv):
    """(generator in eval mode, merged args, device) for a command line of add_checkpoint_arguments."""
    path = resolve_checkpoint(args.ckpt, args.name)
    device = choose_device(args.device)
    try:
        generator, _, args = load_generator(path, device, args, explicit_flags(parser, argv))
    except ValueError as error:  # a configuration the model cannot build, e.g. --size 48
        raise SystemExit(f"cannot build the generator for {path}: {error}") from None
    return generator, args, device


def explicit_flags(parser, argv):
    """The `dest` of every option that the command line `argv` gives, in any spelling argparse
    accepts (abbreviated, `--flag=value`): argparse itself parses `argv` again with every
    default suppressed, so only what was given comes back."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    given, _ = probe.parse_known_args(argv)
    return set(vars(given))


def merge_model_config(checkpoint_args, args, explicit, source="the checkpoint"):
    """Fill `args` with the checkpoint's model configuration.

    Keys not given on the command line are taken from the checkpoint; a key given explicitly
    with a different value is an error that names every such key.
    """
    stored = model_config(checkpoint_args)
    present = vars(checkpoint_args) if isinstance(checkpoint_args, argparse.Namespace) else dict(checkpoint_args or {})
    differing = [
        f"{key}: {source} has {stored[key]!r}, the command line {getattr(args, key)!r}"
        for key in MODEL_DEFAULTS
        if key in explicit and key in present and getattr(args, key) != stored[key]
    ]
    if differing:
        raise SystemExit(
            f"the model configuration disagrees with {source}:\n  " + "\n  ".join(differing)
            + "\ndrop these flags to use the checkpoint's values, or pick a matching checkpoint"
        )
    for key in MODEL_DEFAULTS:
        if key not in explicit:
            setattr(args, key, stored[key])
    return args


def build_generator(config, device="cpu"):
    """Generator from a model configuration (a dict or Namespace with MODEL_DEFAULTS keys)."""
    config = model_config(config)
    return Generator(
        config["size"],
        config["latent"],
        config["n_mlp"],
        channel_multiplier=config["channel_multiplier"],
        position=config["position"],
        kernel_size=config["kernel_size"],
        affine=config["affine"],
        channel_max=config["channel_max"],
    ).to(device)


def build_discriminator(config, device="cpu"):
    config = model_config(config)
    return Discriminator(
        config["size"], channel_multiplier=config["channel_multiplier"], channel_max=config["channel_max"]
    ).to(device)


def load_generator(path, device="cpu", args=None, explicit=(), key="g_ema"):
    """Load checkpoint `path` and return (generator in eval mode, checkpoint, merged args).

    `args`/`explicit`: the command line's Namespace and explicitly given flags, merged with the
    checkpoint's configuration by `merge_model_config` (checkpoints without `args` use `args`).
    """
    checkpoint = load_checkpoint(path)
    args = args if args is not None else argparse.Namespace(**MODEL_DEFAULTS)
    if "args" in checkpoint:
        merge_model_config(checkpoint["args"], args, set(explicit), source=path)
    generator = build_generator(args, device)
    state = checkpoint.get(key, checkpoint.get("g"))
    try:
        generator.load_state_dict(state)
    except RuntimeError as error:
        raise SystemExit(
            f"{path} does not fit a {args.position} generator of size {args.size} "
            f"(channel_multiplier {args.channel_multiplier}, channel_max {args.channel_max}): "
            f"{str(error).splitlines()[0]}. Pass the flags it was trained with."
        ) from None
    return generator.eval(), checkpoint, args


# ---------------------------------------------------------------------------------------------
# images


def to_pil(image):
    """A [3, H, W] tensor in [-1, 1] as a PIL image."""
    array = image.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy())


def make_grid(images, nrow=None):
    """A [N, 3, H, W] batch in [-1, 1] as one [3, H', W'] grid, still in [-1, 1]."""
    nrow = nrow or max(1, int(len(images) ** 0.5))
    return tv_utils.make_grid(images.detach().float().cpu(), nrow=nrow, padding=2, pad_value=-1)


def save_grid(images, path, nrow=None):
    """Save a batch in [-1, 1] as a PNG grid (as rosinality's sample grids)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    to_pil(make_grid(images, nrow)).save(path)


def circle_shift(frame, frames, radius):
    """(shift_h, shift_w) of frame `frame` of `frames` on the original demo's circle of `radius` pixels."""
    angle = 2 * math.pi * frame / frames
    return math.sin(angle) * radius, math.cos(angle) * radius


def save_gif(frames, path, duration=40):
    """Save frames (PIL images or [3, H, W] tensors in [-1, 1]) as a looping GIF."""
    frames = [frame if isinstance(frame, Image.Image) else to_pil(frame) for frame in frames]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration, loop=0, optimize=False)
