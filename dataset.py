"""The LMDB dataset format, its reader, and the paper's training augmentation.

The format is that of rosinality/stylegan2-pytorch, so LMDBs of either project work with both:
key f"{size}-{index:05d}" (UTF-8) holds the encoded image (JPEG or PNG) of image `index` at
resolution `size`, and key "length" the number of images as decimal text. prepare_data.py also
writes key "sizes", the resolutions it holds as comma-separated text ("64,128").

Training on randomly *circularly translated* real images (Choi et al., 2021) removes the spatial
bias of aligned datasets such as FFHQ: every position in the frame becomes equally likely.
"""

import os
import sys
from io import BytesIO

import lmdb
import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, Sampler

from utils.images import to_tensor
from utils.shift import roll_each

LENGTH_KEY = b"length"
SIZES_KEY = b"sizes"
# LMDBs of the original tool have no "sizes" key; these are the resolutions probed for instead.
PROBED_SIZES = [2**power for power in range(2, 12)]


def image_key(resolution, index):
    """The LMDB key of image `index` at `resolution`, as the original tool wrote it."""
    return f"{resolution}-{str(index).zfill(5)}".encode()


def summary_records(length, sizes):
    """The (key, value) records that describe an LMDB of `length` images at `sizes`; written last,
    so that an LMDB with a "length" is complete."""
    return [
        (SIZES_KEY, ",".join(str(size) for size in sizes).encode("utf-8")),
        (LENGTH_KEY, str(length).encode("utf-8")),
    ]


# One read-only environment per LMDB file per process, shared by every dataset that reads it:
# lmdb refuses to open the same file twice in a process, and an environment inherited through a
# fork must not be used. Keyed by the file's identity, so a dataset rewritten in place is reopened.
_environments = {}


def lmdb_environment(path):
    """This process's read-only environment of the LMDB at `path`, opened on first use."""
    data = os.stat(os.path.join(path, "data.mdb"))
    key = (data.st_dev, data.st_ino)
    pid, env = _environments.get(key, (None, None))
    if pid != os.getpid():
        if env is not None:
            env.close()
        env = lmdb.open(path, max_readers=32, readonly=True, lock=False, readahead=False, meminit=False)
        _environments[key] = (os.getpid(), env)

    return env


def read_sizes(txn):
    """The resolutions an LMDB holds: its "sizes" key or, for LMDBs of the original tool, probing."""
    stored = txn.get(SIZES_KEY)
    if stored is not None:
        return [int(size) for size in stored.decode("utf-8").split(",")]

    return [size for size in PROBED_SIZES if txn.get(image_key(size, 0)) is not None]


class MultiResolutionDataset(Dataset):
    """The images of one resolution of an LMDB from prepare_data.py (or rosinality's original).

    Item `index` is transform(PIL image), or the RGB PIL image itself when `transform` is None.
    The LMDB is opened on first read in each process, so the dataset works in DataLoader workers
    started by fork or spawn; the open environment is never pickled or shared across a fork.
    """

    def __init__(self, path, transform, resolution=256):
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"LMDB {path} does not exist; make it with: "
                f"python prepare_data.py --out {path} --size {resolution} DATASET_PATH"
            )
        if not os.path.exists(os.path.join(path, "data.mdb")):
            raise FileNotFoundError(
                f"{path} is not an LMDB (it has no data.mdb); point --path at a folder made by prepare_data.py"
            )

        with lmdb_environment(path).begin(write=False) as txn:
            length = txn.get(LENGTH_KEY)
            sizes = read_sizes(txn)
            has_resolution = txn.get(image_key(resolution, 0)) is not None

        if length is None:
            raise ValueError(
                f"LMDB {path} has no 'length' key, so it is incomplete (prepare_data.py did not finish); "
                "run prepare_data.py again with --overwrite"
            )
        self.length = int(length.decode("utf-8"))
        if self.length == 0:
            raise ValueError(f"LMDB {path} holds no images; run prepare_data.py again with --overwrite")
        if not has_resolution:
            raise ValueError(
                f"LMDB {path} holds sizes {', '.join(str(size) for size in sizes)}; "
                f"--size {resolution} is not among them. "
                f"Train at one of those sizes, or run prepare_data.py again with --size {resolution}"
            )

        self.path = path
        self.sizes = sizes
        self.resolution = resolution
        self.transform = transform
        self.env = None
        self.env_pid = None

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} is out of range for LMDB {self.path} of {self.length} images")

        if self.env is None or self.env_pid != os.getpid():
            self.env = lmdb_environment(self.path)
            self.env_pid = os.getpid()

        with self.env.begin(write=False) as txn:
            img_bytes = txn.get(image_key(self.resolution, index))
        if img_bytes is None:
            raise RuntimeError(
                f"LMDB {self.path} has no image {index} at size {self.resolution}; it is damaged, prepare it again"
            )

        img = Image.open(BytesIO(img_bytes)).convert("RGB")

        return self.transform(img) if self.transform is not None else img

    def __getstate__(self):
        state = self.__dict__.copy()
        state["env"] = None
        state["env_pid"] = None

        return state


