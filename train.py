"""Train StyleGAN2 with explicit positional encoding (Choi et al., "Toward Spatially Unbiased
Generative Models", ICCV 2021), as rosinality/stylegan2-pytorch trains StyleGAN2.

    python train.py --name EXPERIMENT_NAME --path LMDB_PATH --position mspe
    python train.py --name EXPERIMENT_NAME --path LMDB_PATH --position mspe --translate 1.0
    python train.py --name EXPERIMENT_NAME --path LMDB_PATH --ckpt 550000.pt
    python train.py --name EXPERIMENT_NAME --path LMDB_PATH --position mspe --ckpt latest
    python train.py --name EXPERIMENT_NAME --path LMDB_PATH --position mspe --ckpt ffhq.pt --freeze_d 4
    torchrun --nproc_per_node=N train.py --name EXPERIMENT_NAME --path LMDB_PATH --position mspe

The iteration is training/gan.py's (non-saturating loss, lazy R1, style mixing, EMA; path-length
regularisation off unless --g_reg_every is positive); the loop around it, with checkpoints,
resuming, signals and logs, is training/loop.py's. --augment enables adaptive discriminator
augmentation (training/augment.py); --translate circularly translates the real images.
--arch stylegan3-t | stylegan3-r trains the alias-free generator (stylegan3.py) with NVIDIA's
recipe for every flag not given. --arch ddpm trains a diffusion model instead (diffusion.py's UNet
with --position none/sspe/mspe, training/diffusion.py's step, lr 2e-4 unless given):

    python train.py --name EXPERIMENT_NAME --path LMDB_PATH --arch ddpm --position mspe --translate 1.0 \
        --size 32 --channels 32 --channel_mult 1,2,2 --num_res_blocks 1 --batch 32

Writes checkpoint/<name>/<iter:06d>.pt (iter = iterations completed; --ckpt resumes there),
sample/<name>/<iter:06d>.png (the EMA generator on a fixed latent batch),
checkpoint/<name>/config.json (the resolved configuration) and checkpoint/<name>/log.jsonl
(losses, R1, path length, augmentation p and images/s every --log_every iterations).
SIGINT or SIGTERM saves a checkpoint at the current iteration and exits cleanly. A checkpoint
holds every RNG state, the data order's position, the sample latents and the run's flags (the
training flags not given again are taken from it), so that a resumed run is the run it
continues (bit for bit on the CPU); `--ckpt latest` resumes from the newest one,
or starts afresh when there is none, so the same command line can be requeued forever; a fresh
start, or a resume from an older file, into a folder holding later checkpoints is refused. A
--ckpt with weights only (convert_weight.py's, rosinality's) starts a fine-tuning run at iteration
0 with fresh optimisers, from StyleGAN2 to PE if --position says so (training/finetune.py).
"""

import argparse
import os
import sys
from dataclasses import fields

from checkpoint import GAN_MODEL_FLAGS, add_model_arguments, explicit_flags
from diffusion import DIFFUSION_ARCH, DIFFUSION_DEFAULTS
from model import check_size
from training import distributed
from training.diffusion import (
    DiffusionSettings,
    add_diffusion_training_arguments,
    apply_diffusion_recipe,
    build_diffusion_step,
)
from training.gan import StepSettings, apply_recipe, build_gan_step
from training.loop import Trainer, make_loader, resume_point
from utils.device import default_precision, setup_precision
from utils.flags import SAMPLER_FLAGS, HelpFormatter, add_device_argument, add_speed_arguments, flag_list, positive_int

