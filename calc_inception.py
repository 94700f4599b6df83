"""Inception statistics of real images, with rosinality's command line:

    python calc_inception.py [--size 256 --batch 64 --n_sample 50000 --flip] LMDB_PATH

writes inception_<lmdb name>.pkl ({"mean", "cov", "size", "path"}, as rosinality's script) from
the first --n_sample images of the LMDB (each flipped horizontally with probability 1/2 under
--flip), for `python fid.py --inception inception_<lmdb name>.pkl CKPT` and
`python metrics.py fid --real_stats ...`. The FID Inception weights are downloaded once
(inception.py) unless --inception_weights (or --inception) names a local file.

This project's earlier form, with --path instead of the positional LMDB,

    python calc_inception.py --inception WEIGHTS --path LMDB --size 256

is `python metrics.py inception ...` (metrics/inception_<lmdb>_<size>.npz by default).
"""

import argparse
import os
import sys

import torch
from torchvision import transforms

from dataset import MultiResolutionDataset
from utils.device import choose_device
from utils.flags import add_device_argument
from evaluation.fid import inception_statistics, save_statistics
from evaluation.inception import load_inception
from evaluation.common import batch_sizes, real_image_batches
from metrics import main as metrics_main


def build_parser():
    parser = argparse.ArgumentParser(description="Calculate Inception v3 features for datasets", allow_abbrev=False)
    parser.add_argument("--size", type=int, default=256, help="image sizes used for embedding calculation")
    parser.add_argument("--batch", default=64, type=int, help="batch size for inception networks")
    parser.add_argument("--n_sample", type=int, default=50000, help="number of samples used for embedding calculation")
    parser.add_argument("--flip", action="store_true", help="apply random flipping to real images")
    parser.add_argument("--inception_weights", "--inception", dest="inception_weights", default=None,
                        help="local Inception-v3 state dict (default: download the FID Inception once)")
    parser.add_argument("--out", default=None, help="output file (default inception_<lmdb name>.pkl)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --flip coin")
    add_device_argument(parser)
    parser.add_argument("path", metavar="PATH", nargs="?", help="path to datset lmdb file")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--path" in argv or any(arg.startswith("--path=") for arg in argv):
        return metrics_main(["inception", *argv])  # this project's form: the metrics command line
    args = build_parser().parse_args(argv)
    if args.path is None:
        raise SystemExit("give the LMDB of real images: python calc_inception.py [--size 256 ...] LMDB_PATH")
    torch.manual_seed(args.seed)
    transform = transforms.Compose([
        transforms.RandomHorizontalFlip(p=0.5 if args.flip else 0),
        transforms.ToTensor(),
        transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
    ])
    try:
        dataset = MultiResolutionDataset(args.path, transform, args.size)
        inception = load_inception(args.inception_weights, choose_device(args.device))
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(str(error)) from None
    indices = list(range(min(args.n_sample, len(dataset))))
    mean, cov = inception_statistics(
        inception, real_image_batches(dataset, indices, args.batch), len(batch_sizes(len(indices), args.batch)),
        desc="real", progress=True,
    )
    print(f"extracted {len(indices)} features")
    name = os.path.splitext(os.path.basename(os.path.normpath(args.path)))[0]
    out = args.out or f"inception_{name}.pkl"
    save_statistics(out, mean, cov, size=args.size, path=args.path)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
