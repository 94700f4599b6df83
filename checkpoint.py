"""Checkpoints: finding, reading and writing them, the model configuration they carry, and the
models built from it.

A checkpoint is a dict saved with torch.save, as the original code and rosinality's write it:
`g`, `d`, `g_ema` (state dicts), `g_optim`, `d_optim` (optimiser states), `args` (the training
command line, an argparse.Namespace) and `ada_aug_p`; this project adds `mean_path_length`, and
`w_avg` [latent] (convert_weight.py: the truncation centre NVIDIA tracked in training, which
load_generator gives the generator as its `truncation_centre`). Converted and rosinality's
checkpoints may hold weights only (`g_ema`, `g`, `d`, `args`): train.py fine-tunes from them.
The model configuration is the part of `args` named in MODEL_DEFAULTS. `--ckpt 550000.pt`
means checkpoint/<name>/550000.pt when it is not a path that exists, and training resumes at
the iteration the file name gives; `--ckpt latest` means the newest one there that loads.
Training checkpoints also hold what an exact resume needs (train.py's Trainer.checkpoint).
Saves are durable (save_checkpoint): a crash at any moment leaves the previous checkpoint intact.
"""

import argparse
import contextlib
import copy
import os
import re
import shutil
import sys
import warnings
import zipfile

import torch

import swagan
from diffusion import (
    DIFFUSION_ARCH,
    DIFFUSION_DEFAULTS,
    PADDINGS,
    SCHEDULES,
    apply_sampler_args,
    build_diffusion_generator,
)
from model import POSITIONS, Discriminator, Generator, canonical_position
from stylegan3 import ARCHS as STYLEGAN3_ARCHS
from stylegan3 import AliasFreeGenerator
from utils.device import choose_device
from utils.flags import SAMPLER_FLAGS, add_device_argument, flag_list, positive_int

ARCHITECTURES = ("stylegan2", "swagan", *STYLEGAN3_ARCHS, DIFFUSION_ARCH)

# Every experiment keeps its files in checkpoint/<name>/: the checkpoint of every --save_every
# iterations as <iterations done, 6 digits>.pt, config.json and log.jsonl (train.py).
CHECKPOINT_ROOT = "checkpoint"
NUMBERED = re.compile(r"\d+\.pt")
# `--ckpt latest`: the newest numbered checkpoint of checkpoint/<name>/
LATEST = "latest"
# ends the name of every file written before it is complete (renamed or removed afterwards)
TEMPORARY_SUFFIX = ".tmp"

# NVIDIA's --cbase per unit of --channel_multiplier: StyleGAN2's channels at resolution r are
# min(16384 x channel_multiplier / r, --channel_max) (config-f's 2 is NVIDIA's default 32768), and
# the alias-free generator takes its channel base from the same flag.
CHANNEL_BASE_PER_MULTIPLIER = 16384

# Model configuration as stored in a checkpoint's `args`, with the values the original code used
# for keys its checkpoints lack.
MODEL_DEFAULTS = {
    "arch": "stylegan2",
    "size": 256,
    "latent": 512,
    "n_mlp": 8,
    "channel_multiplier": 2,
    "position": "none",
    "kernel_size": 3,
    "channel_max": 512,
    "affine": False,
    "mbstd_group": 4,
}
# the model flags only the GANs read (a diffusion model reads arch, size and position of them)
GAN_MODEL_FLAGS = set(MODEL_DEFAULTS) - {"arch", "size", "position"}


# ---------------------------------------------------------------------------------------------
# files


def experiment_dir(name, root=""):
    """checkpoint/<name>, inside the folder `root` (default: the working directory)."""
    return os.path.join(root, CHECKPOINT_ROOT, name)


def checkpoint_file(iteration):
    """The file name of the checkpoint saved after `iteration` iterations: 004000.pt."""
    return f"{iteration:06d}.pt"


def checkpoint_path(name, iteration, root=""):
    """checkpoint/<name>/<iteration>.pt, inside the folder `root`."""
    return os.path.join(experiment_dir(name, root), checkpoint_file(iteration))