# the one owner of the step's hyperparameter defaults
DEFAULTS = StepSettings()
# The flags that only one kind of model reads (the rest, from --lr and --ema_decay to the outputs',
# every kind reads). Given for the other kind they would change nothing, so they are refused.
GAN_ONLY_FLAGS = {field.name for field in fields(StepSettings)} - {"lr", "ema_decay", "blur_fade_iterations"}
GAN_ONLY_FLAGS |= GAN_MODEL_FLAGS
GAN_ONLY_FLAGS |= {"blur_fade_kimg", "freeze_d", "modconv", "augment"}
ADA_FLAGS = {"augment_p", "ada_target", "ada_length", "ada_every"}
GAN_ONLY_FLAGS |= ADA_FLAGS
DIFFUSION_ONLY_FLAGS = set(DIFFUSION_DEFAULTS) | SAMPLER_FLAGS | {"grad_clip", "warmup"}
# What a run trains with beyond its model (which merge_model_config restores): a resumed train.py
# run takes them from its checkpoint unless the command line gives them, so that it goes on as it
# trained. The rest (--name, --path, --iter, the outputs, hardware and speed) is each invocation's.
TRAINING_FLAGS = {field.name for field in fields(StepSettings) + fields(DiffusionSettings)}
TRAINING_FLAGS |= {"seed", "batch", "translate", "augment", "blur_fade_kimg", "freeze_d"} | ADA_FLAGS
TRAINING_FLAGS |= SAMPLER_FLAGS  # a diffusion run's sample grids
TRAINING_FLAGS -= {"latent", "blur_fade_iterations", "g_adam_every", "ema_rampup"}  # a model flag; the recipe's


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train a spatially unbiased StyleGAN2 (StyleGAN2 with positional encoding).",
        formatter_class=HelpFormatter,
    )
    add = parser.add_argument
    add("--name", type=str, required=True, help="experiment name: outputs go to checkpoint/<name>, sample/<name>")
    add("--path", type=str, required=True, help="LMDB dataset made by prepare_data.py")
    add("--iter", type=positive_int, default=800000, help="train until this many iterations are done")
    add("--batch", type=positive_int, default=16, help="batch size per GPU (per rank)")
    add("--n_sample", type=positive_int, default=64, help="images in each sample grid")
    add(
        "--ckpt",
        type=str,
        default=None,
        help="checkpoint to resume: a path, a file name in checkpoint/<name>, or 'latest' (the newest there; "
        "a fresh start when there is none)",
    )
    add(
        "--freeze_d",
        type=int,
        default=0,
        help="Freeze-D (Mo et al. 2020) when fine-tuning: keep the discriminator's first N blocks fixed, counted "
        "from the image (block 1: fromRGB and the residual block at full resolution; block k: the residual block "
        "at size / 2^(k-1); the 4x4 epilogue always trains). At most log2(size) - 2; 0 = off",
    )
    add(
        "--lr",
        type=float,
        default=DEFAULTS.lr,
        help="learning rate (of both networks unless --d_lr; stylegan3-*: 0.0025; ddpm: 2e-4)",
    )
    add(
        "--d_lr",
        type=float,
        default=DEFAULTS.d_lr,
        help="the discriminator's learning rate (default: --lr; stylegan3-*: 0.002)",
    )
    add("--seed", type=int, default=0, help="random seed (model initialisation, sample latents, data order)")

    add_model_arguments(parser)

    add = parser.add_argument_group("loss and regularisation").add_argument
    add(
        "--r1",
        type=r1_weight,
        default=DEFAULTS.r1,
        help="weight of the R1 penalty, or 'auto': 0.0002 x size^2 / batch (of all GPUs), StyleGAN2-ADA's heuristic "
        "(10 suits 1024 px at batch 4 as config-f; small images and batches need far less). stylegan3-t/-r "
        "without --r1: 2 x (size / 256)^2, NVIDIA's recommended gamma (0.5 at 128, 2 at 256, 8 at 512, 32 at 1024 px)",
    )
    add("--d_reg_every", type=int, default=DEFAULTS.d_reg_every, help="R1 every this many iterations (0 = no R1)")
    add("--path_regularize", type=float, default=DEFAULTS.path_regularize, help="weight of the path-length penalty")
    add(
        "--path_batch_shrink",
        type=positive_int,
        default=DEFAULTS.path_batch_shrink,
        help="path-length batch = batch / this",
    )
    add(
        "--g_reg_every",
        type=int,
        default=DEFAULTS.g_reg_every,
        help="path-length regularisation every this many iterations; 0 = off, as in the original (StyleGAN2: 4)",
    )
    add("--mixing", type=float, default=DEFAULTS.mixing, help="probability of style mixing (stylegan3-*: 0)")
    add(
        "--blur_sigma",
        type=float,
        default=None,
        help="blur (sigma in pixels) of the discriminator's images at the start, fading out over --blur_fade_kimg "
        "(default: 10 for stylegan3-r, 0 otherwise)",
    )
    add(
        "--blur_fade_kimg",
        type=float,
        default=None,
        help="thousands of images over which the blur fades out (default: 200 x total batch / 32, as NVIDIA's)",
    )

    add_diffusion_training_arguments(parser)

    add = parser.add_argument_group("augmentation").add_argument
    add(
        "--translate",
        type=float,
        default=0.0,
        help="random circular translation of the real images, as a fraction of their size "
        "(0 = off, 1.0 = any offset: the paper's recipe)",
    )
    add(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="adaptive discriminator augmentation (ADA); --no-augment turns it off when resuming a run that had it",
    )
    add("--augment_p", type=float, default=0, help="fixed augmentation probability (0 = adapt it)")
    add("--ada_target", type=float, default=0.6, help="target of the ADA overfitting heuristic r_t")
    add("--ada_length", type=positive_int, default=500 * 1000, help="real images over which p can go from 0 to 1")
    add("--ada_every", type=positive_int, default=256, help="update p every this many real images")

    group = parser.add_argument_group("hardware, speed and outputs")
    add_device_argument(group)
    add_speed_arguments(group)
    add = group.add_argument
    add("--workers", type=int, default=min(4, os.cpu_count() or 1), help="data loader processes per rank")
    add("--save_every", type=positive_int, default=10000, help="write a checkpoint every this many iterations")
    add("--sample_every", type=positive_int, default=1000, help="write a sample grid every this many iterations")
    add("--log_every", type=positive_int, default=100, help="log losses and speed every this many iterations")
    add("--keep", type=int, default=0, help="keep only the newest this many checkpoints (0 = keep all)")
    add(
        "--max_bad_records",
        type=float,
        default=0.01,
        help="stop when more than this share of a pass over the data cannot be decoded (bad records are "
        "replaced by the next good one and logged until then)",
    )
    add("--wandb", action="store_true", help="also log to Weights & Biases (needs the wandb package)")
    add("--local_rank", "--local-rank", type=int, default=0, help="set by torch.distributed.launch")
    return parser


