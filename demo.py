"""`make demo`: the paper's recipe end to end on the built-in dataset.

1. render aligned synthetic faces into an LMDB (prepare_data.py --synthetic),
2. train an MS-PE generator on them with circular translation (train.py --translate 1.0),
3. render a sample grid and a shift animation from it (generate.py).

On a CPU this is a tiny model trained for a few minutes; with a GPU, a larger one for longer.
Every step is a command of this repository, printed before it runs, so it can be rerun by hand.
A finished step is not repeated (delete data/demo_faces or checkpoint/demo to start over).
"""

import argparse
import os
import subprocess
import sys

import torch

from checkpoint import checkpoint_file, checkpoint_path, experiment_dir

NAME = "demo"
DATA = os.path.join("data", "demo_faces")


def settings():
    """(images, size, iterations, model flags) for this machine."""
    if torch.cuda.is_available():
        # the calibration run of the metrics: 64x64, channels capped at 128, batch 32, ~96k images
        return 20000, 64, 3000, "--size 64 --channel_max 128 --batch 32".split()
    # the recipe that learned fastest per CPU minute in benchmarks/recipe_study (round 2: "combo")
    flags = "--size 32 --channel_max 32 --batch 4 --latent 128 --n_mlp 4 --lr 0.005 --mixing 0 --r1 auto --workers 1"
    return 4000, 32, 4000, flags.split()


def run(*arguments):
    print("\n$ python " + " ".join(arguments), flush=True)
    subprocess.run([sys.executable, *arguments], check=True)


def main(argv=None):
    # no options: --help says what runs, and a mistyped flag stops before ten minutes of training
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    images, size, iterations, model = settings()
    if not os.path.exists(os.path.join(DATA, "data.mdb")):
        run("prepare_data.py", "--synthetic", str(images), "--out", DATA, "--size", str(size), "--n_worker", "2")

    if not os.path.exists(checkpoint_path(NAME, iterations)):
        # the paper's recipe: MS-PE, trained on circularly translated images
        paper = ["--name", NAME, "--path", DATA, "--position", "mspe", "--translate", "1.0"]
        schedule = f"--iter {iterations} --n_sample 16 --sample_every 500 --save_every 1000 --ckpt latest"
        run("train.py", *paper, *model, *schedule.split())

    final = checkpoint_file(iterations)
    run("generate.py", "--name", NAME, "--ckpt", final, "--mode", "grid", "--n_sample", "16")
    shift = f"--mode shift --n_sample 4 --radius {size // 4} --pics 16"
    run("generate.py", "--name", NAME, "--ckpt", final, *shift.split())

    print(
        f"\ndone: training samples in sample/{NAME}/, checkpoints in {experiment_dir(NAME)}/, "
        f"the grid and shift GIFs in generate/{NAME}/"
    )


if __name__ == "__main__":
    main()
