"""FID of a generator checkpoint, with rosinality's command line:

    python fid.py --inception inception_X.pkl [--truncation 1 --truncation_mean 4096 --batch 64
        --n_sample 50000 --size 256] CKPT

prints `fid: VALUE` (evaluation/fid.py computes it). The real statistics come from
calc_inception.py (.pkl) or `metrics.py inception` (.npz). The Inception weights are downloaded
once (evaluation/inception.py) unless --inception_weights names a local file.
"""

import argparse
import sys

from checkpoint import add_model_arguments, explicit_flags, load_generator
from evaluation.fid import cached_real_statistics, generator_fid
from evaluation.inception import load_inception
from utils.device import choose_device
from utils.flags import add_device_argument, add_inception_weights_argument, add_truncation_arguments, positive_int


def build_parser():
    parser = argparse.ArgumentParser(description="Calculate FID scores", allow_abbrev=False)
    add_truncation_arguments(parser)
    parser.add_argument("--batch", type=positive_int, default=64, help="batch size for the generator")
    parser.add_argument("--n_sample", type=int, default=50000, help="number of the samples for calculating FID")
    parser.add_argument(
        "--inception",
        type=str,
        required=True,
        help="path to precomputed inception embedding (calc_inception.py's .pkl, or an .npz)",
    )
    add_inception_weights_argument(parser, "--inception_weights")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents and noise")
    add_device_argument(parser)
    add_model_arguments(parser, "model (read from the checkpoint; a flag given here must agree with it)")
    parser.add_argument("ckpt", metavar="CHECKPOINT", help="path to generator checkpoint")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n_sample < 2:
        raise SystemExit(f"--n_sample must be at least 2 (for a covariance), not {args.n_sample}")
    try:
        device = choose_device(args.device)
        generator, args = load_generator(args.ckpt, device, args, explicit_flags(parser, argv))
        real_mean, real_cov, real_weights = cached_real_statistics(args.inception, generator.size, args.ckpt)
        inception = load_inception(args.inception_weights, device)
        score = generator_fid(
            generator,
            inception,
            real_mean,
            real_cov,
            args.n_sample,
            args.batch,
            args.seed,
            args.truncation,
            args.truncation_mean,
            real_weights=real_weights,
        )
        print(f"extracted {args.n_sample} features")
        print(f"fid: {score}")
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(str(error)) from None


if __name__ == "__main__":
    main()