def random_offsets(n, max_offset, length, generator=None):
    """`n` integer offsets uniform in [-max_offset, max_offset], or over a whole period of `length`.

    Once 2 * max_offset + 1 reaches `length`, that range holds every distinct roll, some twice;
    drawing from [0, length) instead keeps every roll equally likely.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    if 2 * max_offset + 1 >= length:
        return torch.randint(0, length, (n,), generator=generator, device=device)

    return torch.randint(-max_offset, max_offset + 1, (n,), generator=generator, device=device)


def circular_translate(img, max_offset_h, max_offset_w, generator=None):
    """Roll `img` ([C, H, W] or [N, C, H, W]) by a random integer offset in y and x, wrapping around.

    Offsets are uniform in [-max_offset, max_offset] per axis (0 leaves the axis alone; a range
    that covers the whole side makes every roll equally likely). Each sample of a batch gets its
    own offsets. The result equals torch.roll(img, (dy, dx), dims=(-2, -1)) for the drawn offsets,
    so pixel values are only moved, never changed. Draws from `generator`, else torch's global RNG.
    """
    if max_offset_h < 0 or max_offset_w < 0:
        raise ValueError(f"maximum offsets must be at least 0, not ({max_offset_h}, {max_offset_w})")
    if max_offset_h == 0 and max_offset_w == 0:
        return img
    if img.dim() == 3:
        return circular_translate(img[None], max_offset_h, max_offset_w, generator)[0]

    n, _, height, width = img.shape
    dy = random_offsets(n, max_offset_h, height, generator)
    dx = random_offsets(n, max_offset_w, width, generator)

    return roll_each(img, dy, dx)


class TrainTransform:
    """The paper's training augmentation: PIL image -> float tensor [C, H, W] in [-1, 1].

    A random horizontal flip (if `flip`), then a random circular translation by integer offsets
    uniform in [-round(translate * size), +round(translate * size)] in x and y (0 = off, 1.0 = any
    offset). Randomness comes from torch's global RNG, which DataLoader seeds in each worker: one
    torch.rand(1) per flip, as torchvision's RandomHorizontalFlip, then the translation's draws,
    so that runs and their resumes keep the original code's random stream. A class, not a
    closure, because DataLoader's spawned workers pickle it.
    """

    def __init__(self, translate=0.0, flip=True):
        if not 0 <= translate <= 1:
            raise ValueError(f"translate is a fraction of the image size between 0 and 1, not {translate}")
        self.translate, self.flip = translate, flip

    def __call__(self, image):
        if self.flip and torch.rand(1) < 0.5:
            image = ImageOps.mirror(image)
        tensor = to_tensor(image)
        if self.translate == 0:
            return tensor
        height, width = tensor.shape[-2:]
        return circular_translate(tensor, round(self.translate * height), round(self.translate * width))

    def __repr__(self):
        return f"{self.__class__.__name__}(translate={self.translate}, flip={self.flip})"


# ---------------------------------------------------------------------------------------------
# reproducible, resumable training order


class ResumableSampler(Sampler):
    """The items of one rank for one pass (epoch) over `length` records, as (index, epoch) pairs.

    The order is DistributedSampler's (shuffle, drop_last): a permutation drawn from
    seed + epoch, cut to a multiple of `num_replicas`, every num_replicas-th item for `rank`. It
    is therefore a function of (seed, epoch) alone. `set_epoch(epoch, start)` begins that pass at
    item `start`, skipping the items a resumed run has already trained on.
    """

    def __init__(self, length, num_replicas=1, rank=0, seed=0):
        self.length, self.num_replicas, self.rank, self.seed = length, num_replicas, rank, seed
        self.num_samples = length // num_replicas  # per rank and pass
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch, start=0):
        self.epoch, self.start = epoch, start

    def indices(self, epoch):
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.length, generator=generator)[: self.num_samples * self.num_replicas]
        return order[self.rank :: self.num_replicas].tolist()

    def __iter__(self):
        return iter([(index, self.epoch) for index in self.indices(self.epoch)[self.start :]])

    def __len__(self):
        return max(0, self.num_samples - self.start)


def sample_seed(seed, epoch, index):
    """The seed of the random transform of record `index` in pass `epoch` of a run with `seed`."""
    # a Python int before the shift: NumPy 1.x has no uint64 >> int64
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0]) >> 1


class SeededRecords(Dataset):
    """Item (index, epoch) of `dataset` as (image, records skipped), reproducibly and robustly.

    The dataset's random transform (flip, translation) draws from torch's RNG seeded with
    `sample_seed(seed, epoch, index)` and restored afterwards: an image depends on neither the
    number of loader processes nor on where a run was resumed, and the caller's RNG is untouched.
    A record that cannot be read or decoded is reported on stderr and replaced by the next one
    (index + 1, + 2, ... wrapping around), the same one every time; `skipped` counts them.
    """

    UNREADABLE = (OSError, RuntimeError, ValueError, SyntaxError)  # PIL's and LMDB's errors
    MAX_CONSECUTIVE_BAD = 64  # more in a row: the LMDB is broken, not a few records

    def __init__(self, dataset, seed=0):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, epoch = item
        for skipped in range(min(len(self.dataset), self.MAX_CONSECUTIVE_BAD + 1)):
            substitute = (index + skipped) % len(self.dataset)
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(sample_seed(self.seed, epoch, substitute))
                    return self.dataset[substitute], skipped
            except self.UNREADABLE as error:
                print(
                    f"warning: skipping record {substitute} of {getattr(self.dataset, 'path', 'the dataset')}: {error}",
                    file=sys.stderr,
                )
        raise RuntimeError(
            f"records {index} to {substitute} of {getattr(self.dataset, 'path', 'the dataset')} cannot be decoded: "
            "the LMDB is damaged; prepare it again with prepare_data.py"
        )
