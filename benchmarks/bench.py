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
3. measures the training of mspe 256 with the original settings (tf32, grouped modulated
   convolution, CUDA ops), tries each --fast candidate on it and keeps the fastest (default:
   FAST_CANDIDATES below; `--fast`, repeated, replaces them, e.g. `--fast
   bf16,plain,channels_last,compile`), then measures none 256 with the original settings and
   the fastest candidate, and mspe 256 with the fastest;
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

This file is the command line; what it times (the workloads, the original code's figures, the
training step, FLOP counting, the timing loops, the tables) is benchmarks/measure.py's, and the
GPU report benchmarks/gpu_report.py's.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import gpu_report  # noqa: E402
from benchmarks.measure import (  # noqa: E402
    ORIGINAL,
    describe,
    diffusion_table,
    diffusion_workloads,
    measure,
    measure_diffusion,
    table,
    workloads,
)
from checkpoint import add_model_arguments, explicit_flags  # noqa: E402
from diffusion import DIFFUSION_ARCH  # noqa: E402
from model import MODCONVS  # noqa: E402
from utils.device import PRECISIONS, choose_device, default_precision  # noqa: E402
from utils.flags import HelpFormatter, add_device_argument, add_speed_arguments, flag_list, positive_int  # noqa: E402

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


# what only the GAN workloads read: the UNet has no modulated convolutions or custom ops
GAN_ONLY_SETTINGS = {"modconv", "channels_last", "compile", "impl", "fast", "report", "budget_s"}


def build_parser():
    """bench.py's command line: the workload (the model flags, --batch), the speed settings, the
    timing and the GPU report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    add_model_arguments(parser, "model of the workloads (--size, --batch or --position: a single one)")
    # the paper's model: a single workload measures MS-PE unless --position says otherwise
    parser.set_defaults(position="mspe")
    parser.add_argument("--batch", type=positive_int, default=16, help="batch of the single workload")
    add_device_argument(parser)
    add_speed_arguments(parser)
    parser.add_argument(
        "--impl", default="auto", choices=["auto", "ref"], help="custom CUDA ops (auto) or the PyTorch references"
    )
    parser.add_argument("--warmup", type=int, default=16, help="untimed iterations first")
    parser.add_argument(
        "--iters", type=positive_int, default=32, help="timed training iterations (rounded up to a multiple of 16)"
    )
    parser.add_argument("--gen_iters", type=positive_int, default=20, help="timed generation batches")
    parser.add_argument(
        "--peak_tflops",
        type=float,
        default=790.0,
        help="the rate MFU divides by, for every precision: 790, what bf16 matrix products reached on an H100 and "
        "an H200 (their datasheets' dense bf16: 989)",
    )
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
    parser.add_argument("--ddim_steps", type=positive_int, default=50, help="--diffusion: DDIM steps of each sample")
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
    if args.warmup < 0:
        parser.error(f"--warmup must be 0 or more, not {args.warmup}")
    args.fast = args.fast or [fast_settings(text) for text in FAST_CANDIDATES]
    args.explicit = sorted(explicit_flags(parser, argv))
    if args.arch == DIFFUSION_ARCH and not args.diffusion:
        parser.error("--arch ddpm is timed by --diffusion (the UNet's training step and sampler): give --diffusion")
    if args.diffusion:
        if "arch" in args.explicit and args.arch != DIFFUSION_ARCH:
            parser.error(f"--diffusion times the diffusion model, not --arch {args.arch}: leave out one of them")
        unread = GAN_ONLY_SETTINGS & set(args.explicit)
        if unread:
            parser.error(f"--diffusion times the UNet, which does not read {flag_list(unread)}: leave them out")
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


def main(argv=None):
    args = parse_args(argv)
    device = choose_device(args.device)
    if args.diffusion:
        # precision is the UNet's one speed setting (GAN_ONLY_SETTINGS)
        settings = {**ORIGINAL, "precision": args.precision or default_precision(device)}
        rows = [
            measure_diffusion(config, batch, settings, args, device)
            for config, batch in diffusion_workloads(args, device)
        ]
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"\n{name}, torch {torch.__version__}, {settings['precision']}")
        print(diffusion_table(rows))
        write_json(args, name, rows)
        return
    if args.report:
        gpu_report.run(args, device)
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
    write_json(args, name, results)


def write_json(args, device_name, rows):
    """--json: the device, the command line's settings and the rows measured."""
    if not args.json:
        return
    if os.path.dirname(args.json):
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as file:
        json.dump({"device": device_name, "settings": vars(args), "results": rows}, file, indent=2)


if __name__ == "__main__":
    main()
