"""Which small-scale training recipe learns faces fastest on a CPU? Sample quality per CPU minute.

    python benchmarks/recipe_study.py --round 1   # ten configurations, 480 CPU seconds each
    python benchmarks/recipe_study.py --round 2   # the best combined against the old demo, 1200 each

Trains every configuration of CONFIGS (an MS-PE model at 32 px on the built-in synthetic faces
with circular translation, the paper's recipe) with train.py for the same CPU time, one thread
each (CPU seconds rather than wall seconds, so runs that share the machine compare fairly), then
measures the EMA generator: SWD x1e3 at shift 0 against real images translated as in training
(lower is better) and EQ-T, and renders a sample grid. Writes <out>/results.md, results.csv and
grids.png (one row of samples per configuration). Runs live in runs/recipe/<config>/; a finished
run is not trained again.
"""

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import ROOT  # noqa: E402
from checkpoint import checkpoint_iteration, experiment_dir, load_generator, numbered_checkpoints  # noqa: E402
from evaluation.common import generated_batches, open_real_images  # noqa: E402
from evaluation.equivariance import translation_equivariance  # noqa: E402
from evaluation.spatial_bias import quality_at_shift  # noqa: E402
from prepare_data import prepare  # noqa: E402
from utils.images import labelled_rows, make_grid, to_pil  # noqa: E402

BASE = "--position mspe --translate 1.0 --size 32 --workers 0".split()
# name -> train.py flags on top of BASE; "demo" is what `make demo` trained before this study
CONFIGS = {
    name: flags.split()
    for name, flags in {
        "demo": "--channel_max 32 --batch 8",
        "r1_heuristic": "--channel_max 32 --batch 8 --r1 0.0256",
        "small_mapping": "--channel_max 32 --batch 8 --r1 0.0256 --latent 128 --n_mlp 4",
        "lr_0.005": "--channel_max 32 --batch 8 --r1 0.0256 --latent 128 --n_mlp 4 --lr 0.005",
        "channels_64": "--channel_max 64 --batch 8 --r1 0.0256 --latent 128 --n_mlp 4",
        "batch_16": "--channel_max 32 --batch 16 --r1 0.0128 --latent 128 --n_mlp 4",
        "batch_4": "--channel_max 32 --batch 4 --r1 0.0512 --latent 128 --n_mlp 4",
        "no_mixing": "--channel_max 32 --batch 8 --r1 0.0256 --latent 128 --n_mlp 4 --mixing 0",
        "translate_0.25": "--channel_max 32 --batch 8 --r1 0.0256 --latent 128 --n_mlp 4 --translate 0.25",
        "data_1000": "--channel_max 32 --batch 8 --r1 0.0256 --latent 128 --n_mlp 4",
        # the second round combines what helped in the first, at a longer budget beside the demo's recipe
        "demo_long": "--channel_max 32 --batch 8",
        "combo": "--channel_max 32 --batch 4 --r1 0.0512 --latent 128 --n_mlp 4 --lr 0.005 --mixing 0",
    }.items()
}
# round -> (configurations, CPU seconds each, output folder)
ROUNDS = {
    "1": (list(CONFIGS)[:10], 480, os.path.join(ROOT, "benchmarks", "recipe_study")),
    "2": (["demo_long", "combo"], 1200, os.path.join(ROOT, "benchmarks", "recipe_study", "round2")),
}
# dataset sizes other than 4000 (the demo's)
DATA = {"data_1000": 1000}


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far, from /proc."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dataset(images):
    path = os.path.join(ROOT, "data", f"recipe_faces_{images}")
    if not os.path.exists(os.path.join(path, "data.mdb")):
        prepare(path, [32], n_synthetic=images, seed=0, n_worker=2)
    return path


def start(name, flags, budget, images):
    """Launch train.py for `name` (or None when its run already exists)."""
    folder = os.path.join(ROOT, "runs", "recipe", name)
    if os.path.exists(os.path.join(folder, "done")):
        return None
    os.makedirs(folder, exist_ok=True)
    # argparse keeps the last value of a repeated flag: a configuration's flags override BASE
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--name", name, "--path", dataset(images), *BASE, *flags]
    command += "--iter 1000000 --save_every 1000000 --sample_every 1000000 --log_every 50 --n_sample 16".split()
    log = open(os.path.join(folder, "train.log"), "w")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env)
    return SimpleNamespace(name=name, process=process, folder=folder, budget=budget, log=log)


def finished(run):
    """Stop `run` with SIGTERM (train.py saves and exits) once its CPU budget is spent."""
    if run.process.poll() is not None:
        return True
    if cpu_seconds(run.process.pid) >= run.budget:
        run.process.send_signal(signal.SIGTERM)
        run.process.wait()
        run.log.close()
        open(os.path.join(run.folder, "done"), "w").close()
        return True
    return False


@torch.no_grad()
def evaluate(name, images, n=500):
    """(figures, a [8, 3, 32, 32] batch of samples) of the newest checkpoint of run `name`."""
    newest = numbered_checkpoints(experiment_dir(name, root=os.path.join(ROOT, "runs", "recipe", name)))[0]
    generator, _ = load_generator(newest)
    real, indices = open_real_images(dataset(images), 32, n)
    quality = quality_at_shift(generator, real, indices, (0.0, 0.0), batch=50, patches=64)
    eqt = translation_equivariance(generator, n_sample=200, batch=50)
    samples = next(generated_batches(generator, 8, 8, seed=0))
    return {"config": name, "iterations": checkpoint_iteration(newest), "swd": quality["swd"], **eqt}, samples


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--round", choices=list(ROUNDS), default="1", help="the study's configurations, budget and folder"
    )
    parser.add_argument("--budget", type=float, help="CPU seconds of training per configuration (default: the round's)")
    parser.add_argument("--parallel", type=int, default=2, help="configurations trained at once")
    parser.add_argument("--configs", help="comma-separated names from CONFIGS (default: the round's)")
    parser.add_argument("--out", help="output folder (default: the round's)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    names, budget, out = ROUNDS[args.round]
    names = args.configs.split(",") if args.configs else names
    args.budget, args.out = args.budget or budget, args.out or out
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        parser.error(f"--configs: unknown {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")

    pending, running = list(names), []
    while pending or running:
        while pending and len(running) < args.parallel:
            name = pending.pop(0)
            run = start(name, CONFIGS[name], args.budget, DATA.get(name, 4000))
            if run is not None:
                running.append(run)
                print(f"training {name}", flush=True)
        running = [run for run in running if not finished(run)]
        time.sleep(2)

    rows, grids = [], []
    for name in names:
        figures, samples = evaluate(name, DATA.get(name, 4000))
        rows.append(figures)
        grids.append(make_grid(samples, nrow=8))
        print(figures, flush=True)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(args.out, "results.md"), "w") as file:
        file.write(f"{args.budget:.0f} CPU seconds of training per configuration (one thread)\n\n")
        file.write("| config | flags | iterations | SWD x1e3 at shift 0 | EQ-T int (dB) | EQ-T frac (dB) |\n")
        file.write("|---|---|---|---|---|---|\n")
        for row in rows:
            flags = " ".join(CONFIGS[row["config"]])
            file.write(
                f"| {row['config']} | `{flags}` | {row['iterations']} | {row['swd']:.2f} | "
                f"{row['eqt_int']:.2f} | {row['eqt_frac']:.2f} |\n"
            )
    labelled_rows([to_pil(grid) for grid in grids], names).save(os.path.join(args.out, "grids.png"))
    print(f"wrote {args.out}/results.md, results.csv, grids.png")


if __name__ == "__main__":
    main()
