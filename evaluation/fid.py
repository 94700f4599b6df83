"""Fréchet Inception distance (Heusel et al. 2017), as pytorch-fid and rosinality's fid.py
compute it: the Fréchet distance of Gaussians fitted to the Inception pool3 features
(evaluation/inception.py) of real and generated images. Lower is better.

Real statistics are cached in .npz files, or in .pkl files as rosinality's calc_inception.py
writes them ({"mean", "cov", "size", "path"}); a .pkl is read by a restricted unpickler that
builds numpy arrays and plain containers only, never other objects, so a file that would run
code is refused.

One pipeline serves every command: `real_statistics` makes real statistics (calc_inception.py,
`metrics.py inception`, and `metrics.py fid --path`), `cached_real_statistics` reads them back
checked against the generator's size, and `generator_fid` measures a generator against them
(fid.py, `metrics.py fid`). `metrics.py report` (spatial_bias.py) takes the same features
through `feature_statistics` and `frechet_distance` in the one pass over its images that also
serves SWD.
"""

import io
import os
import pickle
import warnings
import zipfile

import numpy as np
import torch
from scipy import linalg
from tqdm import tqdm

from evaluation.common import batch_sizes, generated_batches, module_device, real_image_batches
from model import TRUNCATION_MEAN


def feature_statistics(features):
    """(mean [D], covariance [D, D]) of [N, D] features, in float64 numpy."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) < 2:
        raise ValueError("FID statistics need at least 2 images")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mean_a, cov_a, mean_b, cov_b, eps=1e-6):
    """Fréchet distance of two Gaussians: |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2).

    The square root is scipy's sqrtm, as in pytorch-fid and rosinality's fid.py. When it fails
    (a singular product, as with fewer images than feature dimensions), eps is added to both
    diagonals and the root taken again.
    """

    def failed(root):
        return not np.isfinite(root).all() or (
            np.iscomplexobj(root) and not np.allclose(np.diagonal(root).imag, 0, atol=1e-3)
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # a singular product is handled below
        covmean = linalg.sqrtm(cov_a @ cov_b)
        if failed(covmean):
            offset = np.eye(len(cov_a)) * eps
            covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if failed(covmean):
        raise ValueError(
            "the covariance product has no real square root, even regularised; use more images "
            f"(FID needs more images than feature dimensions, {len(cov_a)})"
        )
    covmean = covmean.real
    difference = mean_a - mean_b
    return float(difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


def warn_few_fid_images(count):
    if count < 2048:
        print(
            f"note: FID from {count} images is strongly biased (fewer images than the 2048 feature dimensions); "
            "published FIDs use 50000"
        )


class StatisticsUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes and scalars inside plain containers, nothing else.

    A pickle names every class or function it calls; only those that rebuild arrays are found
    (their numpy 1 and numpy 2 module names, and the byte decoding of protocol 2), so a pickle
    that would construct any other object or call any other function fails before running it.
    """

    ALLOWED = {
        (module, name)
        for prefix in ("numpy.core", "numpy._core")
        for module, name in (
            (f"{prefix}.multiarray", "_reconstruct"),
            (f"{prefix}.multiarray", "scalar"),
            (f"{prefix}.numeric", "_frombuffer"),
        )
    } | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it would call {module}.{name}; statistics files hold numpy arrays only")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2 aliases numpy.core
            return super().find_class(module, name)


def save_statistics(file, mean, cov, **info):
    """Cache real statistics (and what they were computed from): a .pkl file as rosinality's
    calc_inception.py writes it, any other name an .npz file."""
    os.makedirs(os.path.dirname(file) or ".", exist_ok=True)
    with open(file, "wb") as handle:  # a handle keeps the name as given (savez would append .npz)
        if file.endswith(".pkl"):
            pickle.dump({"mean": mean, "cov": cov, **info}, handle)
        else:
            np.savez(handle, mean=mean, cov=cov, **{key: np.asarray(value) for key, value in info.items()})


def statistics_advice(size):
    """How to make the real statistics of `size` px images."""
    return f"compute them with: python calc_inception.py --size {size} LMDB_PATH"


