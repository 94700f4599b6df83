"""Turn a folder of images, or the built-in synthetic faces, into the LMDB that train.py reads.

    python prepare_data.py --out LMDB_PATH --n_worker N_WORKER --size SIZE1,SIZE2,... DATASET_PATH
    python prepare_data.py --out LMDB_PATH --size 64 --synthetic 10000

The LMDB layout is that of rosinality/stylegan2-pytorch (dataset.py defines it): key
f"{size}-{index:05d}" holds image `index` at resolution `size` (JPEG, or PNG with --format png)
and key "length" holds the number of images as decimal text. Key "sizes" lists the resolutions
it holds, e.g. "64,128".

The dataset is built in a temporary folder next to --out and moved into place only once "length"
(written last) is committed, so a failed or interrupted run leaves no dataset that looks complete.
"""

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import namedtuple
from contextlib import contextmanager
from functools import partial
from io import BytesIO

import lmdb
from PIL import Image
from tqdm import tqdm

from dataset import image_key, summary_records
from model import check_size
from utils.images import load_rgb, resize_and_crop
from utils.synthetic import render_face

# torchvision ImageFolder's, which rosinality's prepare_data.py reads with
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
RESAMPLE = {"lanczos": Image.LANCZOS, "bilinear": Image.BILINEAR}
BACKGROUND = {"white": (255, 255, 255), "black": (0, 0, 0)}

# What Pillow raises for damaged, truncated or unsupported files.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

# The map grows by doubling whenever it fills, so the start only needs to be small.
INITIAL_MAP_SIZE = 64 * 1024**2
# A transaction is committed after this many images, or earlier once this many encoded bytes wait.
COMMIT_EVERY = 1000
MAX_PENDING_BYTES = 256 * 1024**2

PrepareSummary = namedtuple("PrepareSummary", ["length", "skipped", "sizes", "seconds"])


class PrepareError(Exception):
    """A problem with the input or the output that the user has to fix."""


def parse_sizes(text):
    """Parse "128,256" into the sorted list of distinct resolutions [128, 256]."""
    try:
        sizes = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--size takes comma-separated integers such as 128,256, not {text!r}"
        ) from None

    for size in sizes:
        # refused here, not after hours of writing: train.py could not read the LMDB at that size
        try:
            check_size(size)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{size} is not a size the models train at ({error})") from None

    return sizes


def find_images(root):
    """Image files under `root` at any depth, sorted by their path relative to `root`.

    Names starting with "." (hidden files and folders such as .ipynb_checkpoints) are left out.
    Linked folders are followed, as torchvision's ImageFolder (rosinality's reader) follows them,
    but not one that leads to a folder already walked (a link back up the tree). Also returns the
    sorted extensions of the other files, which are ignored.
    """
    if not os.path.isdir(root):
        raise PrepareError(f"DATASET_PATH {root} is not a folder; give the folder that holds your images")

    found, other_extensions, visited = [], set(), set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        visited.add(os.path.realpath(folder))
        # a link back up the tree would be walked forever
        subfolders[:] = [
            name
            for name in subfolders
            if not name.startswith(".") and os.path.realpath(os.path.join(folder, name)) not in visited
        ]
        for name in names:
            if name.startswith("."):
                continue
            extension = os.path.splitext(name)[1].lower()
            if extension in IMAGE_EXTENSIONS:
                found.append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
            else:
                other_extensions.add(extension or "(none)")

    return [os.path.join(root, relative) for relative in sorted(found)], sorted(other_extensions)


def encode(img, image_format="jpeg", quality=100):
    """Encode a PIL image as JPEG or PNG bytes."""
    buffer = BytesIO()
    if image_format == "jpeg":
        img.save(buffer, format="jpeg", quality=quality)
    else:
        img.save(buffer, format="png")

    return buffer.getvalue()


def encode_sizes(img, sizes, resample, image_format, quality):
    """Encode `img` once per resolution in `sizes`, resized and centre-cropped."""
    return [encode(resize_and_crop(img, size, resample), image_format, quality) for size in sizes]


