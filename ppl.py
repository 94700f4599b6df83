"""Perceptual path length of a generator checkpoint (evaluation/ppl.py), with rosinality's
command line:

    python ppl.py CKPT [--space w --batch 64 --n_sample 5000 --eps 1e-4 --crop --sampling end]

prints `ppl: VALUE` as rosinality's ppl.py and writes metrics/<checkpoint folder>/ppl.json (or
--out). `python metrics.py ppl --ckpt CKPT ...` computes the same for several checkpoints.
"""

import argparse
import os
import sys

from checkpoint import add_model_arguments, explicit_flags, load_generator, model_label
from evaluation.common import results_folder, write_json
from evaluation.perceptual import build_lpips
from evaluation.ppl import SAMPLINGS, SPACES, perceptual_path_length
from utils.device import choose_device
from utils.flags import add_device_argument, add_lpips_weights_argument, positive_int


def add_ppl_arguments(parser):
    """The options of the measurement, shared with `metrics.py ppl`."""
    parser.add_argument("--space", choices=SPACES, default="w", help="space that PPL calculated with")
    parser.add_argument(
        "--eps",
        type=float,
        default=1e-4,
        help="the step between the two latents of a pair (PPL: LPIPS distance / eps^2)",
    )
    parser.add_argument("--crop", action="store_true", help="apply center crop to the images")
    parser.add_argument("--sampling", default="end", choices=SAMPLINGS, help="set endpoint sampling method")
    add_lpips_weights_argument(parser)


def build_parser():
    parser = argparse.ArgumentParser(description="Perceptual Path Length calculator", allow_abbrev=False)
    add_ppl_arguments(parser)
    parser.add_argument("--batch", type=positive_int, default=64, help="batch size for the models")
    parser.add_argument("--n_sample", type=positive_int, default=5000, help="number of the samples for calculating PPL")
    parser.add_argument("--seed", type=int, default=0, help="seed of latents, t and noise")
    add_device_argument(parser)
    parser.add_argument("--out", default=None, help="output folder (default metrics/<checkpoint folder>)")
    add_model_arguments(parser, "model (read from the checkpoint; a flag given here must agree with it)")
    parser.add_argument("ckpt", metavar="CHECKPOINT", help="path to the model checkpoints")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.eps <= 0:
        raise SystemExit(f"--eps must be positive, not {args.eps}")
    device = choose_device(args.device)
    generator, args = load_generator(args.ckpt, device, args, explicit_flags(parser, argv), gan_only="PPL")
    percept = build_lpips(args.lpips_weights, device)
    score = perceptual_path_length(
        generator,
        percept,
        args.n_sample,
        args.batch,
        args.space,
        args.eps,
        args.crop,
        args.sampling,
        args.seed,
        progress=True,
    )
    print("ppl:", score)
    folder = args.out or results_folder(args.ckpt)
    write_json(
        os.path.join(folder, "ppl.json"),
        "ppl",
        args,
        [{"checkpoint": args.ckpt, "position": model_label(args), "space": args.space, "ppl": score}],
    )


if __name__ == "__main__":
    main()
