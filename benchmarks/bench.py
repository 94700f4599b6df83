"""Training and generation throughput of train.py's iteration, with FLOPs and MFU.

    python benchmarks/bench.py                        # the four reference workloads (on CUDA)
    python benchmarks/bench.py --size 256 --batch 16 --position mspe --precision bf16 --modconv plain
    python benchmarks/bench.py --size 32 --batch 4 --channel_max 32 --device cpu   # a CPU smoke run
    python benchmarks/bench.py --report bench_report  # the GPU report: what a GPU session checks, below
    python benchmarks/bench.py --diffusion            # DDPM training, DDIM-50 sampling at 32, 64, 256 px

A workload is a model configuration (checkpoint.py's model flags: --arch, --size, --position,
--channel_max, ...) and a batch. A command line that gives --size, --batch or --position
measures the one workload its flags describe (MS-PE unless --position, or for stylegan3-t/-r
their own input; batch 16 unless --batch). Without them, bench measures the four reference
workloads, the original's StyleGAN2 config-f with and without MS-PE at 256 px, batch 16, and at
1024 px, batch 4 (the other model flags given apply to them); without CUDA, a tiny one instead
(32 px, 32 channels).

One training iteration is exactly train.py's GANStep with its default hyperparameters
(StepSettings, for every architecture: the alias-free recipe's learning rates, mixing and early
blur are not applied): a discriminator step, lazy R1 every 16 iterations, a generator step
(no path-length regularisation, as the original trains) and the EMA update, on random "real"
images already on the device (data loading is not timed). Timed iterations are a multiple of 16
so that R1 is counted at its real rate. FLOPs are counted once per workload with
torch.utils.flop_counter on the `meta` device (nothing runs), averaging an R1 iteration and a
plain one; MFU divides the achieved rate by --peak_tflops. Figures, never asserts: compare runs
taken on the same machine.

The GPU report, `--report OUT_DIR`, is about the reference workloads: of the model flags,
--size, --batch and --position do not apply to it, the others do. It runs its steps in order of
value, and writes report.json and report.md (tables ready for the README, with ratios to the
original code, whose figures come from an H100 80GB) into OUT_DIR:
1. builds the custom ops, says which implementation each op runs (CUDA kernel or reference), and
   runs every CUDA test but the parity check (`python -m pytest -m cuda tests`: the ops' kernels
   against their references, forward, first and second derivatives; StyleGAN3's filtered_lrelu);
2. runs the CPU parity check (tests/test_cuda_parity.py: fp32 training on the GPU against the CPU
   in each layout the speed settings use); each pytest call is recorded with its counts and the
   failed tests' messages, and if either does not pass, everything after runs the PyTorch
   references, and report.md says so;
3. tries each --fast candidate on mspe 256 and keeps the fastest (default: FAST_CANDIDATES
   below; `--fast`, repeated, replaces them, e.g. `--fast bf16,plain,channels_last,compile`),
   then measures the training of mspe 256 and none 256 with the original settings (tf32, grouped
   modulated convolution, CUDA ops) and with the fastest candidate;
4. the same for the 1024 px workloads;
5. measures generation for every workload and both settings;
6. profiles a few iterations of mspe 256 with the fastest candidate (torch.profiler: the top
   operators by device time, profile.txt).
`--budget_s S` bounds the report's time: before each unit of work (a pytest call, a measurement,
the profile) it estimates from what it has timed whether the unit fits in the time left, and
leaves it out if not; a pytest call still running at the deadline is stopped, and a measurement
stops timing at its deadline (fewer iterations, recorded) or is left out if its warm-up, or one
period after it, would pass it; so the report ends before S seconds, and report.md says what the
budget left out.
A setting that fails (out of memory, a kernel or compiler error) is recorded with its error
and the report goes on. report.json and report.md are saved after every unit: rerun the same
command after an interruption or a budget's end and an unfinished report continues where it
stopped, trying failed settings and what the budget left out again (a finished one starts over).
Without CUDA it says so and does what it can with tiny workloads (32 px, 32 channels).

`--diffusion` measures the diffusion model instead (train.py --arch ddpm): training img/s of
training/diffusion.py's DiffusionStep (loss, backward, Adam, EMA) and sampling img/s of
deterministic DDIM with --ddim_steps steps (50) from the EMA model, for the UNets of
DIFFUSION_WORKLOADS at 32, 64 and 256 px (Ho et al.'s CIFAR-10 and LSUN UNets, and between them
for 64 px); --size or --batch measures one, with the UNet flags given (--channels, ...). Without
CUDA a tiny UNet at 32 px stands in (DIFFUSION_TINY).
"""

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import op  # noqa: E402
import op._plugin  # noqa: E402
from checkpoint import MODEL_DEFAULTS, add_model_arguments, describe_model, explicit_flags, model_config, model_label  # noqa: E402
from diffusion import DIFFUSION_DEFAULTS, SamplerSettings  # noqa: E402
from model import MODCONVS  # noqa: E402
from stylegan3 import ARCHS as STYLEGAN3_ARCHS  # noqa: E402
from training import gan  # noqa: E402
from training.diffusion import build_diffusion_step  # noqa: E402
from utils.device import PRECISIONS, choose_device, default_precision, setup_precision  # noqa: E402
from utils.flags import add_device_argument, add_speed_arguments  # noqa: E402


def stylegan2_model(position, size):
    """The model configuration of a reference workload: config-f (MODEL_DEFAULTS) with `position`."""
    return model_config({"position": position, "size": size})


# The GPU that the original code's figures come from (REFERENCE), another than a report's own.
REFERENCE_DEVICE = "H100 80GB"
# The original code (its CUDA kernels, PyTorch 2.11, TF32) on one H100 80GB: (model
# configuration, batch, figures) of each reference workload.
REFERENCE = [
    (stylegan2_model("none", 256), 16, {"train": 65.9, "s_per_kimg": 15.2, "peak_gib": 10.1, "generate": 623}),
    (stylegan2_model("mspe", 256), 16, {"train": 58.2, "s_per_kimg": 17.2, "peak_gib": 11.1, "generate": 385}),
    (stylegan2_model("none", 1024), 4, {"train": 15.0, "s_per_kimg": 66.6, "peak_gib": 10.2, "generate": 173}),
    (stylegan2_model("mspe", 1024), 4, {"train": 9.5, "s_per_kimg": 105.6, "peak_gib": 10.7, "generate": 45}),
]
# The flags that ask for a single workload; the reference and tiny workloads set them themselves.
WORKLOAD_FLAGS = ("size", "batch", "position")
# The speed settings the original code ran with.
ORIGINAL = {"precision": "tf32", "modconv": "grouped", "channels_last": False, "compile": False, "impl": "auto"}
# What --report tries for speed, on mspe 256: precision, the modulated convolution, the memory
# format, custom CUDA ops against PyTorch's (cuDNN's depthwise convolutions handle channels-last),
# and torch.compile: eagerly, one mspe 256 iteration runs some 4,000 ops besides Adam's (counted
# with a dispatch mode), and at 10 us or more of Python and launch cost each they come near the
# 90 ms an iteration may take at 175 img/s.
FAST_CANDIDATES = (
    "tf32,plain",
    "bf16,plain",
    "bf16,plain,channels_last",
    "bf16,plain,channels_last,ref",
    "bf16,plain,channels_last,compile",
)
# The workloads run where there is no GPU: their model flags and batch.
TINY_MODEL = {"size": 32, "channel_max": 32}
TINY_BATCH = 4


