"""Inception statistics of real images, with rosinality's command line:

    python calc_inception.py --size 256 --batch 64 --n_sample 50000 --flip LMDB_PATH

writes inception_<lmdb name>.pkl ({"mean", "cov", "size", "path", ...}, as rosinality's script)
of --n_sample images of the LMDB (all of them when it holds no more, else a random subset of
--seed, as every metric takes its real images; each flipped horizontally with probability 1/2
under --flip), for `python fid.py --inception inception_<lmdb name>.pkl CKPT` and
`python metrics.py fid --real_stats ...`. `metrics.py inception` makes the same statistics
(evaluation/fid.py's real_statistics) as an .npz. The FID Inception weights are downloaded once
(evaluation/inception.py) unless --inception_weights (or --inception) names a local file.

This project's earlier form, with --path instead of the positional LMDB,

    python calc_inception.py --inception WEIGHTS --path LMDB --size 256

is `python metrics.py inception ...` (metrics/inception_<lmdb>_<size>.npz by default).
"""

import argparse
import os
import sys

from evaluation.common import open_real_images
from evaluation.fid import real_statistics, save_statistics
from evaluation.inception import load_inception
from metrics import main as metrics_main
from utils.device import choose_device
from utils.flags import add_device_argument, add_inception_weights_argument


def build_parser():
    parser = argparse.ArgumentParser(description="Calculate Inception v3 features for datasets", allow_abbrev=False)
    parser.add_argument("--size", type=int, default=256, help="image sizes used for embedding calculation")
    parser.add_argument("--batch", default=64, type=int, help="batch size for inception networks")
    parser.add_argument("--n_sample", type=int, default=50000, help="number of samples used for embedding calculation")
    parser.add_argument("--flip", action="store_true", help="apply random flipping to real images")
    add_inception_weights_argument(parser, "--inception_weights", "--inception")
    parser.add_argument("--out", default=None, help="output file (default inception_<lmdb name>.pkl)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --flip coin")
    add_device_argument(parser)
    parser.add_argument("path", metavar="PATH", nargs="?", help="the LMDB of real images (prepare_data.py)")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--path" in argv or any(arg.startswith("--path=") for arg in argv):
        return metrics_main(["inception", *argv])  # this project's form: the metrics command line
    args = build_parser().parse_args(argv)
    if args.path is None:
        raise SystemExit("give the LMDB of real images: python calc_inception.py [--size 256 ...] LMDB_PATH")
    if args.n_sample < 2 or args.batch < 1:
        raise SystemExit(
            f"--n_sample must be at least 2 (for a covariance) and --batch at least 1, "
            f"not {args.n_sample} and {args.batch}"
        )
    try:
        real_images = open_real_images(args.path, args.size, args.n_sample, args.seed)
        inception = load_inception(args.inception_weights, choose_device(args.device))
        mean, cov, info = real_statistics(inception, real_images, args.batch, args.seed, args.flip)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(str(error)) from None
    print(f"extracted {info['n_sample']} features")
    name = os.path.splitext(os.path.basename(os.path.normpath(args.path)))[0]
    out = args.out or f"inception_{name}.pkl"
    save_statistics(out, mean, cov, **info)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
