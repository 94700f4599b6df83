"""Throughput of prepare_data.py: images/s when committing one LMDB transaction per image against
batched transactions, on a folder of JPEG faces.

    python benchmarks/bench_prepare.py --n_images 300 --size 256 --n_worker 2

Prints the end-to-end rate of prepare() (decode, resize, encode in workers; write in the main
process) and, to isolate the cost of transactions, the rate of writing already encoded images.
"""

import argparse
import os
import sys
import tempfile
import time
from functools import partial

import lmdb
import numpy as np
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from prepare_data import COMMIT_EVERY, INITIAL_MAP_SIZE, prepare, write_batch  # noqa: E402
from utils.synthetic import render_face  # noqa: E402

DISTINCT_FACES = 30


def make_source_folder(folder, n_images, size):
    """Write `n_images` JPEG faces with sensor-like noise, so that decoding and encoding cost about
    what they cost on photographs. Faces repeat every DISTINCT_FACES files; the noise does not."""
    rng = np.random.default_rng(0)
    faces = [np.asarray(render_face(index, size), dtype=np.float32) for index in range(min(n_images, DISTINCT_FACES))]
    for index in tqdm(range(n_images), desc="source images", unit="img"):
        face = faces[index % len(faces)]
        noisy = np.clip(face + rng.normal(0, 6, face.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(os.path.join(folder, f"{index:05d}.jpg"), quality=95)


def prepare_seconds(source, work_dir, size, n_worker, commit_every):
    """Seconds that prepare() takes to write `source` to a new LMDB."""
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        return prepare(
            os.path.join(tmp, "lmdb"), [size], source, n_worker=n_worker, commit_every=commit_every, verbose=False
        ).seconds


def write_seconds(items, work_dir, commit_every):
    """Seconds that writing the encoded (key, value) `items` to a new LMDB takes, as prepare() does."""
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        with lmdb.open(tmp, map_size=INITIAL_MAP_SIZE, readahead=False, meminit=False) as env:
            start = time.perf_counter()
            for begin in range(0, len(items), commit_every):
                write_batch(env, items[begin : begin + commit_every])

            return time.perf_counter() - start


def report(title, n_images, settings, measure, repeats):
    """Print the best images/s of each (name, commit_every) setting; the settings take turns, so
    that a change in machine load during the run affects them alike."""
    best = {name: float("inf") for name, _ in settings}
    for _ in range(repeats):
        for name, commit_every in settings:
            best[name] = min(best[name], measure(commit_every))

    print(title)
    for name, _ in settings:
        print(f"  {name:>30}: {n_images / best[name]:8.1f} images/s")


def build_parser():
    parser = argparse.ArgumentParser(description="Measure prepare_data.py throughput.")
    parser.add_argument("--n_images", type=int, default=300, help="number of source images")
    parser.add_argument("--source_size", type=int, default=512, help="side of the source JPEG files")
    parser.add_argument("--size", type=int, default=256, help="resolution written to the LMDB")
    parser.add_argument("--n_worker", type=int, default=2, help="worker processes")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting; the best is reported")
    parser.add_argument("--work_dir", type=str, default=None, help="disk to write on (default: the system temp folder)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.work_dir) as work_dir:
        source = os.path.join(work_dir, "source")
        os.makedirs(source)
        make_source_folder(source, args.n_images, args.source_size)
        settings = [
            ("one transaction per image", 1),
            ("batches of 64", 64),
            (f"batches of {COMMIT_EVERY} (default)", COMMIT_EVERY),
        ]

        print(
            f"{args.n_images} JPEG images of {args.source_size}px -> LMDB at {args.size}px, "
            f"{args.n_worker} workers, {os.cpu_count()} CPUs, best of {args.repeats}"
        )
        report(
            "prepare(), end to end:",
            args.n_images,
            settings,
            partial(prepare_seconds, source, work_dir, args.size, args.n_worker),
            args.repeats,
        )

        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            prepare(os.path.join(tmp, "lmdb"), [args.size], source, n_worker=args.n_worker, verbose=False)
            with lmdb.open(os.path.join(tmp, "lmdb"), readonly=True, lock=False) as env, env.begin() as txn:
                items = [(key, value) for key, value in txn.cursor() if key not in (b"length", b"sizes")]

        report(
            "writing the encoded images only:",
            len(items),
            settings,
            partial(write_seconds, items, work_dir),
            args.repeats,
        )


if __name__ == "__main__":
    main()