def resolve_checkpoint(ckpt, name):
    """`--ckpt 550000.pt` means checkpoint/<name>/550000.pt unless it is a path that exists;
    `--ckpt latest`, the newest numbered checkpoint there that is not visibly truncated (train.py
    resumes from the newest one that loads in full: training/loop.py's resume_point)."""
    if os.path.exists(ckpt):
        return ckpt
    if ckpt == LATEST:
        if not name:
            raise SystemExit("--ckpt latest is the newest checkpoint of an experiment: give its --name too")
        folder = experiment_dir(name)
        numbered = numbered_checkpoints(folder)
        for path in numbered:
            if not looks_truncated(path):
                return path
            print(f"warning: skipping {path}: it is truncated (an interrupted copy or save)", file=sys.stderr)
        complete = "complete " if numbered else ""
        raise SystemExit(f"--ckpt latest: {folder} holds no {complete}numbered checkpoint (like 010000.pt)")
    candidate = os.path.join(experiment_dir(name or ""), ckpt)
    if os.path.exists(candidate):
        return candidate
    folder = os.path.dirname(candidate)
    present = sorted(f for f in os.listdir(folder) if f.endswith(".pt")) if os.path.isdir(folder) else []
    hint = f"; {folder} holds {', '.join(present)}" if present else ""
    raise SystemExit(f"checkpoint {ckpt!r} not found (looked at {ckpt} and {candidate}{hint})")


def looks_truncated(path):
    """Whether the file `path` is visibly cut short, from its first bytes and its end record alone
    (no full read): empty, or a zip archive, as torch.save writes, that lacks its closing directory.
    Files in torch's legacy format are not zips and pass."""
    with open(path, "rb") as file:
        start = file.read(4)
    return not start or (start == b"PK\x03\x04" and not zipfile.is_zipfile(path))


