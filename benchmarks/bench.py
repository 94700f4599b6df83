"""Training and generation throughput of train.py's iteration, with FLOPs and MFU.

    python benchmarks/bench.py                        # the four reference workloads (on CUDA)
    python benchmarks/bench.py --size 256 --batch 16 --position mspe --precision bf16 --modconv plain
    python benchmarks/bench.py --size 32 --batch 4 --channel_max 32 --device cpu   # a CPU smoke run
    python benchmarks/bench.py --report bench_report  # the GPU report: what a GPU session checks, below

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
--size, --batch and --position do not apply to it, the others do. It does, in order, and writes
report.json and report.md (tables ready for the README, with ratios to the original code) into
OUT_DIR:
1. builds the custom ops and says which implementation each op runs (CUDA kernel or reference);
2. runs every CUDA test (`python -m pytest -m cuda tests`: the ops' kernels against their
   references, forward, first and second derivatives; StyleGAN3's filtered_lrelu; fp32 training
   on the GPU against the CPU in each layout the speed settings use, tests/test_cuda_parity.py)
   and records their counts and the failed ones with their messages; if they do not pass,
   everything after runs the PyTorch references, and report.md says so;
3. tries each --fast candidate on mspe 256 and keeps the fastest (default: FAST_CANDIDATES
   below; `--fast`, repeated, replaces them, e.g. `--fast bf16,plain,channels_last,compile`);
4. measures the four reference workloads with the original settings (tf32, grouped modulated
   convolution, CUDA ops) and with the fastest candidate, plus generation;
5. profiles a few iterations of mspe 256 with the fastest candidate (torch.profiler: the top
   operators by device time, profile.txt).
A setting that fails (out of memory, a kernel or compiler error) is recorded with its error
and the report goes on. report.json is saved after every step and every measurement: rerun the
same command after an interruption and an unfinished report continues where it stopped, trying
failed settings again (a finished one starts over).
Without CUDA it says so and does what it can with tiny workloads (32 px, 32 channels).
"""

import argparse
import contextlib
import json
import os
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
from model import MODCONVS  # noqa: E402
from stylegan3 import ARCHS as STYLEGAN3_ARCHS  # noqa: E402
from training import gan  # noqa: E402
from utils.device import PRECISIONS, choose_device, default_precision, setup_precision  # noqa: E402
from utils.flags import add_device_argument, add_speed_arguments  # noqa: E402


def stylegan2_model(position, size):
    """The model configuration of a reference workload: config-f (MODEL_DEFAULTS) with `position`."""
    return model_config({"position": position, "size": size})


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


def training_step(config, device, settings, autocast=contextlib.nullcontext):
    """train.py's GANStep, with its default hyperparameters, for the model configuration `config`,
    initialised on the CPU (the same weights on every device), then moved to `device`; `settings`
    has modconv, channels_last and compile."""
    config = model_config(config)
    try:
        models = gan.build_models(config, "cpu", modconv=settings["modconv"])
    except ValueError as error:  # a configuration the models cannot take, e.g. a position for stylegan3-t
        raise SystemExit(
            f"cannot build {describe_model(config)}: {error}. Give model flags it accepts (bench's workloads "
            "are MS-PE unless --position says otherwise: stylegan3-t and -r need --position none)"
        ) from None
    generator, discriminator, g_ema = (module.to(device) for module in models)
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


def measure(config, batch, settings, args, device):
    """Training and generation figures of one workload (a model configuration and a batch) under
    one settings dict."""
    config = model_config(config)
    label = workload_label(config, batch)
    with chosen_ops(settings):
        step, real = timing_step(config, batch, settings, device)
        every = step.settings.d_reg_every
        timed = -(-args.iters // every) * every

        for iteration in tqdm(range(args.warmup), desc=f"{label} warm-up", leave=False):
            step(iteration, real)
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for iteration in tqdm(range(timed), desc=f"{label} train", leave=False):
            step(iteration, real)
        synchronize(device)
        train_seconds = time.perf_counter() - start
        peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")

        # generation is g_ema's inference forward alone: compiled, it is a graph of its own
        generate = torch.compile(step.g_ema) if settings["compile"] else step.g_ema
        z = torch.randn(batch, step.settings.latent, device=device)
        with torch.no_grad(), step.autocast():
            for _ in range(3):
                generate([z])
            synchronize(device)
            start = time.perf_counter()
            for _ in tqdm(range(args.gen_iters), desc=f"{label} generate", leave=False):
                generate([z])
            synchronize(device)
        generate_seconds = time.perf_counter() - start

    flops = count_flops(config, batch)
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
        "generate_img_s": batch * args.gen_iters / generate_seconds,
    }