def r1_weight(text):
    """--r1: a number, or 'auto' (resolved by parse_args once --size and --batch are known)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--r1 takes a number or 'auto', not {text!r}") from None


def check_args(args, model_known=True):
    """Refuse settings that would fail later, naming the flag and what it accepts. Before a
    --ckpt is read (`model_known` False), its model flags are unknown: their checks wait."""
    try:
        check_size(args.size)
    except ValueError as error:
        raise SystemExit(f"--size: {error}") from None
    group = args.mbstd_group
    if model_known and args.arch != DIFFUSION_ARCH and args.batch > group and args.batch % group:
        raise SystemExit(
            f"--batch {args.batch}: the discriminator's minibatch-stddev groups (--mbstd_group {group}) need a "
            f"batch of at most {group} or a multiple of {group}"
        )
    shares = {
        "translate": "a fraction of the image size",
        "max_bad_records": "a share of the records",
        "augment_p": "a probability",
        "mixing": "a probability",
        "ada_target": "the target of r_t = mean(sign(D(real images))),",
        "ema_decay": "the share of the average kept at each step,",
    }
    for flag, meaning in shares.items():
        value = getattr(args, flag)
        if value is not None and not 0 <= value <= 1:
            raise SystemExit(f"--{flag} is {meaning} from 0 to 1, not {value}")
    # None: the flag's default comes from the --arch recipe
    for flag in ["lr", "d_lr"]:
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise SystemExit(f"--{flag} must be positive, not {getattr(args, flag)}")
    not_negative = ["d_reg_every", "g_reg_every", "keep", "workers", "freeze_d", "warmup"]
    not_negative += ["r1", "path_regularize", "blur_sigma", "blur_fade_kimg", "grad_clip"]
    for flag in not_negative:
        value = getattr(args, flag)
        if value is not None and value != "auto" and value < 0:
            raise SystemExit(f"--{flag} must be 0 or more, not {value}")


def check_kind_flags(args, explicit):
    """Refuse the flags of `explicit` that the kind of model of --arch (a GAN, or a diffusion
    model) does not read, naming them; warn of ADA's without --augment."""
    if args.arch == DIFFUSION_ARCH:
        unread, kind, other = GAN_ONLY_FLAGS & explicit, "a diffusion model", "a GAN's"
    else:
        unread, kind, other = DIFFUSION_ONLY_FLAGS & explicit, "a GAN", "--arch ddpm's"
    if unread:
        raise SystemExit(
            f"--arch {args.arch} trains {kind}, which does not read {flag_list(unread)} ({other} flags); leave them out"
        )
    # a warning, not a refusal: rosinality's train.py takes them without --augment, as no-ops
    if not args.augment and ADA_FLAGS & explicit and distributed.get_rank() == 0:
        print(f"warning: ADA is off without --augment; it ignores {flag_list(ADA_FLAGS & explicit)}", file=sys.stderr)