def checkpoint_iteration(path):
    """The training iteration a checkpoint file's numeric name encodes (0 when it has none)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return int(stem) if stem.isdigit() else 0


# Checkpoints keep the training flags as an argparse.Namespace (rosinality's do too). Registered
# for the whole process: torch.serialization.safe_globals, the scoped form, needs PyTorch 2.5.
torch.serialization.add_safe_globals([argparse.Namespace])


def load_checkpoint(path, map_location="cpu"):
    """torch.load with weights_only=True: tensors, plain containers and argparse.Namespace only.

    A file that would need to run code to unpickle is refused, never executed.
    """
    if not os.path.isfile(path):
        raise SystemExit(f"checkpoint {path!r} not found: no such file")
    try:
        with warnings.catch_warnings():
            # torch's note on a plain pickle's protocol comes before the refusal that says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        # torch's own line naming what it refused, not its paragraph about weights_only
        reason = next((line for line in lines if "GLOBAL" in line), lines[0] if lines else type(error).__name__)
        if "unsupported global" not in str(error).lower():  # not a refusal to run code: unreadable
            with open(path, "rb") as file:
                head = file.read(4)
            # a pickle, but neither torch's zip format nor its legacy one (which opens with its magic number)
            plain_pickle = head[:1] == b"\x80" and head[2:4] != b"\x8a\n" and not zipfile.is_zipfile(path)
            hint = (
                " It is a plain pickle; an NVIDIA network .pkl is converted first: python convert_weight.py FILE.pkl."
                if plain_pickle
                else ""
            )
            raise SystemExit(
                f"{path} cannot be read as a checkpoint: it is truncated (an interrupted copy or save) or not a "
                f"PyTorch checkpoint at all ({type(error).__name__}: {reason.split('. ')[0]}).{hint} Use another "
                "checkpoint; --ckpt latest picks the newest complete one."
            ) from None
        raise SystemExit(
            f"{path} is not a checkpoint this project can load safely ({reason.split('. ')[0]}). Checkpoints hold "
            "tensors, plain containers and argparse.Namespace only; re-save it from its state dicts."
        ) from None
    if not isinstance(checkpoint, dict) or not any(key in checkpoint for key in ("g_ema", "g")):
        raise SystemExit(f"{path} is not a generator checkpoint: it has no 'g_ema' or 'g' entry")
    return checkpoint


def warn_other_checkpoint(path, made_from, checkpoint, holds):
    """Warn when the file at `path` was made from the checkpoint file `made_from` and is used with
    another, `checkpoint`: what it `holds` (latents, directions) belongs to the first network. No
    warning without both names (projections made before they recorded theirs)."""
    if made_from and checkpoint and os.path.realpath(made_from) != os.path.realpath(checkpoint):
        print(
            f"warning: {path} was made from {made_from}, not from {checkpoint}: its {holds} belong to that "
            "network, so these renders show other images (remake the file with this checkpoint)",
            file=sys.stderr,
        )


def generator_state(checkpoint, key="g_ema"):
    """The generator weights of a loaded checkpoint: its `key` entry, else its 'g' (a checkpoint
    saved without an EMA copy, which load_checkpoint lets through)."""
    return checkpoint.get(key, checkpoint.get("g"))


# what a checkpoint holds beyond weights when train.py wrote it; without it, training fine-tunes
TRAINING_STATE = ("g_optim", "d_optim")


def is_weights_only(checkpoint):
    """True for a checkpoint without any optimiser state (converted, rosinality's generator files):
    train.py fine-tunes from it, starting at iteration 0 (training/finetune.py). A diffusion
    model's training checkpoint has `g_optim` alone, and resumes."""
    return not any(key in checkpoint for key in TRAINING_STATE)


def save_checkpoint(checkpoint, path):
    """torch.save, durably: a temporary file in the same folder, flushed and fsynced, renamed over
    `path`, then the folder fsynced so that the rename itself survives a power cut.

    A process killed at any moment leaves either the old `path` or the complete new one, never
    half a file (the temporary name never matches a numbered checkpoint). A failed write (disk
    full, folder gone) removes the temporary file and raises SystemExit naming the path.
    """
    folder = os.path.dirname(path) or "."
    temporary = os.path.join(folder, f".{os.path.basename(path)}{TEMPORARY_SUFFIX}")
    try:
        os.makedirs(folder, exist_ok=True)
        # unbuffered: a failed write (ENOSPC) reaches torch.save as the OSError it is, where a
        # buffered one surfaces later as an opaque error of torch's zip writer
        with open(temporary, "wb", buffering=0) as file:
            torch.save(checkpoint, file)
            os.fsync(file.fileno())
        os.replace(temporary, path)
        fsync_folder(folder)
    except (OSError, RuntimeError) as error:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        # torch's zip writer may turn a failed write into a RuntimeError; the OSError (ENOSPC...)
        # it was handling says what went wrong
        while not isinstance(error, OSError) and error.__context__ is not None:
            error = error.__context__
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).split(". ")[0]
        raise SystemExit(
            f"could not write checkpoint {path}: {reason}. The checkpoints already in "
            f"{folder} are intact; free space (or fix the folder) and resume with --ckpt latest."
        ) from None


def fsync_folder(folder):
    """Flush a folder's entries (a rename, a new file) to disk; a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(descriptor)


def numbered_checkpoints(folder):
    """The numbered checkpoints (<iteration>.pt) of `folder`, newest first; temporary files of an
    interrupted save never match."""
    if not os.path.isdir(folder):
        return []
    numbered = [(int(name[:-3]), name) for name in os.listdir(folder) if NUMBERED.fullmatch(name)]
    return [os.path.join(folder, name) for _, name in sorted(numbered, reverse=True)]


def load_latest_checkpoint(folder, report=True):
    """(path, checkpoint) of the newest numbered checkpoint of `folder` that loads completely, or
    (None, None) when there is none: what `--ckpt latest` resumes from. A file that does not load
    (truncated by a crash of a writer without fsync, say) is passed over, and reported when
    `report` (one rank of several says it)."""
    for path in numbered_checkpoints(folder):
        try:
            return path, load_checkpoint(path)
        except SystemExit as refusal:
            if report:
                print(f"warning: skipping {path}: {refusal}", file=sys.stderr)
    return None, None


def remove_temporary_files(folder):
    """Delete what saves killed mid-write left in `folder` (never read; only space)."""
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(".") and name.endswith(TEMPORARY_SUFFIX):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))


def checkpoint_bytes(modules, optimised):
    """About how many bytes a training checkpoint takes: the tensors of `modules` (parameters and
    buffers) plus Adam's two moments of every parameter of `optimised`."""
    tensors = [tensor for module in modules for tensor in module.state_dict().values()]
    stored = sum(tensor.numel() * tensor.element_size() for tensor in tensors)
    moments = sum(2 * p.numel() * p.element_size() for module in optimised for p in module.parameters())
    return stored + moments


