"""What benchmarks/bench.py measures: the workloads (the reference ones, with the original code's
figures on an H100, and the tiny CPU stand-ins), train.py's training step built for one, FLOPs
counted on the `meta` device, training and generation timed (against a deadline when the GPU
report has a budget), the diffusion model's training and sampling, and the markdown tables.
bench.py's docstring says what each figure means."""

import argparse
import contextlib
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry
from tqdm import tqdm

import op
import op._plugin
from checkpoint import MODEL_DEFAULTS, describe_model, model_config, model_label
from diffusion import DIFFUSION_DEFAULTS, SamplerSettings
from stylegan3 import ARCHS as STYLEGAN3_ARCHS
from training import gan
from training.diffusion import build_diffusion_step
from utils.device import setup_precision


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
# the diffusion model (bench.py --diffusion)


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