def table(results):
    """Markdown table of measure() results, with ratios to the original code where it measured
    the same workload."""
    lines = [
        "| workload | settings | train img/s | s/kimg | peak GiB | TFLOP/iter | TFLOP/s | MFU | generation img/s "
        "| vs original (train, gen) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        workload = workload_label(r["model"], r["batch"])
        if "error" in r:
            lines.append(f"| {workload} | {r['settings']} | failed: {r['error']} |" + " - |" * 7)
            continue
        reference = reference_figures(r["model"], r["batch"])
        ratio = (
            f"{r['train_img_s'] / reference['train']:.2f}x, {r['generate_img_s'] / reference['generate']:.2f}x"
            if reference
            else "-"
        )
        lines.append(
            f"| {workload} | {r['settings']} | {r['train_img_s']:.1f} | "
            f"{r['s_per_kimg']:.1f} | {r['peak_gib']:.1f} | {r['tflop_per_iter']:.3f} | {r['tflops']:.1f} | "
            f"{100 * r['mfu']:.1f}% | {r['generate_img_s']:.0f} | {ratio} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the GPU report (--report)


def run_cuda_tests(tests="tests"):
    """Run every CUDA test (`python -m pytest -m cuda tests` from the repository root; `tests`:
    another folder of tests). Returns the counts ('passed', 'failed', 'skipped', 'error'),
    pytest's exit code ('returncode'), its summary line, {id: first line of the message} of the
    tests that failed or errored ('failed_tests': the parity test's message carries its figures)
    and the end of its output."""
    # -vv: the short summary's messages whole, not cut at the terminal's width
    command = [sys.executable, "-m", "pytest", "-vv", "-rfEs", "-m", "cuda", tests]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    output = result.stdout.strip()
    summary = output.splitlines()[-1].strip("= ") if output else result.stderr[-500:]
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
        "returncode": result.returncode,
        "summary": summary,
        "failed_tests": failed_tests,
        "output": result.stdout[-4000:],
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
    """The GPU report's results, saved to OUT_DIR/report.json after every step and measurement.
    An unfinished report of the same device and torch version found there is continued: its
    steps and measurements are kept and only the missing ones run (failed measurements run again)."""

    def __init__(self, out, device_name):
        self.path = os.path.join(out, "report.json")
        self.results = {}
        if os.path.exists(self.path):
            with open(self.path) as file:
                saved = json.load(file)
            same_machine = (saved.get("device"), saved.get("torch")) == (device_name, torch.__version__)
            if not saved.get("finished") and same_machine:
                saved["measurements"] = [figures for figures in saved.get("measurements", []) if "error" not in figures]
                print(f"continuing the unfinished report in {out} ({len(saved['measurements'])} measurements kept)")
                self.results = saved
        self.results.update(device=device_name, torch=torch.__version__, finished=False)
        self.results.setdefault("measurements", [])

    def save(self):
        with open(self.path, "w") as file:
            json.dump(self.results, file, indent=2, default=str)

    def step(self, key, compute):
        """results[key], computed (and saved) unless an earlier call did."""
        if key not in self.results:
            self.results[key] = compute()
            self.save()
        return self.results[key]

    def measured(self, workload, settings, args, device):
        """measure()'s figures of one workload, (model configuration, batch), under one settings
        dict, measured once. A setting that fails (out of memory, a kernel or compiler error) is
        recorded with its error and the report goes on: one bad candidate must not cost the others."""
        config, batch = workload
        for figures in self.results["measurements"]:
            if (figures["model"], figures["batch"], figures["settings"]) == (config, batch, describe(settings)):
                return figures
        try:
            figures = measure(config, batch, settings, args, device)
        except Exception as error:
            message = (str(error).strip().splitlines() or [""])[0][:200].replace("|", "/")
            figures = {
                "model": config,
                "batch": batch,
                "settings": describe(settings),
                "error": f"{type(error).__name__}: {message}",
            }
            print(f"  {workload_label(config, batch)}, {describe(settings)}: failed, {figures['error']}")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        self.results["measurements"].append(figures)
        self.save()
        return figures


def gpu_report(args, device):
    """--report: the five steps of the module docstring; returns the GPU report's dict."""
    os.makedirs(args.report, exist_ok=True)
    cuda = device.type == "cuda"
    report_file = GPUReportFile(args.report, torch.cuda.get_device_name(device) if cuda else "CPU")
    results = report_file.results
    if not cuda:
        print(
            "no CUDA on this machine: the ops run their references, the CUDA tests skip, and the workloads "
            "shrink to tiny CPU ones (32 px, 32 channels)"
        )
    loads = reference_workloads(args) if cuda else tiny_workloads(args)
    # where candidates are tried and profiled: the first MS-PE workload, mspe 256 (tiny: mspe 32)
    trial_load = next((config, batch) for config, batch in loads if config["position"] == "mspe")
    original = {**ORIGINAL, "precision": default_precision(device)}
    start = time.perf_counter()

    def heading(text):
        print(f"{text} ({time.perf_counter() - start:.0f} s into the report)")

    heading("1/5 custom ops")
    results["ops"] = op.implementations(torch.zeros(1, device=device))
    for op_name, implementation in results["ops"].items():
        print(f"  {op_name}: {implementation}")

    heading("2/5 CUDA tests (python -m pytest -m cuda tests)")
    tests = report_file.step("cuda_tests", run_cuda_tests)
    print(f"  {tests['summary']}")
    for test_id, message in tests["failed_tests"].items():
        print(f"  failed: {test_id}: {message}")
    if tests["returncode"] != 0:  # never time kernels that compute something else
        original = {**original, "impl": "ref"}
        args.fast = [{**settings, "impl": "ref"} for settings in args.fast]
        results["ops_note"] = (
            f"The CUDA tests did not pass (pytest exit {tests['returncode']}): every measurement "
            "below runs the PyTorch references (reference ops)."
        )
        print(f"  {results['ops_note']}")

    heading(f"3/5 {len(args.fast)} candidate settings on {workload_label(*trial_load)}")
    trials = [report_file.measured(trial_load, settings, args, device) for settings in args.fast]
    working = [(trial["train_img_s"], index) for index, trial in enumerate(trials) if "error" not in trial]
    fastest = args.fast[max(working)[1]] if working else None
    results["trial_workload"] = {"model": trial_load[0], "batch": trial_load[1]}
    results["fastest"] = describe(fastest) if fastest else "none, every candidate failed"
    print(table(trials))
    print(f"  fastest: {results['fastest']}")

    heading("4/5 workloads, original settings and the fastest")
    compared = (original, fastest) if fastest else (original,)
    results["workloads"] = [
        report_file.measured(workload, settings, args, device) for workload in loads for settings in compared
    ]
    report_file.save()
    print(table(results["workloads"]))

    heading("5/5 profile")
    profile(*trial_load, fastest or original, device, os.path.join(args.report, "profile.txt"))

    results["finished"] = True
    report_file.save()
    with open(os.path.join(args.report, "report.md"), "w") as file:
        file.write(gpu_report_markdown(results))
    heading(f"wrote {args.report}/report.md, report.json, profile.txt")
    return results


def gpu_report_markdown(results):
    """report.md: the device, the ops, what the CUDA tests gave and the tables, README-ready."""
    tests = results["cuda_tests"]
    lines = [
        f"# benchmarks/bench.py --report on {results['device']} (torch {results['torch']})",
        "",
        "## Custom ops",
        "",
        *[f"- `{name}`: {implementation}" for name, implementation in results["ops"].items()],
        "",
        "## CUDA tests",
        "",
        "`python -m pytest -m cuda tests`: the custom ops' CUDA kernels against their PyTorch references (forward, "
        "first and second derivatives), StyleGAN3's filtered_lrelu against its reference, and fp32 training on the "
        "GPU against the CPU in each layout (tests/test_cuda_parity.py: losses within 1e-3 relative, weights within "
        "Adam's bound of 2 lr per iteration; a failure's message gives the figures).",
        "",
        f"Result: {tests['summary']}",
        "",
        *[f"- failed: `{test_id}`: {message}" for test_id, message in tests["failed_tests"].items()],
        *([""] if tests["failed_tests"] else []),
        *([results["ops_note"], ""] if "ops_note" in results else []),
        "## Throughput: the original settings and the fastest candidate",
        "",
        table(results["workloads"]),
        "",
    ]
    succeeded = [r for r in results["workloads"] if "error" not in r]
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
    trial = results["trial_workload"]
    tried = [r for r in results["measurements"] if (r["model"], r["batch"]) == (trial["model"], trial["batch"])]
    lines += [f"## Every setting tried (fastest: {results['fastest']})", "", table(tried), ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    device = choose_device(args.device)
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