def check_writable(folder, needed_bytes=0):
    """Create `folder`, prove it writable with a test write and that its disk has room for
    `needed_bytes`; otherwise SystemExit naming the folder and the fix. Run at the start, so that a
    run does not train for hours before its first save fails."""
    probe = os.path.join(folder, f".write_test{TEMPORARY_SUFFIX}")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(probe, "wb") as file:
            file.write(b"\0" * 4096)
            file.flush()
            os.fsync(file.fileno())
        os.remove(probe)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.remove(probe)
        raise SystemExit(
            f"cannot write to {folder}: {error.strerror or error}. Make it writable, or run from a folder "
            "where checkpoint/ and sample/ can be created."
        ) from None
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise SystemExit(
            f"{folder} has {free / 2**20:.1f} MiB free, less than the {needed_bytes / 2**20:.1f} MiB one checkpoint "
            "needs. Free space, or train elsewhere."
        )


# ---------------------------------------------------------------------------------------------
# the model configuration and its command-line flags


def model_config(args):
    """The model configuration of a Namespace or dict, defaults filled in: the MODEL_DEFAULTS keys,
    and for a diffusion model (arch ddpm) diffusion.py's DIFFUSION_DEFAULTS keys too."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    defaults = MODEL_DEFAULTS
    if values.get("arch") == DIFFUSION_ARCH:
        defaults = {**MODEL_DEFAULTS, **DIFFUSION_DEFAULTS}
    config = {key: default if values.get(key) is None else values[key] for key, default in defaults.items()}
    config["position"] = canonical_position(config["position"])
    return config


def describe_model(config):
    """'the model (arch stylegan2, size 256, ...)': what a configuration builds, for messages."""
    config = model_config(config)
    return "the model (" + ", ".join(f"{key} {value}" for key, value in config.items()) + ")"


def model_label(config):
    """What a configuration is, in one word for tables: the architecture of an alias-free model
    (stylegan3-t, stylegan3-r), ddpm-<position> for a diffusion model, else the position (none,
    sspe, mspe)."""
    config = model_config(config)
    if config["arch"] == DIFFUSION_ARCH:
        return f"{DIFFUSION_ARCH}-{config['position']}"
    return config["arch"] if config["arch"] in STYLEGAN3_ARCHS else config["position"]


def add_model_arguments(parser, title="model (stored in checkpoints; taken from --ckpt unless given)"):
    """The model-configuration flags (MODEL_DEFAULTS keys).

    With a checkpoint, their defaults are only fallbacks: merge_model_config takes the stored
    value of every flag that is not on the command line.
    """
    add = parser.add_argument_group(title).add_argument
    add(
        "--arch",
        type=str,
        default=MODEL_DEFAULTS["arch"],
        choices=ARCHITECTURES,
        help="generator and discriminator architecture",
    )
    add("--size", type=int, default=MODEL_DEFAULTS["size"], help="image resolution")
    add("--latent", type=positive_int, default=MODEL_DEFAULTS["latent"], help="dimension of z and w")
    add("--n_mlp", type=positive_int, default=MODEL_DEFAULTS["n_mlp"], help="layers of the mapping network")
    add(
        "--channel_multiplier",
        type=positive_int,
        default=MODEL_DEFAULTS["channel_multiplier"],
        help="channel multiplier (2 = config-f); NVIDIA's --cbase is 16384 x this, for StyleGAN3 too",
    )
    add(
        "--channel_max",
        type=positive_int,
        default=MODEL_DEFAULTS["channel_max"],
        help="cap on every layer's channels (small values make tiny models)",
    )
    add(
        "--position",
        type=canonical_position,
        default=MODEL_DEFAULTS["position"],
        choices=POSITIONS,
        help="positional encoding: none (StyleGAN2), sspe or mspe (rand_mspe, the original's other name, means mspe)",
    )
    add(
        "--kernel_size",
        type=positive_int,
        default=MODEL_DEFAULTS["kernel_size"],
        help="kernel size of the generator's styled convolutions",
    )
    add(
        "--affine",
        action="store_true",
        help="learned rotation/translation of the input PE (alias-free GAN's Fourier features)",
    )
    add(
        "--mbstd_group",
        type=positive_int,
        default=MODEL_DEFAULTS["mbstd_group"],
        help="samples per minibatch-stddev group of the discriminator (NVIDIA's --mbstd-group)",
    )
    add_diffusion_arguments(parser)


def add_diffusion_arguments(parser):
    """The diffusion model's configuration flags (--arch ddpm; diffusion.py's DIFFUSION_DEFAULTS
    keys), stored in checkpoints like the other model flags."""
    add = parser.add_argument_group("diffusion model (--arch ddpm; stored in checkpoints)").add_argument
    defaults = DIFFUSION_DEFAULTS
    add(
        "--channels", type=positive_int, default=defaults["channels"], help="the UNet's base channels (a multiple of 4)"
    )
    add(
        "--channel_mult",
        type=str,
        default=defaults["channel_mult"],
        help="channels of each UNet level as multiples of --channels; level i works at size / 2^i",
    )
    add(
        "--num_res_blocks", type=positive_int, default=defaults["num_res_blocks"], help="residual blocks per UNet level"
    )
    add(
        "--attention_resolutions",
        type=str,
        default=defaults["attention_resolutions"],
        help="comma-separated feature-map sizes with self-attention ('' = only the middle block)",
    )
    add("--dropout", type=float, default=defaults["dropout"], help="dropout in every residual block")
    add("--diffusion_steps", type=positive_int, default=defaults["diffusion_steps"], help="T, the steps of the process")
    add("--schedule", type=str, default=defaults["schedule"], choices=SCHEDULES, help="the beta schedule")
    add(
        "--padding",
        type=str,
        default=defaults["padding"],
        choices=PADDINGS,
        help="the UNet's convolution padding: zeros (Ho et al.) or circular",
    )


def add_checkpoint_arguments(parser):
    """--ckpt, --name, --device and the model flags: what scripts that load a generator take."""
    parser.add_argument(
        "--ckpt",
        type=str,
        default="550000.pt",
        help="checkpoint file, its name inside checkpoint/<name>/, or 'latest' (the newest there)",
    )
    parser.add_argument("--name", type=str, default="test", help="experiment name")
    add_device_argument(parser)
    add_model_arguments(parser, "model (read from the checkpoint; a flag given here must agree with it)")


def explicit_flags(parser, argv):
    """The `dest` of every option that the command line `argv` gives, in any spelling argparse
    accepts (abbreviated, `--flag=value`): argparse itself parses `argv` again with every
    default suppressed, so only what was given comes back. (A default of set_defaults() is kept
    by the parser beside its action's, and argparse fills it in: it goes too.)"""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    probe._defaults.clear()
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
        f"{key}: {source} has {stored[key]!r}, the command line {getattr(args, key, None)!r}"
        for key in stored
        if key in explicit and key in present and getattr(args, key, None) != stored[key]
    ]
    if differing:
        raise SystemExit(
            f"the model configuration disagrees with {source}:\n  "
            + "\n  ".join(differing)
            + "\ndrop these flags to use the checkpoint's values, or pick a matching checkpoint"
        )
    for key in stored:
        if key not in explicit:
            setattr(args, key, stored[key])
    return args