def parse_args(argv=None):
    """Parse and check the command line; returns (args, the set of flags given explicitly)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args, model_known=args.ckpt is None)
    return args, explicit_flags(parser, argv)


def restore_training_flags(start, args, explicit):
    """Set the TRAINING_FLAGS the command line leaves out to those of the run that `start` (a
    ResumePoint) continues, when train.py wrote its checkpoint (rosinality's and the original's,
    like their train.py, train with the command line's); rank 0 names those that change. Returns
    the flags restored."""
    checkpoint = start.checkpoint or {}
    # only train.py's own training checkpoints record the data order
    if "data" not in checkpoint or "args" not in checkpoint:
        return set()
    stored = checkpoint["args"]
    stored = vars(stored) if isinstance(stored, argparse.Namespace) else dict(stored)
    restored = {flag for flag in TRAINING_FLAGS - set(explicit) if flag in stored}
    # a flag left at None takes its value from the recipe, which the stored one stands for
    changed = sorted(flag for flag in restored if getattr(args, flag, None) not in (None, stored[flag]))
    for flag in restored:
        setattr(args, flag, stored[flag])
    if changed and distributed.get_rank() == 0:
        settings = ", ".join(f"--{flag} {stored[flag]}" for flag in changed)
        print(f"resuming as the run trained: {settings} (from {start.path}; give a flag to change it)", file=sys.stderr)
    return restored


def configure_precision(args, device):
    """Resolve --precision (tf32 on CUDA, fp32 on CPU by default) into args.precision and
    return the autocast factory for the forward passes."""
    args.precision = args.precision or default_precision(device)
    return setup_precision(args.precision, device)


def main(argv=None):
    """Train as the command line `argv` says; returns the Trainer (models, optimisers) at the end."""
    with distributed.first_rank_reports():  # the same command line, the same mistakes on every rank
        args, explicit = parse_args(argv)
    device = distributed.setup(args.device, args.local_rank)
    try:
        trainer = run(args, explicit, device)
        # Rank 0 may still be writing the last checkpoint and samples; a rank that tore down its
        # process group before then aborted that run (SIGABRT). Only on success, so that an error
        # on one rank cannot leave the others waiting.
        distributed.wait_for_all_ranks()
        return trainer
    finally:
        distributed.cleanup()


def run(args, explicit, device):
    """Resume or build the models, open the data, train (see main); None when --ckpt latest finds
    the run complete."""
    start = resume_point(args, explicit)
    if start is None:
        return None
    restored = restore_training_flags(start, args, explicit)
    if args.ckpt is not None:
        check_args(args)  # the model configuration is now the checkpoint's (or, with none found, the flags')
    check_kind_flags(args, explicit)
    # what the checkpoint restored counts as given: the --arch recipes fill in only the rest
    given = set(explicit) | restored
    args.start_iter = start.iteration
    args.distributed = distributed.get_world_size() > 1
    autocast = configure_precision(args, device)
    if args.arch == DIFFUSION_ARCH:
        apply_diffusion_recipe(args, given)
        step = build_diffusion_step(args, device, autocast)
    else:
        apply_recipe(args, given, resumed="args" in (start.checkpoint or {}), world_size=distributed.get_world_size())
        step = build_gan_step(args, device, autocast)
    loader = make_loader(args, device)
    trainer = Trainer(args, step, device)
    trainer.resume(start, loader)
    trainer.train(loader)
    return trainer


if __name__ == "__main__":
    main()