# --diffusion: (UNet configuration, batch) of the diffusion workloads: Ho et al.'s CIFAR-10 UNet
# at 32 px, its 256 px LSUN UNet, and the CIFAR-10 one with a fourth level pair at 64 px
DIFFUSION_WORKLOADS = [
    ({"size": 32, "channels": 128, "channel_mult": "1,2,2,2", "num_res_blocks": 2, "attention_resolutions": "16"}, 128),
    ({"size": 64, "channels": 128, "channel_mult": "1,2,2,2", "num_res_blocks": 2, "attention_resolutions": "16"}, 64),
    (
        {
            "size": 256,
            "channels": 128,
            "channel_mult": "1,1,2,2,4,4",
            "num_res_blocks": 2,
            "attention_resolutions": "16",
        },
        16,
    ),
]
# --diffusion without CUDA: the calibration's small UNet at 32 px
DIFFUSION_TINY = (
    {"size": 32, "channels": 32, "channel_mult": "1,2,2", "num_res_blocks": 1, "attention_resolutions": ""},
    8,
)


def build_parser():
    """bench.py's command line: the workload (the model flags, --batch), the speed settings, the
    timing and the GPU report."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_model_arguments(parser, "model of the workloads (--size, --batch or --position: a single one)")
    # the paper's model: a single workload measures MS-PE unless --position says otherwise
    parser.set_defaults(position="mspe")
    parser.add_argument("--batch", type=int, default=16, help="batch of the single workload")
    add_device_argument(parser)
    add_speed_arguments(parser)
    parser.add_argument(
        "--impl", default="auto", choices=["auto", "ref"], help="custom CUDA ops (auto) or the PyTorch references"
    )
    parser.add_argument("--warmup", type=int, default=16, help="untimed iterations first")
    parser.add_argument(
        "--iters", type=int, default=32, help="timed training iterations (rounded up to a multiple of 16)"
    )
    parser.add_argument("--gen_iters", type=int, default=20, help="timed generation batches")
    parser.add_argument("--peak_tflops", type=float, default=790.0, help="the device's dense bf16 matrix rate, for MFU")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--report",
        metavar="OUT_DIR",
        help="the GPU report: ops, CUDA tests, original vs --fast table on the reference workloads, profile",
    )
    parser.add_argument(
        "--budget_s",
        type=float,
        help="--report's time limit in seconds: its steps run in order of value and it stops before the limit, "
        "saying what it left out (the same command continues); default: no limit",
    )
    parser.add_argument(
        "--diffusion",
        action="store_true",
        help="measure the diffusion model (train.py --arch ddpm): training and DDIM sampling img/s",
    )
    parser.add_argument("--ddim_steps", type=int, default=50, help="--diffusion: DDIM steps of each sample")
    parser.add_argument(
        "--fast",
        type=fast_settings,
        action="append",
        help="--report's candidate settings, repeatable: comma-separated from fp32|tf32|bf16, grouped|plain, "
        f"channels_last, compile, ref (default: {'; '.join(FAST_CANDIDATES)})",
    )
    return parser


def parse_args(argv=None):
    """The command line `argv` (default: sys.argv's), with `fast` filled in and `explicit`: the
    flags it gives (their dests, sorted), which choose the workloads."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.budget_s is not None and args.report is None:
        parser.error("--budget_s is --report's time limit: give --report OUT_DIR too")
    if args.budget_s is not None and args.budget_s <= 0:
        parser.error(f"--budget_s takes a positive number of seconds, not {args.budget_s:g}")
    args.fast = args.fast or [fast_settings(text) for text in FAST_CANDIDATES]
    args.explicit = sorted(explicit_flags(parser, argv))
    return args


def fast_settings(text):
    """'bf16,plain,channels_last' -> the settings dict measure() takes (argparse type of --fast)."""
    settings = dict(ORIGINAL)
    for word in filter(None, (part.strip() for part in text.split(","))):
        if word in PRECISIONS:
            settings["precision"] = word
        elif word in MODCONVS:
            settings["modconv"] = word
        elif word in ("channels_last", "compile"):
            settings[word] = True
        elif word == "ref":
            settings["impl"] = "ref"
        else:
            raise argparse.ArgumentTypeError(
                f"unknown setting {word!r}; use {'|'.join(PRECISIONS)}, {'|'.join(MODCONVS)}, channels_last, "
                "compile, ref"
            )
    return settings


def describe(settings):
    return ", ".join(
        [
            settings["precision"],
            f"{settings['modconv']} modconv",
            "custom ops" if settings["impl"] == "auto" else "reference ops",
        ]
        + ["channels-last"] * settings["channels_last"]
        + ["compiled"] * settings["compile"]
    )


def given_model_flags(args):
    """The model flags the command line gives, but for those the reference and tiny workloads set."""
    return {key: getattr(args, key) for key in MODEL_DEFAULTS if key in args.explicit and key not in WORKLOAD_FLAGS}


def reference_workloads(args):
    """[(model configuration, batch)] of the four reference workloads, with the model flags given."""
    given = given_model_flags(args)
    return [(model_config({**config, **given}), batch) for config, batch, _ in REFERENCE]


def tiny_workloads(args):
    """[(model configuration, batch)] of the CPU's stand-ins for the reference workloads: mspe and
    none at 32 px with 32 channels at most, with the model flags given."""
    given = given_model_flags(args)
    return [(model_config({**TINY_MODEL, "position": position, **given}), TINY_BATCH) for position in ("mspe", "none")]


def workloads(args, device):
    """[(model configuration, batch)] that bench measures without --report: the command line's
    single workload, or the reference workloads (on CUDA) or a tiny one (without)."""
    if set(WORKLOAD_FLAGS) & set(args.explicit):
        config = model_config(args)
        if config["arch"] in STYLEGAN3_ARCHS and "position" not in args.explicit:
            config["position"] = "none"  # the alias-free generators have an input of their own
        return [(config, args.batch)]
    if device.type != "cuda":
        print("no GPU: running a tiny CPU workload (32 px, 32 channels; --size, --batch or --position choose one)")
        return tiny_workloads(args)[:1]
    return reference_workloads(args)


def workload_label(config, batch):
    """'mspe, 256, batch 16': a workload in tables (model_label's word, which for SWAGAN is its
    position, so SWAGAN says so)."""
    kind = f"swagan {model_label(config)}" if config["arch"] == "swagan" else model_label(config)
    return f"{kind}, {config['size']}, batch {batch}"


def reference_figures(config, batch):
    """The original code's figures of a workload, or None where it did not measure that one."""
    config = model_config(config)
    return next(
        (figures for model, measured_batch, figures in REFERENCE if (model, measured_batch) == (config, batch)), None
    )


def built_models(config, settings):
    """train.py's generator, discriminator and EMA generator of the model configuration `config`,
    initialised on the CPU (the same weights on every device and under every setting) with the
    modulated convolution of `settings`."""
    try:
        return gan.build_models(config, "cpu", modconv=settings["modconv"])
    except ValueError as error:  # a configuration the models cannot take, e.g. a position for stylegan3-t
        raise SystemExit(
            f"cannot build {describe_model(config)}: {error}. Give model flags it accepts (bench's workloads "
            "are MS-PE unless --position says otherwise: stylegan3-t and -r need --position none)"
        ) from None


def training_step(config, device, settings, autocast=contextlib.nullcontext):
    """train.py's GANStep, with its default hyperparameters, for the model configuration `config`,
    initialised on the CPU (the same weights on every device), then moved to `device`; `settings`
    has modconv, channels_last and compile."""
    config = model_config(config)
    generator, discriminator, g_ema = (module.to(device) for module in built_models(config, settings))
    if settings["channels_last"]:
        gan.use_channels_last(generator, discriminator, g_ema)
    step_settings = gan.StepSettings(latent=config["latent"])
    g_optim, d_optim = gan.build_optimizers(generator, discriminator, step_settings)
    return gan.GANStep(
        generator, discriminator, g_ema, g_optim, d_optim, step_settings, autocast=autocast, compile=settings["compile"]
    )


class FlopCounter(TorchDispatchMode):
    """Adds up torch.utils.flop_counter's per-op FLOP formulas. (FlopCounterMode itself tracks
    modules with hooks that autograd.grad, and so R1, does not support.)"""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


# count_flops' results: {(model configuration's items, batch): FLOPs per iteration}
FLOP_COUNTS = {}


def count_flops(config, batch):
    """Average FLOPs of one training iteration (R1 at its lazy rate), counted on `meta` once per
    workload."""
    config = model_config(config)
    key = (tuple(sorted(config.items())), batch)
    if key not in FLOP_COUNTS:
        meta = torch.device("meta")
        # the grouped modulated convolution counts the same multiply-adds; plain is clearer
        step = training_step(config, meta, {"modconv": "plain", "channels_last": False, "compile": False})
        real = torch.empty(batch, 3, config["size"], config["size"], device=meta)
        counts = {}
        for iteration in (0, 1):  # iteration 0 runs R1, iteration 1 does not
            with FlopCounter() as counter:
                step(iteration, real)
            counts[iteration] = counter.total
        every = step.settings.d_reg_every
        FLOP_COUNTS[key] = (counts[0] + (every - 1) * counts[1]) / every
    return FLOP_COUNTS[key]


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def chosen_ops(settings):
    """The custom ops as settings["impl"] says meanwhile: 'ref' forces the PyTorch references."""
    forced_ref = op._plugin.FORCE_REF
    op._plugin.FORCE_REF = forced_ref or settings["impl"] == "ref"
    try:
        yield
    finally:
        op._plugin.FORCE_REF = forced_ref


def timing_step(config, batch, settings, device):
    """The training step of one workload under `settings`, and random "real" images for it in
    its memory format."""
    if settings["compile"]:
        # dynamo keeps every graph it built for Generator.forward and Discriminator.forward, three
        # and two per workload, and past 8 runs that code eagerly: each workload starts afresh
        torch.compiler.reset()
    autocast = setup_precision(settings["precision"], device)
    step = training_step(config, device, settings, autocast)
    real = torch.randn(batch, 3, config["size"], config["size"], device=device).clamp(-1, 1)
    if settings["channels_last"]:
        real = real.contiguous(memory_format=torch.channels_last)
    return step, real


class OutOfBudget(Exception):
    """A measurement that its deadline (--budget_s) leaves no room for: not measured (budget)."""


def past(deadline, seconds=0.0):
    """Whether `seconds` more from now would end after `deadline` (a time.perf_counter() time; None:
    no deadline)."""
    return deadline is not None and time.perf_counter() + seconds > deadline


def measure_training(config, batch, settings, args, device, deadline=None):
    """Training figures of one workload (a model configuration and a batch) under one settings
    dict. With a `deadline` (a time.perf_counter() time), timing stops at the last R1 period that
    ends before it (at least one period: R1 counted at its real rate), and a deadline that the
    warm-up and one period would pass raises OutOfBudget. Besides the figures: `iters` timed of
    `iters_asked`, and the seconds it took, `setup_s` of them untimed (building, compiling, FLOP
    counting, warm-up) and `shortest_s` its shortest run (set-up and one period), which estimate
    the next measurements against a budget."""
    started = time.perf_counter()
    config = model_config(config)
    label = workload_label(config, batch)
    flops = count_flops(config, batch)
    with chosen_ops(settings):
        step, real = timing_step(config, batch, settings, device)
        every = step.settings.d_reg_every
        asked = -(-args.iters // every) * every

        first_start = warmup_start = time.perf_counter()
        for iteration in tqdm(range(args.warmup), desc=f"{label} warm-up", leave=False):
            if past(deadline):
                raise OutOfBudget(f"its warm-up passed the deadline after {iteration} of {args.warmup} iterations")
            step(iteration, real)
            if iteration == 0:  # compiling, cuDNN's algorithm search: the first iteration is no rate
                warmup_start = time.perf_counter()
        synchronize(device)
        # seconds an iteration takes: the warm-up's after the first; with one warm-up iteration the
        # first's, an overestimate, so that the period timed below cannot pass the deadline unseen
        if args.warmup > 1:
            iteration_s = (time.perf_counter() - warmup_start) / (args.warmup - 1)
        else:
            iteration_s = time.perf_counter() - first_start
        if past(deadline, every * iteration_s):
            raise OutOfBudget(f"one R1 period of {every} iterations would pass the deadline after the warm-up")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        timed = 0
        with tqdm(total=asked, desc=f"{label} train", leave=False) as progress:
            while timed < asked and not (timed and past(deadline, (time.perf_counter() - start) * every / timed)):
                for iteration in range(timed, timed + every):
                    step(iteration, real)
                timed += every
                progress.update(every)
        synchronize(device)
        train_seconds = time.perf_counter() - start
        peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")

    seconds = time.perf_counter() - started
    train_images_per_s = batch * timed / train_seconds
    tflops = flops * timed / train_seconds / 1e12
    return {
        "model": config,
        "batch": batch,
        "settings": describe(settings),
        "train_img_s": train_images_per_s,
        "s_per_kimg": 1000 / train_images_per_s,
        "peak_gib": peak_gib,
        "tflop_per_iter": flops / 1e12,
        "tflops": tflops,
        "mfu": tflops / args.peak_tflops,
        "iters": timed,
        "iters_asked": asked,
        "seconds": seconds,
        "setup_s": seconds - train_seconds,
        "shortest_s": seconds - train_seconds + train_seconds * every / timed,
    }


def measure_generation(config, batch, settings, args, device, deadline=None):
    """Generation figures of one workload under one settings dict: g_ema's inference forward
    alone (compiled, it is a graph of its own, built afresh for each workload). With a `deadline`,
    as measure_training: timing stops before it (at least one batch), and a warm-up that passes it
    raises OutOfBudget; `gen_iters` timed batches of `gen_iters_asked`, `seconds`, `setup_s`,
    `shortest_s` (set-up and one batch)."""
    started = time.perf_counter()
    config = model_config(config)
    label = workload_label(config, batch)
    with chosen_ops(settings):
        if settings["compile"]:
            torch.compiler.reset()
        autocast = setup_precision(settings["precision"], device)
        g_ema = built_models(config, settings)[2].to(device)
        if settings["channels_last"]:
            gan.to_channels_last(g_ema)
        generate = torch.compile(g_ema) if settings["compile"] else g_ema
        z = torch.randn(batch, config["latent"], device=device)
        with torch.no_grad(), autocast():
            for warmup in range(3):
                if past(deadline):
                    raise OutOfBudget(f"its warm-up passed the deadline after {warmup} of 3 batches")
                batch_start = time.perf_counter()
                generate([z])
                synchronize(device)
            if past(deadline, time.perf_counter() - batch_start):
                raise OutOfBudget("one timed batch would pass the deadline after the warm-up")
            start = time.perf_counter()
            timed = 0
            for _ in tqdm(range(args.gen_iters), desc=f"{label} generate", leave=False):
                if timed and past(deadline, (time.perf_counter() - start) / timed):
                    break
                generate([z])
                timed += 1
            synchronize(device)
        generate_seconds = time.perf_counter() - start

    seconds = time.perf_counter() - started
    return {
        "model": config,
        "batch": batch,
        "settings": describe(settings),
        "generate_img_s": batch * timed / generate_seconds,
        "gen_iters": timed,
        "gen_iters_asked": args.gen_iters,
        "seconds": seconds,
        "setup_s": seconds - generate_seconds,
        "shortest_s": seconds - generate_seconds + generate_seconds / timed,
    }


def measure(config, batch, settings, args, device):
    """Training and generation figures of one workload (a model configuration and a batch) under
    one settings dict, without a deadline: what bench measures without --report."""
    figures = measure_training(config, batch, settings, args, device)
    generation = measure_generation(config, batch, settings, args, device)
    return {**figures, "generate_img_s": generation["generate_img_s"]}


def cut_mark(row, iterations):
    """'†' where a row's figure was timed over fewer iterations (`iterations`: 'iters' or
    'gen_iters') than asked: the budget's deadline stopped it."""
    return "†" if row.get(iterations, 0) < row.get(f"{iterations}_asked", 0) else ""


def table(rows):
    """Markdown table of measured figures: measure()'s, or the GPU report's rows, which give
    generation apart and may say instead that a workload failed or was not measured. Ratios are
    to the original code on its H100 where it measured the same workload; † marks a figure timed
    over fewer iterations than asked (the budget's deadline)."""
    lines = [
        "| workload | settings | train img/s | s/kimg | peak GiB | TFLOP/iter | TFLOP/s | MFU | generation img/s "
        f"| vs original on {REFERENCE_DEVICE} (train, gen) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        workload = workload_label(r["model"], r["batch"])
        if "error" in r or "not_measured" in r:
            why = f"failed: {r['error']}" if "error" in r else r["not_measured"]
            lines.append(f"| {workload} | {r['settings']} | {why} |" + " - |" * 7)
            continue
        reference = reference_figures(r["model"], r["batch"])
        generated = "generate_img_s" in r
        generation = f"{r['generate_img_s']:.0f}{cut_mark(r, 'gen_iters')}" if generated else r.get("generation", "-")
        ratio = "-"
        if reference:
            generation_ratio = f"{r['generate_img_s'] / reference['generate']:.2f}x" if generated else "-"
            ratio = f"{r['train_img_s'] / reference['train']:.2f}x, {generation_ratio}"
        lines.append(
            f"| {workload} | {r['settings']} | {r['train_img_s']:.1f}{cut_mark(r, 'iters')} | "
            f"{r['s_per_kimg']:.1f} | {r['peak_gib']:.1f} | {r['tflop_per_iter']:.3f} | {r['tflops']:.1f} | "
            f"{100 * r['mfu']:.1f}% | {generation} | {ratio} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the GPU report (--report)

# The CPU parity check, the report's step 2; step 1 runs the other CUDA tests.
PARITY_TESTS = "tests/test_cuda_parity.py"
# Seconds before --budget_s (a tenth of it at most) at which work stops: what saving the report
# and leaving the process (the CUDA context, compile workers) take.
FINISH_S = 10
# A guess at what a first compiled measurement takes beyond an eager one, before any was timed:
# inductor building the graphs of a 256 px generator and discriminator (three and two).
COMPILE_GUESS_S = 90
# the kinds of measurement: the report's list of records of each
MEASUREMENTS = {"training": "measurements", "generation": "generation"}


class Budget:
    """--budget_s: the report's time limit, counted from its start (None: no limit). Work stops
    at the `deadline`, FINISH_S (at most a tenth of the limit) before it, so that saving the
    report and leaving fit in; `left_out` lists what the budget left out in this call, as
    {"unit": what, "why": why}."""

    clock = staticmethod(time.perf_counter)  # the clock of the measurements' deadlines

    def __init__(self, seconds):
        self.seconds = seconds
        self.start = self.clock()
        self.finish_s = 0.0 if seconds is None else min(FINISH_S, seconds / 10)
        self.deadline = None if seconds is None else self.start + seconds - self.finish_s
        self.left_out = []

    def spent(self):
        return self.clock() - self.start

    def left(self):
        """Seconds to the deadline: math.inf without a limit, 0 or less once it has passed."""
        return math.inf if self.deadline is None else self.deadline - self.clock()


def unit_label(kind, workload, settings):
    """'training: mspe, 256, batch 16, tf32, grouped modconv, custom ops': one measurement."""
    return f"{kind}: {workload_label(*workload)}, {describe(settings)}"


def scaled_shortest(records, workload, kind):
    """The shortest run of a `kind` measurement of `workload` that earlier records suggest: the
    latest one of the same workload, else the latest one scaled by the ratio of the original
    code's seconds per iteration (or per batch) between the two workloads (REFERENCE: the same
    across settings and GPUs, near enough; 1 where it did not measure one of them)."""
    same_workload = [r for r in records if (r["model"], r["batch"]) == tuple(workload)]
    if same_workload:
        return same_workload[-1]["shortest_s"]
    record = records[-1]
    figure = "train" if kind == "training" else "generate"
    ours, theirs = reference_figures(*workload), reference_figures(record["model"], record["batch"])
    if ours is None or theirs is None:
        return record["shortest_s"]
    return record["shortest_s"] * (workload[1] / ours[figure]) / (record["batch"] / theirs[figure])


def tests_not_run(summary):
    """run_cuda_tests' record of a pytest call that the budget did not let run to its end."""
    counts = {word: 0 for word in ("passed", "failed", "skipped", "error")}
    return {
        **counts,
        "returncode": None,
        "summary": summary,
        "failed_tests": {},
        "output": "",
        "seconds": 0.0,
        "cut_by_budget": True,
    }


def run_cuda_tests(paths=("tests",), ignore=(), timeout=None):
    """Run the CUDA tests of `paths` but the files of `ignore` (`python -m pytest -m cuda PATHS`
    from the repository root). Returns the counts ('passed', 'failed', 'skipped', 'error'),
    pytest's exit code ('returncode'), its summary line, {id: first line of the message} of the
    tests that failed or errored ('failed_tests': the parity test's message carries its figures),
    the end of its output and the seconds it took. A call not over after `timeout` seconds is
    stopped with every process it started (an op's build too, which would hold torch's build lock)
    and recorded as tests_not_run, with the output it gave."""
    # -vv: the short summary's messages whole, not cut at the terminal's width
    ignored = [f"--ignore={path}" for path in ignore]
    command = [sys.executable, "-m", "pytest", "-vv", "-rfEs", "-m", "cuda", *ignored, *paths]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException as stop:  # the budget's timeout, or an interrupt: no orphaned build either way
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if not isinstance(stop, subprocess.TimeoutExpired):
            raise
        stdout, _ = process.communicate()
        seconds = time.perf_counter() - started
        return {
            **tests_not_run(f"stopped by the budget after {seconds:.0f} s"),
            "output": stdout[-4000:],
            "seconds": seconds,
        }
    output = stdout.strip()
    summary = output.splitlines()[-1].strip("= ") if output else stderr[-500:]
    counts = {word: 0 for word in ("passed", "failed", "skipped", "error")}
    for part in summary.replace(" in ", ", ").split(", "):
        number, _, word = part.strip().partition(" ")
        if number.isdigit() and word.rstrip("s") in counts:
            counts[word.rstrip("s")] = int(number)
    failed_tests = {}
    for line in output.splitlines():
        outcome, _, rest = line.partition(" ")
        if outcome in ("FAILED", "ERROR"):
            test_id, _, message = rest.partition(" - ")
            failed_tests[test_id] = message
    return {
        **counts,
        "returncode": process.returncode,
        "summary": summary,
        "failed_tests": failed_tests,
        "output": stdout[-4000:],
        "seconds": time.perf_counter() - started,
    }


def profile(config, batch, settings, device, path, iterations=6):
    """torch.profiler's table of the top operators over a few iterations, written to `path`."""
    with chosen_ops(settings):
        step, real = timing_step(config, batch, settings, device)
        for iteration in range(3):
            step(iteration, real)
        synchronize(device)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as profiler:
            for iteration in range(iterations):
                step(iteration, real)
            synchronize(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    text = profiler.key_averages().table(sort_by=sort_by, row_limit=30)
    with open(path, "w") as file:
        file.write(f"{workload_label(config, batch)}, {describe(settings)}, {iterations} iterations\n{text}\n")


class GPUReportFile:
    """The GPU report's results, saved to OUT_DIR/report.json and report.md after every unit of
    work (a pytest call, a measurement, the profile). An unfinished report of the same device and
    torch version found there is continued: its steps and measurements are kept and only the
    missing ones run (failed measurements and pytest calls that the budget stopped run again).
    Each call adds to `calls` its budget, the seconds it spent and what the budget left out."""

    def __init__(self, out, device_name, budget):
        self.out = out
        self.path = os.path.join(out, "report.json")
        self.budget = budget
        self.results = {}
        if os.path.exists(self.path):
            with open(self.path) as file:
                saved = json.load(file)
            same_machine = (saved.get("device"), saved.get("torch")) == (device_name, torch.__version__)
            if not saved.get("finished") and same_machine:
                for key in MEASUREMENTS.values():
                    saved[key] = [figures for figures in saved.get(key, []) if "error" not in figures]
                for key in ("cuda_tests", "parity_test"):
                    if saved.get(key, {}).get("cut_by_budget"):
                        del saved[key]
                print(f"continuing the unfinished report in {out} ({len(saved['measurements'])} measurements kept)")
                self.results = saved
        self.results.update(device=device_name, torch=torch.__version__, finished=False)
        for key in (*MEASUREMENTS.values(), "calls"):
            self.results.setdefault(key, [])
        self.call = {"budget_s": budget.seconds, "spent_s": 0.0, "left_out": budget.left_out}
        self.results["calls"].append(self.call)
        # the tables' rows once step 3 has chosen the settings: {table: [(workload, settings)]}
        self.plans = {}

    def save(self):
        """report.json and report.md as they stand, with the tables' rows and this call's time."""
        self.call["spent_s"] = self.budget.spent()
        for name, plan in self.plans.items():
            self.results[name] = [self.row(workload, settings) for workload, settings in plan]
        with open(self.path, "w") as file:
            json.dump(self.results, file, indent=2, default=str)
        with open(os.path.join(self.out, "report.md"), "w") as file:
            file.write(gpu_report_markdown(self.results))

    def record(self, kind, workload, settings):
        """The record of the `kind` measurement of `workload` under `settings`, or None."""
        key = (*workload, describe(settings))
        records = self.results[MEASUREMENTS[kind]]
        return next((r for r in records if (r["model"], r["batch"], r["settings"]) == key), None)

    def not_measured(self, unit):
        """What a table says of a unit without a record: the budget left it out, or not yet."""
        left_out = any(entry["unit"] == unit for entry in self.budget.left_out)
        return "not measured (budget)" if left_out else "not measured yet"

    def row(self, workload, settings):
        """A table's row: the training record of `workload` under `settings`, or why there is
        none, with its generation figure where step 5 measures one (the "workloads" table)."""
        config, batch = workload
        record = self.record("training", workload, settings)
        unit = unit_label("training", workload, settings)
        row = dict(record or {"model": config, "batch": batch, "settings": describe(settings)})
        if record is None:
            row["not_measured"] = self.not_measured(unit)
        if (workload, describe(settings)) in [(w, describe(s)) for w, s in self.plans.get("workloads", [])]:
            generation = self.record("generation", workload, settings)
            if generation is None:
                row["generation"] = self.not_measured(unit_label("generation", workload, settings))
            elif "error" in generation:
                row["generation"] = f"failed: {generation['error']}"
            else:
                figures = ("generate_img_s", "gen_iters", "gen_iters_asked")
                row.update({key: generation[key] for key in figures if key in generation})
        return row

    def leave_out(self, unit, why):
        """Record that the budget left `unit` out of this call, and say so."""
        self.budget.left_out.append({"unit": unit, "why": why})
        print(f"  {unit}: not measured (budget: {why})")
        self.save()

    def tests(self, key, unit, paths, ignore=()):
        """results[key]: run_cuda_tests' record of `paths` but `ignore`, run unless an earlier call
        did, and stopped at the budget's deadline (a continued report runs it again)."""
        if key not in self.results:
            left = self.budget.left()
            if left <= 0:
                record = tests_not_run("not run (budget)")
            else:
                record = run_cuda_tests(paths, ignore, timeout=None if left == math.inf else left)
            self.results[key] = record
            if record.get("cut_by_budget"):
                self.leave_out(unit, record["summary"])
            self.save()
        return self.results[key]

    def estimated_seconds(self, kind, workload, settings):
        """Seconds the shortest `kind` measurement of `workload` under `settings` takes (set-up and
        one R1 period, or one generation batch): scaled_shortest of the records of the same
        settings; for a generation without any, the training record of the same workload and
        settings (which builds and compiles more); else of the records of any settings, plus
        COMPILE_GUESS_S for a first compiled one. With nothing of this kind timed, 0 (its own
        deadline bounds it), but for the report's first measurement: the finishing allowance
        (Budget.finish_s). Its start, building the first model and running its first iteration,
        cannot stop at the deadline; with the allowance left before the deadline as well as after
        it, that start may take twice the allowance and still end within the budget."""
        timed = [r for r in self.results[MEASUREMENTS[kind]] if "shortest_s" in r]
        same_settings = [r for r in timed if r["settings"] == describe(settings)]
        if same_settings:
            return scaled_shortest(same_settings, workload, kind)
        training = self.record("training", workload, settings)
        if kind == "generation" and training is not None and "shortest_s" in training:
            return training["shortest_s"]
        if timed:
            first_compiled = settings["compile"] and not any("compiled" in r["settings"] for r in timed)
            return scaled_shortest(timed, workload, kind) + COMPILE_GUESS_S * first_compiled
        first_measurement = not any("shortest_s" in r for key in MEASUREMENTS.values() for r in self.results[key])
        return self.budget.finish_s if first_measurement else 0.0

    def measured(self, workload, settings, args, device, kind="training"):
        """measure_training's figures (kind 'generation': measure_generation's) of one workload,
        (model configuration, batch), under one settings dict, measured once. It starts only if
        the time left holds its estimate (estimated_seconds) and stops at the budget's deadline;
        one the budget leaves out comes back as a row saying so and is not kept, so a continued
        report measures it. A setting that fails (out of memory, a kernel or compiler error) is
        recorded with its error and the report goes on: one bad candidate must not cost the others."""
        found = self.record(kind, workload, settings)
        if found is not None:
            return found
        config, batch = workload
        unit = unit_label(kind, workload, settings)
        left_out = {
            "model": config,
            "batch": batch,
            "settings": describe(settings),
            "not_measured": "not measured (budget)",
        }
        estimate, left = self.estimated_seconds(kind, workload, settings), self.budget.left()
        if left <= estimate:
            self.leave_out(unit, f"about {estimate:.0f} s needed, {max(0.0, left):.0f} s left")
            return left_out
        measure_function = measure_training if kind == "training" else measure_generation
        try:
            figures = measure_function(config, batch, settings, args, device, deadline=self.budget.deadline)
        except OutOfBudget as error:
            figures = None
            self.leave_out(unit, str(error))
        except Exception as error:
            message = (str(error).strip().splitlines() or [""])[0][:200].replace("|", "/")
            figures = {
                "model": config,
                "batch": batch,
                "settings": describe(settings),
                "error": f"{type(error).__name__}: {message}",
            }
            print(f"  {unit}: failed, {figures['error']}")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if figures is None:
            return left_out
        self.results[MEASUREMENTS[kind]].append(figures)
        self.save()
        return figures


def failure_note(results):
    """report.md's note when the CUDA tests or the parity check did not pass (None when both did):
    the measurements then run the PyTorch references."""
    failing = [
        f"({'stopped by the budget' if record['returncode'] is None else 'pytest exit ' + str(record['returncode'])})"
        f" in {where}"
        for where, key in (("the ops' and StyleGAN3's tests", "cuda_tests"), ("the CPU parity check", "parity_test"))
        for record in [results[key]]
        if record["returncode"] != 0
    ]
    if not failing:
        return None
    return (
        f"The CUDA tests did not pass {' and '.join(failing)}: every measurement below runs the PyTorch references "
        "(reference ops)."
    )


def gpu_report(args, device):
    """--report: the six steps of the module docstring, within --budget_s; returns the GPU
    report's dict."""
    os.makedirs(args.report, exist_ok=True)
    cuda = device.type == "cuda"
    budget = Budget(args.budget_s)
    report_file = GPUReportFile(args.report, torch.cuda.get_device_name(device) if cuda else "CPU", budget)
    results = report_file.results
    if not cuda:
        print(
            "no CUDA on this machine: the ops run their references, the CUDA tests skip, and the workloads "
            "shrink to tiny CPU ones (32 px, 32 channels)"
        )
    loads = reference_workloads(args) if cuda else tiny_workloads(args)
    # where candidates are tried and profiled: the first MS-PE workload, mspe 256 (tiny: mspe 32)
    trial_load = next((config, batch) for config, batch in loads if config["position"] == "mspe")
    # in order of value: the trial's size (step 3), then the larger ones (step 4), MS-PE first
    by_value = sorted(loads, key=lambda workload: (workload[0]["size"], workload[0]["position"] != "mspe"))
    trial_size = [workload for workload in by_value if workload[0]["size"] == trial_load[0]["size"]]
    larger = [workload for workload in by_value if workload not in trial_size]
    original = {**ORIGINAL, "precision": default_precision(device)}

    def heading(text):
        left = "" if budget.deadline is None else f", {max(0.0, budget.left()):.0f} s of the budget left"
        print(f"{text} ({budget.spent():.0f} s into the report{left})")

    def print_tests(record):
        print(f"  {record['summary']}")
        for test_id, message in record["failed_tests"].items():
            print(f"  failed: {test_id}: {message}")

    heading("1/6 custom ops and the CUDA tests (python -m pytest -m cuda tests, but the parity check)")
    results["ops"] = op.implementations(torch.zeros(1, device=device))
    for op_name, implementation in results["ops"].items():
        print(f"  {op_name}: {implementation}")
    print_tests(report_file.tests("cuda_tests", "the CUDA tests", ["tests"], ignore=[PARITY_TESTS]))
    heading(f"2/6 the CPU parity check (python -m pytest -m cuda {PARITY_TESTS})")
    print_tests(report_file.tests("parity_test", "the CPU parity check", [PARITY_TESTS]))
    results.pop("ops_note", None)
    note = failure_note(results)
    if note:  # never time kernels that compute something else
        original = {**original, "impl": "ref"}
        args.fast = [{**settings, "impl": "ref"} for settings in args.fast]
        results["ops_note"] = note
        print(f"  {note}")

    heading(
        f"3/6 {len(args.fast)} candidate settings on {workload_label(*trial_load)}, then the workloads of its size "
        "with the original settings and the fastest"
    )
    trials = [report_file.measured(trial_load, settings, args, device) for settings in args.fast]
    working = [(trial["train_img_s"], index) for index, trial in enumerate(trials) if "train_img_s" in trial]
    fastest = args.fast[max(working)[1]] if working else None
    results["trial_workload"] = {"model": trial_load[0], "batch": trial_load[1]}
    if fastest:
        results["fastest"] = describe(fastest)
    elif all("error" in trial for trial in trials):
        results["fastest"] = "none, every candidate failed"
    else:
        results["fastest"] = "none: the budget left the candidates out"
    compared = (original, fastest) if fastest else (original,)
    tried = {describe(settings): settings for settings in [*args.fast, original]}
    report_file.plans = {
        "workloads": [(workload, settings) for workload in loads for settings in compared],
        "trials": [(trial_load, settings) for settings in tried.values()],
    }
    report_file.save()
    print(table(results["trials"]))
    print(f"  fastest: {results['fastest']}")
    for workload in trial_size:
        for settings in compared:
            report_file.measured(workload, settings, args, device)

    heading(f"4/6 the larger workloads ({', '.join(workload_label(*workload) for workload in larger) or 'none'})")
    for workload in larger:
        for settings in compared:
            report_file.measured(workload, settings, args, device)

    heading("5/6 generation, every workload with the original settings and the fastest")
    for workload in by_value:
        for settings in compared:
            report_file.measured(workload, settings, args, device, kind="generation")

    profiled = fastest or original
    heading(f"6/6 profile of {workload_label(*trial_load)}, {describe(profiled)}")
    if "profile" not in results:
        estimate, left = report_file.estimated_seconds("training", trial_load, profiled), budget.left()
        if left <= estimate:
            report_file.leave_out("profile", f"about {estimate:.0f} s needed, {max(0.0, left):.0f} s left")
        else:
            started = time.perf_counter()
            profile(*trial_load, profiled, device, os.path.join(args.report, "profile.txt"))
            results["profile"] = {
                "workload": workload_label(*trial_load),
                "settings": describe(profiled),
                "seconds": time.perf_counter() - started,
            }

    results["finished"] = not budget.left_out
    report_file.save()
    print(table(results["workloads"]))
    left_out = len(budget.left_out)
    outcome = f"the budget left out {left_out} units: the same command continues" if left_out else "finished"
    heading(f"wrote {args.report}/report.md, report.json, profile.txt; {outcome}")
    return results


def reference_note(device):
    """report.md's word on the original code's figures: they come from another GPU."""
    if REFERENCE_DEVICE.split()[0] in device:
        return (
            f"The original code's figures beside them, the ratios' reference, were measured on an {REFERENCE_DEVICE} "
            f"of another machine, not on this report's {device}."
        )
    kind = "device" if device == "CPU" else "GPU"
    return (
        f"The original code's figures beside them, the ratios' reference, were measured on an {REFERENCE_DEVICE}, "
        f"another {kind} than this report's {device}: the ratios compare two {kind}s as well as two codes."
    )


def budget_markdown(results):
    """report.md's Budget section: this call's limit and time, what it left out, what it timed short."""
    *earlier, this = results["calls"]
    limit = f"a budget of {this['budget_s']:.0f} s" if this["budget_s"] else "no budget (--budget_s)"
    lines = [f"This call: {limit}, {this['spent_s']:.0f} s spent."]
    if earlier:
        lines[0] += (
            f" It continued a report of {len(earlier)} earlier calls, {sum(c['spent_s'] for c in earlier):.0f} s."
        )
    if this["left_out"]:
        lines += ["", "Not measured (budget); the same command continues with them:", ""]
        lines += [f"- {entry['unit']} ({entry['why']})" for entry in this["left_out"]]
    short = [
        f"- {kind}: {workload_label(r['model'], r['batch'])}, {r['settings']}: {r[iterations]} of "
        f"{r[iterations + '_asked']} {'iterations' if kind == 'training' else 'batches'}"
        for kind, iterations in (("training", "iters"), ("generation", "gen_iters"))
        for r in results[MEASUREMENTS[kind]]
        if cut_mark(r, iterations)
    ]
    if short:
        lines += ["", "Timed over fewer iterations than asked (the budget's deadline; † in the tables):", "", *short]
    return lines


def tests_markdown(results, key, title, text):
    """report.md's section of one pytest call of the report."""
    lines = [f"## {title}", "", text, ""]
    if key not in results:
        return [*lines, "Not run yet.", ""]
    record = results[key]
    lines += [f"Result: {record['summary']}", ""]
    failed = [f"- failed: `{test_id}`: {message}" for test_id, message in record["failed_tests"].items()]
    return [*lines, *failed, *([""] if failed else [])]


def gpu_report_markdown(results):
    """report.md: the device, the budget, the ops, what the CUDA tests gave and the tables,
    README-ready; what is not measured (yet, or for the budget) says so."""
    lines = [
        f"# benchmarks/bench.py --report on {results['device']} (torch {results['torch']})",
        "",
        f"Measured on {results['device']}. {reference_note(results['device'])}",
        "",
        "## Budget",
        "",
        *budget_markdown(results),
        "",
        "## Custom ops",
        "",
        *[f"- `{name}`: {implementation}" for name, implementation in results.get("ops", {}).items()],
        "",
        *tests_markdown(
            results,
            "cuda_tests",
            "CUDA tests",
            f"`python -m pytest -m cuda --ignore={PARITY_TESTS} tests`: the custom ops' CUDA kernels against their "
            "PyTorch references (forward, first and second derivatives) and StyleGAN3's filtered_lrelu against its "
            "reference.",
        ),
        *tests_markdown(
            results,
            "parity_test",
            "The CPU parity check",
            f"`python -m pytest -m cuda {PARITY_TESTS}`: fp32 training on the GPU against the CPU in each layout "
            "(losses within 1e-3 relative, weights within Adam's bound of 2 lr per iteration; a failure's message "
            "gives the figures).",
        ),
        *([results["ops_note"], ""] if "ops_note" in results else []),
    ]
    if "workloads" in results:
        lines += ["## Throughput: the original settings and the fastest candidate", "", table(results["workloads"]), ""]
        if any(cut_mark(r, "iters") or cut_mark(r, "gen_iters") for r in results["workloads"]):
            lines += ["† timed over fewer iterations than asked: the budget's deadline stopped it.", ""]
    succeeded = [r for r in results.get("workloads", []) if "train_img_s" in r]
    overheads = [
        f"- {r['model']['size']} px, {r['settings']}: MS-PE trains at "
        f"{100 * r['train_img_s'] / none['train_img_s']:.0f}% of none's speed"
        for r in succeeded
        if r["model"]["position"] == "mspe"
        for none in succeeded
        if (none["model"], none["batch"], none["settings"])
        == ({**r["model"], "position": "none"}, r["batch"], r["settings"])
    ]
    if overheads:
        lines += ["MS-PE against none:", "", *overheads, ""]
    if "trials" in results:
        lines += [f"## Every setting tried (fastest: {results['fastest']})", "", table(results["trials"]), ""]
    lines += ["## Profile", ""]
    if "profile" in results:
        profiled = results["profile"]
        lines.append(f"profile.txt: torch.profiler's top operators, {profiled['workload']}, {profiled['settings']}.")
    else:
        left_out = any(entry["unit"] == "profile" for entry in results["calls"][-1]["left_out"])
        lines.append("Not measured (budget)." if left_out else "Not measured yet.")
    return "\n".join([*lines, ""])


# ---------------------------------------------------------------------------------------------
# --diffusion


def diffusion_workloads(args, device):
    """[(model configuration, batch)] of --diffusion: the command line's single workload (--size
    or --batch), DIFFUSION_WORKLOADS on CUDA, DIFFUSION_TINY without; UNet flags given apply."""
    given = {key: getattr(args, key) for key in DIFFUSION_DEFAULTS if key in args.explicit}
    position = {"position": args.position}
    if {"size", "batch"} & set(args.explicit):
        chosen = [({"size": args.size}, args.batch)]
    elif device.type == "cuda":
        chosen = DIFFUSION_WORKLOADS
    else:
        print("no GPU: running a tiny diffusion workload (32 px, 32 channels; --size or --batch choose one)")
        chosen = [DIFFUSION_TINY]
    return [(model_config({"arch": "ddpm", **config, **position, **given}), batch) for config, batch in chosen]


def measure_diffusion(config, batch, settings, args, device):
    """Training img/s of the DiffusionStep of `config` at `batch` (--warmup untimed, --iters timed
    iterations) and DDIM sampling img/s of its EMA model (--ddim_steps steps, one untimed batch,
    then --gen_iters // 10 at least one timed), under the precision of `settings`."""
    autocast = setup_precision(settings["precision"], device)
    training = argparse.Namespace(**config, seed=0, lr=2e-4, ema_decay=None, grad_clip=1.0, warmup=0)
    step = build_diffusion_step(training, device, autocast)
    label = f"{model_label(config)}, {config['size']}, batch {batch}"
    real = torch.randn(batch, 3, config["size"], config["size"], device=device).clamp(-1, 1)
    for iteration in tqdm(range(args.warmup), desc=f"{label} warm-up", leave=False):
        step(iteration, real)
    synchronize(device)
    start = time.perf_counter()
    for iteration in tqdm(range(args.iters), desc=f"{label} train", leave=False):
        step(iteration, real)
    synchronize(device)
    train_seconds = time.perf_counter() - start

    sampler = SamplerSettings("ddim", args.ddim_steps, 0.0)
    generator = step.ema
    batches = max(1, args.gen_iters // 10)
    with torch.no_grad(), autocast():
        noise = generator.make_noise(batch)
        generator([torch.zeros(batch, 0)], noise=noise, sampler=sampler)
        synchronize(device)
        start = time.perf_counter()
        for _ in tqdm(range(batches), desc=f"{label} DDIM-{args.ddim_steps}", leave=False):
            generator([torch.zeros(batch, 0)], noise=noise, sampler=sampler)
        synchronize(device)
    sample_seconds = time.perf_counter() - start
    return {
        "model": config,
        "batch": batch,
        "settings": settings["precision"],
        "parameters": sum(p.numel() for p in generator.parameters()),
        "train_img_s": batch * args.iters / train_seconds,
        "sample_img_s": batch * batches / sample_seconds,
        "ddim_steps": args.ddim_steps,
    }


def diffusion_table(rows):
    """Markdown table of measure_diffusion's figures."""
    lines = [
        "| workload | UNet | parameters | settings | train img/s | DDIM sampling img/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["model"]
        attention = m["attention_resolutions"] or "-"
        unet = f"{m['channels']} x {m['channel_mult']}, {m['num_res_blocks']} blocks, attention {attention}"
        lines.append(
            f"| {model_label(m)}, {m['size']} px, batch {r['batch']} | {unet} | {r['parameters'] / 1e6:.2f}M | "
            f"{r['settings']} | {r['train_img_s']:.1f} | {r['sample_img_s']:.2f} ({r['ddim_steps']} steps) |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    device = choose_device(args.device)
    if args.diffusion:
        # the UNet has no modulated convolutions or custom ops: precision is its one speed setting
        settings = {**ORIGINAL, "precision": args.precision or default_precision(device)}
        rows = [
            measure_diffusion(config, batch, settings, args, device)
            for config, batch in diffusion_workloads(args, device)
        ]
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"\n{name}, torch {torch.__version__}, {settings['precision']}")
        print(diffusion_table(rows))
        if args.json:
            with open(args.json, "w") as file:
                json.dump({"device": name, "settings": vars(args), "results": rows}, file, indent=2)
        return
    if args.report:
        gpu_report(args, device)
        return
    settings = {
        "precision": args.precision or default_precision(device),
        "modconv": args.modconv,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "impl": args.impl,
    }
    results = [measure(config, batch, settings, args, device) for config, batch in workloads(args, device)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n{name}, torch {torch.__version__}, {describe(settings)}")
    print(table(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"device": name, "settings": vars(args), "results": results}, file, indent=2)


if __name__ == "__main__":
    main()