# ---------------------------------------------------------------------------------------------
# models


def build_generator(config, device="cpu", modconv="grouped"):
    """Generator from a model configuration (a dict or Namespace with MODEL_DEFAULTS keys).

    `modconv` is a speed setting, not part of the configuration (Generator's docstring).
    """
    config = model_config(config)
    if config["arch"] == DIFFUSION_ARCH:
        return build_diffusion_generator(config).to(device)
    if config["arch"] in STYLEGAN3_ARCHS:
        # --channel_max is NVIDIA's --cmax and CHANNEL_BASE_PER_MULTIPLIER x --channel_multiplier
        # its --cbase: StyleGAN3-R doubles both, as NVIDIA's train.py does
        doubled = 2 if config["arch"] == "stylegan3-r" else 1
        if config["position"] != "none" or config["affine"] or config["kernel_size"] != 3:
            raise ValueError(
                f"--position, --affine and --kernel_size are StyleGAN2 settings; {config['arch']} has its own input"
            )
        return AliasFreeGenerator(
            config["size"],
            config["latent"],
            config["n_mlp"],
            arch=config["arch"],
            channel_base=CHANNEL_BASE_PER_MULTIPLIER * config["channel_multiplier"] * doubled,
            channel_max=config["channel_max"] * doubled,
        ).to(device)
    generator_class = swagan.Generator if config["arch"] == "swagan" else Generator
    return generator_class(
        config["size"],
        config["latent"],
        config["n_mlp"],
        channel_multiplier=config["channel_multiplier"],
        position=config["position"],
        kernel_size=config["kernel_size"],
        affine=config["affine"],
        channel_max=config["channel_max"],
        modconv=modconv,
    ).to(device)