def encode_file(path, sizes, resample, image_format, quality, background, upscale):
    """Worker: encode the image file at every size.

    Returns (list of encoded images, None), or (None, warning) for a file that cannot be decoded.
    """
    try:
        img = load_rgb(path, background)
    except DECODE_ERRORS as error:
        return None, f"skipping {path}: cannot decode it ({error})"

    if not upscale and min(img.size) < sizes[-1]:
        raise PrepareError(
            f"{path} is {img.size[0]}x{img.size[1]}, smaller than --size {sizes[-1]}, and --no_upscale "
            "forbids enlarging it; remove the image, lower --size, or drop --no_upscale"
        )

    return encode_sizes(img, sizes, resample, image_format, quality), None


def encode_synthetic(index, sizes, resample, image_format, quality, seed):
    """Worker: render synthetic face `index` at the largest size and encode it at every size."""
    img = render_face(index, sizes[-1], seed)

    return encode_sizes(img, sizes, resample, image_format, quality), None


@contextmanager
def worker_map(function, items, n_worker):
    """Yield an iterator of function(item) in the order of `items`, computed by `n_worker` processes."""
    if n_worker <= 1:
        yield map(function, items)
        return

    with multiprocessing.Pool(n_worker) as pool:
        yield pool.imap(function, items, chunksize=4)


