"""The paper's comparison in one command: is MS-PE trained on translated data spatially unbiased?

    python evidence.py --preset cpu            # 25-95 minutes on a 2-core CPU, 32 px
    python evidence.py --preset gpu            # 64 px, the original code's recipe, for one GPU
    python evidence.py --preset cpu --models none,mspe --seeds 0 --iter 500 --out evidence/small   # scaled down
    python evidence.py --preset cpu --models ddpm-none,ddpm-mspe --out evidence/cpu-ddpm   # diffusion models

Trains every model of --models on the built-in aligned synthetic faces with random circular
translation (the paper's recipe), with the same image budget and seeds for each, by running
train.py (a run already trained is reused, an interrupted one resumes); then measures every run:

- EQ-T, integer and fractional: circular shifts, and for models with a positional input also
  shifts of an infinite plane (evaluation/equivariance.py);
- SWD x1e3 of renders shifted by s against real images translated by s, for s across the image
  (evaluation/spatial_bias.py); SWD at shift 0 is the quality figure;
- the border band (evaluation/spatial_bias.py): high-frequency energy along the borders of the
  renders at shift 0 against the inside, beside the same figure of randomly rolled real images;
- PSNR of shifted inversions: projector.py on ref_face/ images rolled around a circle (GANs);
- a sample grid, a shift animation and a sample on a 2x-wide canvas.

The diffusion models (ddpm-none, ddpm-mspe: train.py --arch ddpm) train and sample with their
own recipe, DIFFUSION_RECIPES[preset], instead of the preset's GAN flags (flags given to
evidence.py still win), and are measured and shown, and draw their training grids, with the
recipe's sampler; their EQ-T always takes deterministic DDIM of the same step count
(evaluation/equivariance.py).

Figures are reported per model as mean +- standard deviation over --seeds. Writes to --out
(default evidence/<preset>/): report.md, runs.csv (one row per run), summary.csv (per model),
eqt.png, swd_vs_shift.png, samples.png (one row per model), shift_<model>.gif and
canvas_<model>.png. Measurements
are cached per run in --out/runs/, so an interrupted evidence run continues where it stopped;
an --out whose runs.csv reports other runs (models, seeds, settings, iterations) is refused.
"""

import argparse
import csv
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from tqdm import tqdm

import generate
import projector
from checkpoint import (
    checkpoint_iteration,
    checkpoint_path,
    experiment_dir,
    generator_state,
    load_checkpoint,
    load_generator,
    numbered_checkpoints,
)
from diffusion import SAMPLERS, DiffusionGenerator, SamplerSettings, use_sampler
from evaluation.common import generated_batches, open_real_images
from evaluation.equivariance import translation_equivariance
from evaluation.spatial_bias import LINE_COLOURS, quality_at_shift
from model import check_size
from prepare_data import prepare
from training.gan import r1_heuristic
from utils.device import choose_device
from utils.flags import HelpFormatter, add_device_argument, positive_int
from utils.images import labelled_rows, save_grid, save_grid_gif

ROOT = os.path.dirname(os.path.abspath(__file__))
REF_FACES = [os.path.join(ROOT, "ref_face", f"{index:05d}.png") for index in range(4)]