def build_discriminator(config, device="cpu"):
    """StyleGAN2's residual discriminator (the alias-free generators train against it too), or SWAGAN's."""
    config = model_config(config)
    if config["arch"] == DIFFUSION_ARCH:
        raise ValueError(f"a diffusion model (--arch {DIFFUSION_ARCH}) has no discriminator")
    discriminator_class = swagan.Discriminator if config["arch"] == "swagan" else Discriminator
    return discriminator_class(
        config["size"],
        channel_multiplier=config["channel_multiplier"],
        channel_max=config["channel_max"],
        mbstd_group=config["mbstd_group"],
    ).to(device)


# how much of torch's list of missing, unexpected and mismatched keys a refusal quotes
QUOTED_KEYS_CHARS = 300


def load_model_state(module, state, source, config):
    """module.load_state_dict(state), or a SystemExit that says what `source` does not fit: the
    start of torch's first complaint (missing keys, unexpected keys or a size mismatch)."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, KeyError) as error:  # a wrong shape, or not a state dict
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        # torch opens with "Error(s) in loading state_dict for Generator:", the detail follows
        detail = " ".join(lines[:2]) if lines else type(error).__name__
        if len(detail) > QUOTED_KEYS_CHARS:
            detail = detail[:QUOTED_KEYS_CHARS] + " ..."
        raise SystemExit(
            f"{source} does not fit {describe_model(config)}: {detail}; pass the flags it was trained with "
            "(--arch, --size, --latent, --channel_multiplier, ...)"
        ) from None


def load_training_state(checkpoint, source, config, modules, optimizers, writer="train.py"):
    """Load a training checkpoint read from `source` into `modules` and `optimizers` ({checkpoint
    key: module or optimiser}), or a SystemExit naming the missing or unfitting entry and pointing
    to a checkpoint that `writer` wrote for this model (`config`, for messages)."""
    entries = [*modules, *optimizers]
    missing = [key for key in entries if key not in checkpoint]
    if missing:
        raise SystemExit(
            f"{source} cannot resume training: it lacks {', '.join(missing)} of the {', '.join(entries)} a training "
            f"checkpoint holds. Resume from a checkpoint written by {writer}."
        )
    for key, module in modules.items():
        load_model_state(module, checkpoint[key], f"{source} ('{key}')", config)
    for key, optimizer in optimizers.items():
        try:
            optimizer.load_state_dict(checkpoint[key])
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise SystemExit(
                f"{source} ('{key}') does not fit the optimiser: {error}. Resume from a checkpoint that "
                f"{writer} wrote for this model."
            ) from None


def checkpoint_arch(checkpoint, args=None):
    """The architecture of a loaded checkpoint: its own configuration's, else `args`' (a
    Namespace of model flags; None: the defaults)."""
    args = args if args is not None else argparse.Namespace(**MODEL_DEFAULTS)
    return model_config(checkpoint["args"] if "args" in checkpoint else args)["arch"]


def refuse_diffusion(path, arch, gan_only):
    """SystemExit for the checkpoint at `path` when its `arch` is a diffusion model's, for
    `gan_only`, what the caller does in a GAN's style latent (say "PPL")."""
    if arch == DIFFUSION_ARCH:
        raise SystemExit(
            f"{path} holds a diffusion model (--arch ddpm), whose latent is its noise x_T: {gan_only} works in a "
            "GAN's style latent, so give a stylegan2, swagan or stylegan3 checkpoint"
        )