def load_statistics(path):
    """(mean, cov, info dict) of a file written by `save_statistics` or rosinality's
    calc_inception.py (.pkl, read with StatisticsUnpickler)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"real statistics {path!r} not found; {statistics_advice('SIZE')}")
    if zipfile.is_zipfile(path):
        with np.load(path, allow_pickle=False) as stored:
            info = {key: stored[key].item() for key in stored.files if key not in ("mean", "cov")}
            return stored["mean"], stored["cov"], info
    with open(path, "rb") as file:
        data = file.read()
    try:
        stored = StatisticsUnpickler(io.BytesIO(data)).load()
    except Exception as error:
        raise ValueError(
            f"{path} is not a statistics file this project reads safely ({error}). "
            "Recompute them with calc_inception.py"
        ) from None
    if not isinstance(stored, dict) or not all(isinstance(stored.get(key), np.ndarray) for key in ("mean", "cov")):
        raise ValueError(f"{path} is not a statistics file: it lacks the arrays 'mean' and 'cov'")
    info = {key: value for key, value in stored.items() if key not in ("mean", "cov")}
    return stored["mean"], stored["cov"], info


@torch.no_grad()
def inception_statistics(inception, batches, total=None, desc="Inception", progress=False):
    """(mean, cov) of the Inception features of the images of `batches`."""
    device = module_device(inception)
    features = [
        inception(images.to(device)).double().cpu()
        for images in tqdm(batches, total=total, desc=desc, disable=not progress)
    ]
    return feature_statistics(torch.cat(features).numpy())


def random_flips(batches, seed):
    """The images of `batches`, each flipped horizontally with probability 1/2 (a seeded coin)."""
    rng = torch.Generator().manual_seed(seed)
    for images in batches:
        flipped = torch.rand(len(images), generator=rng) < 0.5
        yield torch.where(flipped.view(-1, 1, 1, 1), images.flip(3), images)


def real_statistics(inception, real_images, batch, seed=0, flip=False, progress=True):
    """(mean, cov, info) of the Inception features of `real_images`, (dataset, indices) as
    common.open_real_images chooses them (every metric takes its real images so; open them before
    loading the Inception network, so that a bad LMDB is reported before any download), each
    image flipped horizontally with probability 1/2 under `flip` (a coin of `seed`). `info` says
    what they were made from, and with which Inception weights."""
    dataset, indices = real_images
    batches = real_image_batches(dataset, indices, batch)
    if flip:
        batches = random_flips(batches, seed)
    total = len(batch_sizes(len(indices), batch))
    mean, cov = inception_statistics(inception, batches, total, desc="real", progress=progress)
    info = {"size": dataset.resolution, "path": dataset.path, "n_sample": len(indices), "flip": flip, "seed": seed}
    return mean, cov, {**info, "inception": inception.weights}


def cached_real_statistics(path, size, source):
    """(mean, cov, the Inception weights' name or None) of the statistics file `path`, refused
    unless they are of `size` px images, the size `source` (a checkpoint, for the message)
    renders."""
    mean, cov, info = load_statistics(path)
    if "size" in info and int(info["size"]) != size:
        raise ValueError(
            f"{path} holds statistics of {info['size']} px images; {source} renders {size} px: "
            f"{statistics_advice(size)}"
        )
    return mean, cov, info.get("inception")


def generator_fid(
    generator,
    inception,
    real_mean,
    real_cov,
    n_sample,
    batch,
    seed=0,
    truncation=1.0,
    truncation_mean=TRUNCATION_MEAN,
    progress=True,
    real_weights=None,
):
    """FID of `n_sample` renders of seeded latents and noise (common.generated_batches) against
    the real statistics (real_mean, real_cov), made with the Inception weights named
    `real_weights` (None: with `inception`'s)."""
    warn_few_fid_images(n_sample)
    if real_weights is not None and str(real_weights) != inception.weights:
        # names, not contents: one file under two names is one network, hence a note, not an error
        print(
            f"note: the real statistics come from the Inception weights {real_weights}, the generated "
            f"images' features from {inception.weights}: unless both name one network, this FID "
            "compares two networks' features and means nothing"
        )
    truncation_latent = generator.truncation_latent(truncation, truncation_mean)
    fakes = generated_batches(generator, n_sample, batch, seed, truncation, truncation_latent)
    total = len(batch_sizes(n_sample, batch))
    fake_mean, fake_cov = inception_statistics(inception, fakes, total, desc="generated", progress=progress)
    return frechet_distance(fake_mean, fake_cov, real_mean, real_cov)