def write_batch(env, items):
    """Put the (key, value) pairs in one transaction, doubling the map size whenever it is full."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)


def check_source(path, n_synthetic):
    """Refuse anything but exactly one source: a folder of images or a number of synthetic faces."""
    if (path is None) == (n_synthetic <= 0):
        raise PrepareError("give either DATASET_PATH or --synthetic N (a positive number), not both or neither")


def check_output(out, overwrite):
    """Refuse an --out that holds a dataset (unless `overwrite`) or other files."""
    if os.path.isfile(out):
        raise PrepareError(f"--out {out} is a file; the LMDB is written as a folder, choose another --out")

    if os.path.exists(os.path.join(out, "data.mdb")):
        if not overwrite:
            raise PrepareError(
                f"--out {out} already holds an LMDB; pass --overwrite to replace it, or choose another --out"
            )

    elif os.path.isdir(out) and os.listdir(out):
        raise PrepareError(f"--out {out} is a folder with other files in it; choose a new or empty folder")


def move_into_place(built, out):
    """Move the finished LMDB data file from folder `built` to `out`, replacing the dataset there if any."""
    os.makedirs(out, exist_ok=True)
    os.replace(os.path.join(built, "data.mdb"), os.path.join(out, "data.mdb"))
    # The old lock file describes readers of the old data; LMDB makes a fresh one on open.
    if os.path.exists(os.path.join(out, "lock.mdb")):
        os.remove(os.path.join(out, "lock.mdb"))


def prepare(
    out,
    sizes,
    path=None,
    n_synthetic=0,
    seed=0,
    n_worker=1,
    resample="lanczos",
    image_format="jpeg",
    quality=100,
    background="white",
    upscale=True,
    overwrite=False,
    commit_every=COMMIT_EVERY,
    verbose=True,
):
    """Write the images under folder `path`, or `n_synthetic` synthetic faces, as an LMDB at `out`.

    Every image is stored at each resolution in `sizes` (short side resized with `resample`, then
    centre-cropped). Files that cannot be decoded are skipped with a warning; the indices of the
    others stay contiguous, in the order of their sorted relative paths. Transactions are
    committed every `commit_every` images. `verbose` shows a progress bar and notes; warnings about
    skipped files are always printed. Raises PrepareError for problems the user has to fix.
    Returns a PrepareSummary(length, skipped paths, sizes, seconds).
    """
    sizes = sorted(set(sizes))
    check_source(path, n_synthetic)

    options = dict(sizes=sizes, resample=RESAMPLE[resample], image_format=image_format, quality=quality)
    if path is not None:
        items, other_extensions = find_images(path)
        if not items:
            raise PrepareError(f"found no images ({', '.join(IMAGE_EXTENSIONS)}) under {path}; check DATASET_PATH")
        if other_extensions and verbose:
            print(f"Ignoring files with extensions that are not images: {', '.join(other_extensions)}")
        work = partial(encode_file, background=BACKGROUND[background], upscale=upscale, **options)
    else:
        items = range(n_synthetic)
        work = partial(encode_synthetic, seed=seed, **options)

    check_output(out, overwrite)
    if verbose:
        # rosinality's banner, printed once the source and --out are known to be usable
        source = path if path is not None else f"{n_synthetic} synthetic faces (seed {seed})"
        print(f"Make dataset of image sizes: {', '.join(str(size) for size in sizes)} from {source}")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    built = tempfile.mkdtemp(prefix=os.path.basename(os.path.abspath(out)) + ".partial-", dir=parent)

    start = time.perf_counter()
    length, skipped = 0, []
    try:
        with lmdb.open(built, map_size=INITIAL_MAP_SIZE, readahead=False, meminit=False) as env:
            batch, pending_bytes = [], 0
            with worker_map(work, items, n_worker) as results:
                # The bar wraps the zip, not `results`: zip stops at the end of `items` without
                # resuming the bar, which then never counts the last image.
                for item, (encoded, warning) in tqdm(
                    zip(items, results), total=len(items), unit="img", desc="prepare", disable=not verbose
                ):
                    if encoded is None:
                        tqdm.write(f"warning: {warning}", file=sys.stderr)
                        skipped.append(item)
                        continue

                    for size, data in zip(sizes, encoded):
                        batch.append((image_key(size, length), data))
                        pending_bytes += len(data)
                    length += 1

                    if length % commit_every == 0 or pending_bytes >= MAX_PENDING_BYTES:
                        write_batch(env, batch)
                        batch, pending_bytes = [], 0

            if length == 0:
                raise PrepareError(f"none of the {len(items)} image files under {path} could be decoded")

            # One last transaction, so that "length" exists only once every image is stored.
            write_batch(env, batch + summary_records(length, sizes))

        move_into_place(built, out)

    finally:
        shutil.rmtree(built, ignore_errors=True)

    return PrepareSummary(length, skipped, sizes, time.perf_counter() - start)


def build_parser():
    parser = argparse.ArgumentParser(
        description="Write a folder of images (any depth), or synthetic faces, as a multi-resolution LMDB."
    )
    parser.add_argument("--out", type=str, required=True, help="LMDB folder to create")
    parser.add_argument(
        "--size",
        type=parse_sizes,
        default="128,256,512,1024",
        help="comma-separated resolutions to store (default: 128,256,512,1024)",
    )
    parser.add_argument(
        "--n_worker",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="number of processes that decode and encode images (default: CPU count, at most 8)",
    )
    parser.add_argument(
        "--resample", choices=sorted(RESAMPLE), default="lanczos", help="filter used to resize the short side"
    )
    parser.add_argument(
        "--format", choices=["jpeg", "png"], default="jpeg", help="image encoding in the LMDB (png is lossless)"
    )
    parser.add_argument("--quality", type=int, default=100, help="JPEG quality, 1 to 100")
    parser.add_argument(
        "--background",
        choices=sorted(BACKGROUND),
        default="white",
        help="colour that transparent pixels are composited over",
    )
    parser.add_argument(
        "--no_upscale", action="store_true", help="stop with an error on images smaller than the largest --size"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the LMDB at --out if there is one")
    parser.add_argument(
        "--synthetic", type=int, default=0, metavar="N", help="write N built-in synthetic faces instead of DATASET_PATH"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic faces")
    parser.add_argument("path", nargs="?", metavar="DATASET_PATH", help="folder of images, searched recursively")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_source(args.path, args.synthetic)
    except PrepareError as error:
        parser.error(str(error))
    if not 1 <= args.quality <= 100:
        parser.error(f"--quality must be between 1 and 100, not {args.quality}")
    if args.n_worker < 1:
        parser.error(f"--n_worker must be at least 1, not {args.n_worker}")

    try:
        summary = prepare(
            args.out,
            args.size,
            path=args.path,
            n_synthetic=args.synthetic,
            seed=args.seed,
            n_worker=args.n_worker,
            resample=args.resample,
            image_format=args.format,
            quality=args.quality,
            background=args.background,
            upscale=not args.no_upscale,
            overwrite=args.overwrite,
        )
    except PrepareError as error:
        parser.exit(1, f"error: {error}\n")

    print(
        f"Wrote {summary.length} images to {args.out} in {summary.seconds:.1f} s "
        f"({summary.length / summary.seconds:.1f} images/s); "
        f"skipped {len(summary.skipped)} file{'s' if len(summary.skipped) != 1 else ''} that could not be decoded."
    )


if __name__ == "__main__":
    main()