def load_generator(path, device="cpu", args=None, explicit=(), key="g_ema", gan_only=None):
    """The generator of checkpoint `path`, in eval mode, and its configuration.

    `args`/`explicit`: a command line's Namespace and the flags it gives explicitly, merged with
    the checkpoint's configuration by `merge_model_config` (checkpoints without `args` use
    `args`). A diffusion model samples as args' --sampler flags say (diffusion.apply_sampler_args).
    The flags of `explicit` that the checkpoint's kind of model does not read are refused: a GAN's
    the diffusion model's and sampler's, a diffusion model's the GANs'. `gan_only` names what the
    caller does in a GAN's style latent (say "PPL"): a diffusion model is then refused
    (refuse_diffusion). Returns (generator, args).
    """
    checkpoint = load_checkpoint(path)
    args = args if args is not None else argparse.Namespace(**MODEL_DEFAULTS)
    arch = checkpoint_arch(checkpoint, args)
    if gan_only:
        refuse_diffusion(path, arch, gan_only)
    if arch == DIFFUSION_ARCH:
        unread, kind = GAN_MODEL_FLAGS & set(explicit), "a GAN's model"
    else:
        unread, kind = (SAMPLER_FLAGS | set(DIFFUSION_DEFAULTS)) & set(explicit), "--arch ddpm's"
    if unread:
        raise SystemExit(
            f"{path} holds a {arch} generator, which does not read {flag_list(unread)} ({kind} flags); leave them out"
        )
    if "args" in checkpoint:
        merge_model_config(checkpoint["args"], args, set(explicit), source=path)
    try:
        generator = build_generator(args, device)
    except ValueError as error:  # a configuration the model cannot build, e.g. --size 48
        raise SystemExit(f"cannot build the generator for {path}: {error}") from None
    load_model_state(generator, generator_state(checkpoint, key), path, args)
    if checkpoint.get("w_avg") is not None:
        generator.truncation_centre = checkpoint["w_avg"].to(device)
    try:
        apply_sampler_args(generator, args)
    except ValueError as error:
        raise SystemExit(f"{path}: {error}") from None
    return generator.eval(), args


def load_generator_from_args(parser, args, argv, gan_only=None):
    """(generator, merged args, device) for a command line made with add_checkpoint_arguments:
    --ckpt resolved inside checkpoint/<--name>/, --device chosen, explicit model flags checked
    against the checkpoint's; `gan_only` as load_generator's. The merged args' `ckpt` is the file
    loaded, as outputs record it (not "latest")."""
    path = resolve_checkpoint(args.ckpt, args.name)
    device = choose_device(args.device)
    generator, args = load_generator(path, device, args, explicit_flags(parser, argv), gan_only=gan_only)
    args.ckpt = path
    return generator, args, device