# Budgets. cpu: what fits about an hour on the 2-core development machine (two runs at once), with
# the recipe that learned fastest in benchmarks/recipe_study (batch 4, R1 by the resolution, lr
# 0.005, no style mixing, small mapping network); gpu: 64 px with the original code's recipe (R1 10,
# lr 0.002, style mixing 0.9, 8 mapping layers), the setting of the README's calibration figures
# from the original code (EQ-T 18.3 dB none, 23.7 dB mspe), sized for one H100.
PRESETS = {
    "cpu": {
        "size": 32,
        "images": 4000,
        "iter": 6000,
        "batch": 4,
        "channel_max": 32,
        "latent": 128,
        "n_mlp": 4,
        "lr": 0.005,
        "mixing": 0.0,
        "r1": "auto",
        "n": 500,
        "step": 200,
        "seeds": "0,1",
        "models": "none,sspe,mspe",
    },
    "gpu": {
        "size": 64,
        "images": 20000,
        "iter": 3000,
        "batch": 32,
        "channel_max": 128,
        "latent": 512,
        "n_mlp": 8,
        "lr": 0.002,
        "mixing": 0.9,
        "r1": "10",
        "n": 2000,
        "step": 500,
        "seeds": "0,1",
        "models": "none,sspe,mspe",
    },
}
# train.py's flags of each model, and the preset's training flags it leaves to train.py because
# its architecture has a recipe of its own (the alias-free GAN's learning rates, R1 and mapping)
MODELS = {
    "none": (["--position", "none"], ()),
    "sspe": (["--position", "sspe"], ()),
    "mspe": (["--position", "mspe"], ()),
    "swagan": (["--arch", "swagan"], ()),
    "stylegan3-t": (["--arch", "stylegan3-t"], ("lr", "mixing", "r1", "n_mlp")),
    "ddpm-none": (["--arch", "ddpm", "--position", "none"], ()),
    "ddpm-mspe": (["--arch", "ddpm", "--position", "mspe"], ()),
}
# The diffusion models' recipe per preset, one entry to change after a recipe study: train.py's
# flags of their runs (in place of the preset's GAN flags; size and the dataset stay the
# preset's), `n` samples per metric, and the `sampler` (ddim, deterministic, or ddpm, ancestral
# with beta-tilde) and its `steps` that they are measured and shown with. An evidence.py flag
# given on the command line (--iter, --batch, --lr, --n, --sampler, --steps) overrides its entry.
# cpu: the calibration's UNet (width 32, multipliers 1,2,2, one block a level, no attention:
# 1.06M parameters here, where the decoder has a block more a level and the middle two blocks
# and attention, as Ho et al.'s) with the learning rate, batch and dropout of the first study in
# evidence/cpu-ddpm/recipe.md (lr 1e-3 and no dropout learn faster than Ho et al.'s 2e-4 and 0.1
# at this budget) and the schedule and sampler of its second (cosine betas sampled by DDPM score
# best; deterministic DDIM draws a short-trained model's grainy colour fields), 48k images per
# run, 100 samples of 50 steps per metric to fit the 2-core machine; gpu: a first guess, Ho et
# al.'s settings with deterministic DDIM for a longer-trained model, not yet timed.
DIFFUSION_RECIPES = {
    "cpu": {
        "iter": 1500,
        "batch": 32,
        "lr": 1e-3,
        "channels": 32,
        "channel_mult": "1,2,2",
        "num_res_blocks": 1,
        "attention_resolutions": "",
        "dropout": 0.0,
        "schedule": "cosine",
        "n": 100,
        "sampler": "ddpm",
        "steps": 50,
    },
    "gpu": {
        "iter": 20000,
        "batch": 64,
        "lr": 2e-4,
        "channels": 64,
        "channel_mult": "1,2,2,2",
        "num_res_blocks": 2,
        "attention_resolutions": "16",
        "dropout": 0.1,
        "schedule": "linear",
        "n": 1000,
        "sampler": "ddim",
        "steps": 50,
    },
}
# the recipe entries that set how a diffusion model is measured, not trained
DIFFUSION_MEASURING = ("n", "sampler", "steps")
# the flags that scale a preset: name -> (type, help)
SCALING = {
    "models": (str, "comma-separated, from " + ", ".join(MODELS)),
    "seeds": (str, "comma-separated training seeds"),
    "iter": (positive_int, "training iterations of every run"),
    "batch": (positive_int, "training batch"),
    "size": (int, "image size"),
    "channel_max": (positive_int, "cap on every layer's channels"),
    "latent": (positive_int, "dimension of z and w"),
    "n_mlp": (positive_int, "layers of the mapping network"),
    "lr": (float, "learning rate"),
    "mixing": (float, "probability of style mixing"),
    "r1": (str, "R1 weight, or auto (train.py --r1)"),
    "images": (positive_int, "synthetic faces in the dataset"),
    "n": (positive_int, "latents and images per metric"),
    "step": (positive_int, "optimisation steps of each inversion"),
    "sampler": (str, "the diffusion models' sampler, ddim (deterministic) or ddpm (default: their recipe's)"),
    "steps": (positive_int, "sampler steps of the diffusion models' samples (default: their recipe's)"),
}
SHIFTS = (0.0, 0.125, 0.25, 0.375, 0.5)  # fractions of the image size, horizontal
# training flags taken from the preset as they are
TRAINING_FLAGS = ("size", "batch", "channel_max", "latent", "n_mlp", "lr", "mixing", "r1", "iter")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--preset", choices=list(PRESETS), default="cpu", help="budget; the flags below scale it")
    for flag, (kind, text) in SCALING.items():
        parser.add_argument(f"--{flag}", type=kind, help=f"{text} (default: the preset's)")
    add_device_argument(parser)
    parser.add_argument(
        "--parallel", type=int, help="runs trained at once (default: one per CPU core on the CPU, 1 on a GPU)"
    )
    parser.add_argument("--out", help="report folder (default evidence/<preset>)")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    # the scaling flags given on the command line: they override the diffusion recipe too
    args.given = {flag for flag in SCALING if getattr(args, flag) is not None}
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.models = [model.strip() for model in args.models.split(",")]
    unknown = [model for model in args.models if model not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    try:
        args.seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers such as 0,1, not {args.seeds!r}")
    # a run named twice would train twice at once in one folder and count twice in the mean
    for flag, values in (("models", args.models), ("seeds", args.seeds)):
        if len(set(values)) < len(values):
            parser.error(f"--{flag} names {', '.join(map(str, values))}: each at most once")
    try:
        check_size(args.size)
    except ValueError as error:
        parser.error(f"--size: {error}")
    if args.sampler is not None and args.sampler not in SAMPLERS:
        parser.error(f"--sampler takes one of {', '.join(SAMPLERS)}, not {args.sampler!r}")
    if args.parallel is not None and args.parallel < 1:
        parser.error(f"--parallel is the number of runs trained at once, at least 1, not {args.parallel}")
    args.out = args.out or os.path.join("evidence", args.preset)
    return args


def is_diffusion(model):
    return model.startswith("ddpm-")


def diffusion_recipe(args):
    """The diffusion models' DIFFUSION_RECIPES entry, with the scaling flags given explicitly."""
    recipe = dict(DIFFUSION_RECIPES[args.preset])
    recipe.update({flag: getattr(args, flag) for flag in recipe if flag in args.given})
    return recipe


def training_settings(args, model):
    """{train.py flag: value} of a model's runs: the preset's training flags less those the
    architecture's own recipe sets, or for a diffusion model its recipe (and the preset's size)."""
    if is_diffusion(model):
        recipe = diffusion_recipe(args)
        return {"size": args.size, **{key: value for key, value in recipe.items() if key not in DIFFUSION_MEASURING}}
    recipe_owned = MODELS[model][1]
    return {flag: getattr(args, flag) for flag in TRAINING_FLAGS if flag not in recipe_owned}


def run_iterations(args, model):
    return training_settings(args, model)["iter"]


def settings_run_name(args, model, seed):
    """The experiment name of a model, seed and training setting except --iter, so that a larger
    --iter continues the run and any other change starts new ones."""
    if is_diffusion(model):
        settings = training_settings(args, model)
        setting = [args.images, *(f"{key}={value}" for key, value in settings.items() if key != "iter")]
    else:
        setting = [args.images, *(getattr(args, flag) for flag in TRAINING_FLAGS if flag != "iter")]
    digest = hashlib.sha1(repr(setting).encode()).hexdigest()[:6]
    return f"evidence-{args.size}px-{model}-s{seed}-{digest}"


def run_name(args, model, seed):
    """The experiment name of a run: settings_run_name's, unless that run was trained past --iter
    without keeping its <iter>.pt: it is not cut short, and the shorter run is one of its own,
    named with -to<iter> (one per such --iter)."""
    name = settings_run_name(args, model, seed)
    trained = numbered_checkpoints(experiment_dir(name))
    iterations = run_iterations(args, model)
    kept = os.path.exists(checkpoint_path(name, iterations))
    if trained and checkpoint_iteration(trained[0]) > iterations and not kept:
        return f"{name}-to{iterations}"
    return name


def measuring_settings(args, model):
    """(samples per metric, the sampler) a model is measured with: the preset's --n for the GANs,
    the recipe's n and sampler for a diffusion model (None: not one; DDIM's eta is 0)."""
    if not is_diffusion(model):
        return args.n, None
    recipe = diffusion_recipe(args)
    return recipe["n"], SamplerSettings(recipe["sampler"], recipe["steps"], 0.0)


def load_run(args, model, seed, device):
    """The generator of a run's final checkpoint, sampling as it is measured."""
    generator, _ = load_generator(final_checkpoint(args, model, seed), device)
    return use_sampler(generator, measuring_settings(args, model)[1])


def dataset_path(args):
    path = os.path.join("data", f"evidence_faces_{args.size}px_{args.images}")
    if not os.path.exists(os.path.join(path, "data.mdb")):
        prepare(path, [args.size], n_synthetic=args.images, seed=0, n_worker=min(4, os.cpu_count() or 1))
    return path


def final_checkpoint(args, model, seed):
    return checkpoint_path(run_name(args, model, seed), run_iterations(args, model))


def train(args, model, seed, data, device, threads=None, log_path=None):
    """train.py for one run; resumes an interrupted one. threads caps its CPU threads; with
    log_path its output is appended to that file instead of going to the terminal."""
    model_flags = MODELS[model][0]
    settings = training_settings(args, model)
    training_flags = [f"--{flag}={value}" for flag, value in settings.items()]
    every = max(1, settings["iter"] // 4)
    workers = 4 if device.type == "cuda" else 1
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--name", run_name(args, model, seed), "--path", data]
    command += [*model_flags, "--translate", "1.0", "--seed", str(seed), *training_flags, "--device", args.device]
    sampler = measuring_settings(args, model)[1]
    if sampler is not None:  # the run's sample grids drawn as it is measured
        command += ["--sampler", sampler.sampler, "--steps", str(sampler.steps)]
    command += (
        f"--ckpt latest --save_every {every} --sample_every {every} --n_sample 16 --keep 2 --workers {workers}".split()
    )
    environment = None if threads is None else dict(os.environ, OMP_NUM_THREADS=str(threads))
    if log_path is None:
        finished = subprocess.run(command, env=environment)
        where = "its output is above"
    else:
        with open(log_path, "a") as log:
            finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
        where = f"it ended with: {last_line(log_path)}\n(its output is in {log_path})"
    if finished.returncode != 0:
        raise SystemExit(f"train.py for {model} seed {seed} failed (exit {finished.returncode}); {where}")


def last_line(path):
    """The last line a program wrote to the log at `path`, the last of its progress bar's
    redrawings, which is where train.py's error message or a traceback's exception is."""
    with open(path, errors="replace") as file:
        lines = [line for line in file.read().replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def train_side_by_side(args, runs, data, device, progress, timesheet):
    """Trains the runs, --parallel at a time. Small models use a CPU core badly, so on the CPU
    several single-thread runs at once train faster than one run on every core; each shares the
    cores equally and writes its output to --out/runs/<model>-s<seed>.log."""
    pending = [run for run in runs if not os.path.exists(final_checkpoint(args, *run))]
    progress.update(len(runs) - len(pending))
    parallel = max(1, min(args.parallel, len(pending)))
    threads = max(1, (os.cpu_count() or 1) // parallel) if device.type == "cpu" else None

    def one(run):
        model, seed = run
        job = f"train {model} seed {seed}"
        if parallel == 1:
            progress.set_description(f"evidence: {job}")
        start = time.perf_counter()
        log_path = os.path.join(args.out, "runs", f"{model}-s{seed}.log") if parallel > 1 else None
        train(args, model, seed, data, device, threads, log_path)
        return job, time.perf_counter() - start

    if parallel > 1:
        progress.set_description(f"evidence: training {parallel} runs at once (output in {args.out}/runs/*.log)")
    with ThreadPoolExecutor(parallel) as pool:
        for future in as_completed([pool.submit(one, run) for run in pending]):
            timesheet.add(*future.result())
            progress.update()


class Timesheet:
    """Seconds spent on each job, per machine and kind of job, and in all (wall time), summed over
    every call of evidence.py and saved after every job to --out/runs/seconds.json, so an
    interrupted run reports its full cost, and runs trained on one machine (a GPU lent for a
    short while) and measured on another say so. With resume=False the saved file is not read:
    this call starts the count."""

    def __init__(self, out, machine, resume=True):
        self.path = os.path.join(out, "runs", "seconds.json")
        self.machine = machine
        self.jobs, self.machines, self.wall_before = {}, {}, 0.0
        if resume and os.path.exists(self.path):
            with open(self.path) as file:
                saved = json.load(file)
            self.jobs, self.wall_before = saved["jobs"], saved["wall"]
            self.machines = saved.get("machines", {})  # older files: every job on this machine
        self.start = time.perf_counter()

    def wall(self):
        return self.wall_before + time.perf_counter() - self.start

    def add(self, job, spent):
        self.jobs[job] = self.jobs.get(job, 0.0) + spent
        kinds = self.machines.setdefault(self.machine, {})
        kind = job.split()[0]
        kinds[kind] = kinds.get(kind, 0.0) + spent
        with open(self.path, "w") as file:
            json.dump({"wall": self.wall(), "jobs": self.jobs, "machines": self.machines}, file, indent=2)

    def where(self):
        """'on <machine>', or, when several machines did the jobs, what each did and for how long."""
        if len(self.machines) <= 1:
            return f"on {next(iter(self.machines), self.machine)}"
        return (
            "("
            + "; ".join(
                f"{' + '.join(kinds)} on {machine}: {sum(kinds.values()) / 60:.1f} min"
                for machine, kinds in self.machines.items()
            )
            + ")"
        )


def weights_digest(path):
    """sha1 of the g_ema weights of the checkpoint at `path`: what a cached measurement was made of.
    A run trained again under its name (after a change to train.py) has other weights; a g_ema-only
    copy of the same run, brought back from another machine, has the same."""
    state = generator_state(load_checkpoint(path))
    digest = hashlib.sha1()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def measure(args, model, seed, data, device):
    """Every figure of one run (cached in --out/runs/<model>-s<seed>.json, for these weights and
    settings) and its samples."""
    cache = os.path.join(args.out, "runs", f"{model}-s{seed}.json")
    checkpoint = final_checkpoint(args, model, seed)
    weights = weights_digest(checkpoint)
    n, sampler = measuring_settings(args, model)
    kind, steps = (None, None) if sampler is None else (sampler.sampler, sampler.steps)
    if os.path.exists(cache):
        with open(cache) as file:
            figures = json.load(file)
        same = figures["checkpoint"] == checkpoint and figures.get("weights") == weights
        same = same and figures["n"] == n and figures["step"] == args.step
        if same and figures.get("sampler") == kind and figures.get("sampler_steps") == steps:
            return figures
    generator = load_run(args, model, seed, device)
    diffusion = isinstance(generator, DiffusionGenerator)
    figures = {"model": model, "seed": seed, "checkpoint": checkpoint, "weights": weights, "n": n, "step": args.step}
    figures.update(sampler=kind, sampler_steps=steps)

    # circular shifts where the generator wraps around, an infinite plane where it has a
    # positional input (PE models, the alias-free Fourier features)
    figures.update(eqt_int=None, eqt_frac=None, eqt_plane_int=None, eqt_plane_frac=None)
    # (a diffusion model's noise moves circularly only)
    if generator.circular_shifts:
        circular = translation_equivariance(generator, n, 25, seed=0)
        figures.update(eqt_int=circular["eqt_int"], eqt_frac=circular["eqt_frac"])
    if generator.position != "none" and not diffusion:
        plane = translation_equivariance(generator, n, 25, circular=False, seed=0)
        figures.update(eqt_plane_int=plane["eqt_int"], eqt_plane_frac=plane["eqt_frac"])

    real, indices = open_real_images(data, args.size, n)
    for fraction in SHIFTS:
        quality = quality_at_shift(generator, real, indices, (0.0, fraction * args.size), batch=50, patches=64)
        figures[f"swd_{fraction:g}"] = quality["swd"]
        if fraction == 0:
            figures.update(border=quality["border"], real_border=quality["real_border"])
    with torch.no_grad():
        samples = next(generated_batches(generator, 8, 8, seed=0)).cpu()
    save_grid(samples, os.path.join(args.out, "runs", f"{model}-s{seed}.png"), nrow=8)

    # projector.py inverts style-based generators only
    figures["inversion_psnr"] = None if diffusion else inversion_psnr(args, generator)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache, "w") as file:
        json.dump(figures, file, indent=2)
    return figures


def inversion_psnr(args, generator):
    """Mean PSNR of W+ projections of ref_face/ images shifted around a circle of a quarter of the
    image size (pixel MSE loss: LPIPS needs VGG weights from the network)."""
    generator.requires_grad_(False)
    images = projector.open_images(REF_FACES)
    targets = torch.stack([projector.to_target(image, generator.size) for image in images]).to(generator.device)
    settings = projector.ProjectionSettings(loss="mse", w_plus=True, step=args.step, n_mean_latent=2000)
    shifts = projector.circle_shifts(4, args.size // 4)
    scores = [projection["psnr"] for projection in projector.project_shifted(generator, targets, shifts, settings)]
    return torch.cat(scores).mean().item()


def shift_gif(args, model, device):
    """shift_<model>.gif: generate.py's shift animation (its grid of 8 samples) of the first seed's
    run; canvas_<model>.png: generate.py's canvas mode, 4 samples on a canvas twice as wide."""
    generator = load_run(args, model, args.seeds[0], device)
    renderer = generate.renderer_for(generator)
    frames = generate.shift_frames(renderer, range(8), pics=24, radius=args.size // 4)
    save_grid_gif(frames, os.path.join(args.out, f"shift_{model}.gif"), generate.FRAME_MS)
    wide = generate.canvas_images(renderer, range(4), (args.size, 2 * args.size))
    save_grid(wide, os.path.join(args.out, f"canvas_{model}.png"), nrow=2)


# ---------------------------------------------------------------------------------------------
# the report

FIGURES = {
    "swd_0": "SWD x1e3 at shift 0 (quality)",
    "eqt_int": "EQ-T int, circular (dB)",
    "eqt_frac": "EQ-T frac, circular (dB)",
    "eqt_plane_int": "EQ-T int, plane (dB)",
    "eqt_plane_frac": "EQ-T frac, plane (dB)",
    "swd_0.5": "SWD x1e3 at shift 0.5",
    "border": "border band (real images: about 1)",
    "inversion_psnr": "shifted inversion PSNR (dB)",
}


def summarise(rows, models):
    """{model: {figure: (mean, standard deviation over seeds) or None}}."""
    summary = {}
    for model in models:
        runs = [row for row in rows if row["model"] == model]
        summary[model] = {}
        for key in [*FIGURES, "real_border", *(f"swd_{fraction:g}" for fraction in SHIFTS)]:
            values = [row[key] for row in runs if row.get(key) is not None]
            spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            summary[model][key] = (float(np.mean(values)), spread) if values else None
    return summary


def real_border_reference(rows):
    """(mean, standard deviation) of the real images' border band over the measured runs."""
    values = [row["real_border"] for row in rows if row.get("real_border") is not None]
    return (float(np.mean(values)), float(np.std(values))) if values else None


def cell(value, spread=True):
    """A (mean, standard deviation) as a table cell; the mean alone when there is no spread to
    give (one seed)."""
    if value is None:
        return "-"
    return f"{value[0]:.2f} ± {value[1]:.2f}" if spread else f"{value[0]:.2f}"


def write_evidence_report(args, argv, rows, summary, timesheet):
    """runs.csv, summary.csv and report.md in --out."""
    out = args.out
    with open(os.path.join(out, "runs.csv"), "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(out, "summary.csv"), "w", newline="") as file:
        writer = csv.writer(file)
        keys = list(summary[args.models[0]])
        writer.writerow(["model", *(f"{key}_{stat}" for key in keys for stat in ("mean", "sd"))])
        for model, figures in summary.items():
            writer.writerow([model, *(value for key in keys for value in (figures[key] or ("", "")))])

    gans = [model for model in args.models if not is_diffusion(model)]
    setting = []
    if gans:
        r1_text = f"auto ({r1_heuristic(args.size, args.batch):g})" if args.r1 == "auto" else args.r1
        setting.append(
            f"{args.iter} iterations of batch {args.batch} per run, channels capped at {args.channel_max}, latent "
            f"{args.latent}, mapping depth {args.n_mlp}, R1 {r1_text}; {args.n} latents/images per metric."
        )
        setting += [
            f"{model} keeps its own recipe for {', '.join(MODELS[model][1])} (train.py prints it)."
            for model in gans
            if MODELS[model][1]
        ]
    if len(gans) < len(args.models):
        recipe = ", ".join(f"{key} {value}" for key, value in training_settings(args, "ddpm-none").items())
        n, sampler = measuring_settings(args, "ddpm-none")
        setting.append(
            f"The diffusion models train with {'their own' if gans else 'the'} recipe ({recipe}) and are measured "
            f"on {n} samples each of {sampler.describe()} (EQ-T: deterministic DDIM of as many steps); the border "
            f"band's reference, real images rolled at random, is {cell(real_border_reference(rows))}."
        )
    # one seed has no spread to show: "x ± 0.00" would claim one
    several_seeds = len(args.seeds) > 1
    spread_words = "Mean ± standard deviation over seeds." if several_seeds else "One seed: no spread is measured."
    lines = [
        f"# Evidence: {args.preset} preset",
        "",
        f"`{shlex.join(['python', 'evidence.py', *argv])}`: {args.size} px synthetic faces ({args.images} images), "
        f"random circular translation. {' '.join(setting)} Seeds {', '.join(map(str, args.seeds))}. {spread_words} "
        f"{timesheet.wall() / 60:.1f} minutes of wall time in all {timesheet.where()}, training "
        f"up to {args.parallel} runs at once.",
        "",
        "| model | " + " | ".join(FIGURES.values()) + " |",
        "|---" * (len(FIGURES) + 1) + "|",
        *[
            f"| {model} | " + " | ".join(cell(summary[model][key], several_seeds) for key in FIGURES) + " |"
            for model in args.models
        ],
        "",
        "Lower SWD is better; higher EQ-T and PSNR are better. SWD at shift s compares renders shifted by s "
        "(a fraction of the size) with real images translated by s; swd_vs_shift.png shows every s.",
        "",
        "![EQ-T](eqt.png) ![SWD against shift](swd_vs_shift.png)",
        "",
        "Samples (one row per model, seed 0 of the latents, the first training seed):",
        "",
        "![samples](samples.png)",
        "",
        " ".join(f"![{model}](shift_{model}.gif)" for model in args.models),
        "",
        f"On a canvas twice as wide ({args.size}x{2 * args.size}, generate.py --mode canvas):",
        "",
        " ".join(f"![{model} canvas](canvas_{model}.png)" for model in args.models),
        "",
    ]
    with open(os.path.join(out, "report.md"), "w") as file:
        file.write("\n".join(lines))


def machine(device):
    """What the report calls `device`: the GPU's name, or the CPU's core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"a {os.cpu_count()}-core CPU"


def draw_plots(args, summary):
    models = args.models
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axes = figure.subplots()
    keys = ["eqt_int", "eqt_frac", "eqt_plane_int", "eqt_plane_frac"]
    width = 0.8 / len(models)
    for index, model in enumerate(models):
        values = [summary[model][key] or (np.nan, 0.0) for key in keys]
        positions = np.arange(len(keys)) + (index - (len(models) - 1) / 2) * width
        axes.bar(
            positions,
            [v[0] for v in values],
            width,
            yerr=[v[1] for v in values],
            capsize=3,
            color=LINE_COLOURS[index % len(LINE_COLOURS)],
            label=model,
        )
    axes.set_xticks(np.arange(len(keys)), ["int", "frac", "int, plane", "frac, plane"])
    axes.set(ylabel="EQ-T (dB), higher is better", title="Translation equivariance")
    axes.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(args.out, "eqt.png"))

    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axes = figure.subplots()
    for index, model in enumerate(models):
        means = np.array([summary[model][f"swd_{fraction:g}"][0] for fraction in SHIFTS])
        spreads = np.array([summary[model][f"swd_{fraction:g}"][1] for fraction in SHIFTS])
        colour = LINE_COLOURS[index % len(LINE_COLOURS)]
        axes.plot(SHIFTS, means, marker="o", linewidth=2, color=colour, label=model)
        axes.fill_between(SHIFTS, means - spreads, means + spreads, color=colour, alpha=0.2)
    axes.set(
        xlabel="shift (fraction of image size)",
        ylabel="SWD x1e3, lower is better",
        title="Quality away from the centre",
    )
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(args.out, "swd_vs_shift.png"))


def save_samples(args):
    """samples.png: the first seed's sample grid of every model, one labelled row each."""
    grids = []
    for model in args.models:
        with Image.open(os.path.join(args.out, "runs", f"{model}-s{args.seeds[0]}.png")) as grid:
            grids.append(grid.convert("RGB"))
    labelled_rows(grids, args.models).save(os.path.join(args.out, "samples.png"))


def refuse_other_report(args, runs):
    """Refuse to write into an --out whose runs.csv reports other runs (other models, seeds,
    settings or iterations): the report would be replaced, the committed ones included."""
    path = os.path.join(args.out, "runs.csv")
    if not os.path.isfile(path):
        return
    with open(path, newline="") as file:
        reported = [row["checkpoint"] for row in csv.DictReader(file)]
    if not reported or set(reported) == {final_checkpoint(args, *run) for run in runs}:
        return
    longer = {
        checkpoint_path(settings_run_name(args, model, seed), run_iterations(args, model)) for model, seed in runs
    }
    if set(reported) == longer:
        raise SystemExit(
            f"{args.out} reports these runs at --iter, but they have trained on since without keeping those "
            f"checkpoints ({reported[0]} and {len(reported) - 1} more); this command would train them again as runs "
            f"of their own: remove {args.out} to replace its report, or give another --out"
        )
    raise SystemExit(
        f"{args.out} holds the report of other runs ({reported[0]} and {len(reported) - 1} more), which this "
        f"command would replace: give it another --out, or remove {args.out} to replace it"
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    runs = [(model, seed) for model in args.models for seed in args.seeds]
    refuse_other_report(args, runs)
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    device = choose_device(args.device)
    if args.parallel is None:
        args.parallel = 1 if device.type == "cuda" else os.cpu_count() or 1
    data = dataset_path(args)
    jobs = [("measure", run) for run in runs] + [("gif", (model, None)) for model in args.models]
    # the saved timesheet belongs to the runs it trained: when none of them has a checkpoint left
    # (a fresh clone beside the committed report, or runs to train again), it starts anew
    # (the longer run of a -to<iter> run counts: the timesheet may be that one's)
    names = {name(args, *run) for run in runs for name in (run_name, settings_run_name)}
    resumed = any(numbered_checkpoints(experiment_dir(name)) for name in names)
    timesheet = Timesheet(args.out, machine(device), resume=resumed)
    rows = []
    with tqdm(total=len(runs) + len(jobs), desc="evidence: training", unit="job", file=sys.stdout) as progress:
        train_side_by_side(args, runs, data, device, progress, timesheet)
        for kind, (model, seed) in jobs:
            job = f"{kind} {model}" + ("" if seed is None else f" seed {seed}")
            progress.set_description(f"evidence: {job}")
            start = time.perf_counter()
            if kind == "measure":
                rows.append(measure(args, model, seed, data, device))
            else:
                shift_gif(args, model, device)
            timesheet.add(job, time.perf_counter() - start)
            progress.update()
    summary = summarise(rows, args.models)
    save_samples(args)
    draw_plots(args, summary)
    write_evidence_report(args, argv, rows, summary, timesheet)
    with open(os.path.join(args.out, "report.md")) as file:
        print(file.read())
    print(f"wrote {args.out}/report.md, runs.csv, summary.csv, eqt.png, swd_vs_shift.png, samples.png, shift_*.gif")


if __name__ == "__main__":
    main()
