"""Training and generation throughput of train.py's iteration, with FLOPs and MFU.

    python bench.py                                   # the four reference workloads (on CUDA)
    python bench.py --size 256 --batch 16 --position mspe --precision bf16 --modconv plain
    python bench.py --size 32 --batch 4 --channel_max 32 --device cpu   # a CPU smoke run

One training iteration is exactly train.py's `TrainingStep` with train.py's defaults: a
discriminator step, lazy R1 every 16 iterations, a generator step (no path-length
regularisation, as the original trains) and the EMA update, on random "real" images already on
the device (data loading is not timed). Timed iterations are a multiple of 16 so that R1 is
counted at its real rate.
FLOPs are counted once per configuration with torch.utils.flop_counter on the `meta` device
(nothing runs), averaging an R1 iteration and a plain one; MFU divides the achieved rate by
--peak_tflops. Figures, never asserts: compare runs taken on the same machine.
"""

import argparse
import contextlib
import json
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry
from tqdm import tqdm

import op._plugin
import train
from device import choose_device, default_precision, setup_precision
from model import MODCONVS, POSITIONS

# The original code (its CUDA kernels, PyTorch 2.11, TF32) on one H100 80GB, config-f.
REFERENCE = {
    ("none", 256, 16): {"train": 65.9, "s_per_kimg": 15.2, "peak_gib": 10.1, "generate": 623},
    ("mspe", 256, 16): {"train": 58.2, "s_per_kimg": 17.2, "peak_gib": 11.1, "generate": 385},
    ("none", 1024, 4): {"train": 15.0, "s_per_kimg": 66.6, "peak_gib": 10.2, "generate": 173},
    ("mspe", 1024, 4): {"train": 9.5, "s_per_kimg": 105.6, "peak_gib": 10.7, "generate": 45},
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--size", type=int, help="one workload of this size instead of the four reference ones")
    parser.add_argument("--batch", type=int, help="batch of the single workload")
    parser.add_argument("--position", default="mspe", choices=POSITIONS, help="position of the single workload")
    parser.add_argument("--channel_multiplier", type=int, default=2)
    parser.add_argument("--channel_max", type=int, default=512)
    parser.add_argument("--precision", default=None, choices=["fp32", "tf32", "bf16"], help="default: tf32 on CUDA, fp32 on CPU")
    parser.add_argument("--modconv", default="grouped", choices=MODCONVS,
                        help="modulated convolution: grouped per-sample weights (the original) or a plain convolution of scaled activations")
    parser.add_argument("--impl", default="auto", choices=["auto", "ref"], help="custom CUDA ops (auto) or the PyTorch references")
    parser.add_argument("--channels_last", action="store_true", help="channels-last memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator and discriminator")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--warmup", type=int, default=16, help="untimed iterations first")
    parser.add_argument("--iters", type=int, default=32, help="timed training iterations (rounded up to a multiple of 16)")
    parser.add_argument("--gen_iters", type=int, default=20, help="timed generation batches")
    parser.add_argument("--peak_tflops", type=float, default=790.0, help="the device's dense bf16 matrix rate, for MFU")
    parser.add_argument("--json", help="also write the figures to this file")
    return parser.parse_args()


def workloads(args, device):
    if args.size is not None:
        return [(args.position, args.size, args.batch or 16)]
    if device.type != "cuda":
        print("no GPU: running a tiny CPU workload (pass --size/--batch/--channel_max to choose)")
        args.channel_max = min(args.channel_max, 32)
        return [(args.position, 32, args.batch or 4)]
    return list(REFERENCE)


def training_step(position, size, args, device, modconv, compile=False, autocast=contextlib.nullcontext):
    """train.py's TrainingStep, with train.py's default hyperparameters, for one workload."""
    config = {"size": size, "position": position, "channel_multiplier": args.channel_multiplier,
              "channel_max": args.channel_max}
    generator, discriminator, g_ema = train.build_models(config, device, modconv=modconv)
    if args.channels_last:
        train.use_channels_last(generator, discriminator, g_ema)
    settings = train.StepSettings()
    g_optim, d_optim = train.build_optimizers(generator, discriminator, settings)
    return train.TrainingStep(
        generator, discriminator, g_ema, g_optim, d_optim, settings, autocast=autocast, compile=compile
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


def count_flops(position, size, batch, args):
    """Average FLOPs of one training iteration (R1 at its lazy rate), counted on `meta`."""
    meta = torch.device("meta")
    # the grouped modulated convolution counts the same multiply-adds; plain is clearer
    step = training_step(position, size, args, meta, "plain")
    real = torch.empty(batch, 3, size, size, device=meta)
    counts = {}
    for iteration in (0, 1):  # iteration 0 runs R1, iteration 1 does not
        with FlopCounter() as counter:
            step(iteration, real)
        counts[iteration] = counter.total
    every = step.settings.d_reg_every
    return (counts[0] + (every - 1) * counts[1]) / every


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(position, size, batch, args, device, autocast):
    step = training_step(position, size, args, device, args.modconv, args.compile, autocast)
    real = torch.randn(batch, 3, size, size, device=device).clamp(-1, 1)
    if args.channels_last:
        real = real.contiguous(memory_format=torch.channels_last)
    every = step.settings.d_reg_every
    timed = -(-args.iters // every) * every

    for iteration in tqdm(range(args.warmup), desc=f"{position} {size} warm-up", leave=False):
        step(iteration, real)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for iteration in tqdm(range(timed), desc=f"{position} {size} train", leave=False):
        step(iteration, real)
    synchronize(device)
    train_seconds = time.perf_counter() - start
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")

    z = torch.randn(batch, step.settings.latent, device=device)
    with torch.no_grad(), autocast():
        for _ in range(3):
            step.g_ema([z])
        synchronize(device)
        start = time.perf_counter()
        for _ in tqdm(range(args.gen_iters), desc=f"{position} {size} generate", leave=False):
            step.g_ema([z])
        synchronize(device)
    generate_seconds = time.perf_counter() - start

    flops = count_flops(position, size, batch, args)
    train_images_per_s = batch * timed / train_seconds
    tflops = flops * timed / train_seconds / 1e12
    return {
        "position": position,
        "size": size,
        "batch": batch,
        "train_img_s": train_images_per_s,
        "s_per_kimg": 1000 / train_images_per_s,
        "peak_gib": peak_gib,
        "tflop_per_iter": flops / 1e12,
        "tflops": tflops,
        "mfu": tflops / args.peak_tflops,
        "generate_img_s": batch * args.gen_iters / generate_seconds,
    }


def table(results):
    lines = [
        "| workload | train img/s | s/kimg | peak GiB | TFLOP/iter | TFLOP/s | MFU | generation img/s | vs original (train, gen) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        reference = REFERENCE.get((r["position"], r["size"], r["batch"]))
        ratio = f"{r['train_img_s'] / reference['train']:.2f}x, {r['generate_img_s'] / reference['generate']:.2f}x" if reference else "-"
        lines.append(
            f"| {r['position']}, {r['size']}, batch {r['batch']} | {r['train_img_s']:.1f} | {r['s_per_kimg']:.1f} | "
            f"{r['peak_gib']:.1f} | {r['tflop_per_iter']:.3f} | {r['tflops']:.1f} | {100 * r['mfu']:.1f}% | "
            f"{r['generate_img_s']:.0f} | {ratio} |"
        )
    return "\n".join(lines)


def main():
    args = parse_args()
    device = choose_device(args.device)
    args.precision = args.precision or default_precision(device)
    autocast = setup_precision(args.precision, device)
    op._plugin.FORCE_REF = args.impl == "ref"
    results = [measure(*workload, args, device, autocast) for workload in workloads(args, device)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n{name}, torch {torch.__version__}, precision {args.precision}, modconv {args.modconv}, "
          f"ops {args.impl}, channels_last {args.channels_last}, compile {args.compile}")
    print(table(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"device": name, "settings": vars(args), "results": results}, file, indent=2)


if __name__ == "__main__":
    main()
