"""Shared pytest fixtures, and the skip of the `cuda` marker's tests without a GPU."""

import argparse
import os
import sys

import pytest
import torch

# The scripts live at the repository root, which plain `pytest` does not put on sys.path.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# `make test` runs a pytest-xdist worker a core: each takes one thread, and so do the scripts it
# starts, or the workers' threads would outnumber the cores and every test would crawl.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked `cuda` (pyproject.toml) where there is no GPU: one place decides,
    and `pytest -m cuda` (benchmarks/bench.py --report) selects exactly what a GPU session checks."""
    if torch.cuda.is_available():
        return
    no_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(no_gpu)


@pytest.fixture(scope="session")
def synthetic_lmdb(tmp_path_factory):
    """Path (str) of a synthetic-face LMDB of 64 images at sizes 32 and 64, made once per session."""
    from prepare_data import prepare

    out = str(tmp_path_factory.mktemp("synthetic") / "lmdb")
    prepare(out, [32, 64], n_synthetic=64, seed=0, n_worker=1, verbose=False)

    return out


@pytest.fixture(scope="session")
def make_tiny_checkpoint():
    """make(path, position="mspe", **config) saves an untrained 32px generator with 16 channels
    at most (and its model configuration in `args`, as train.py does) and returns str(path)."""
    import torch

    from checkpoint import build_generator, save_checkpoint

    def make(path, position="mspe", **config):
        args = argparse.Namespace(
            size=32,
            latent=32,
            n_mlp=2,
            channel_multiplier=2,
            channel_max=16,
            kernel_size=3,
            affine=False,
            position=position,
        )
        vars(args).update(config)
        torch.manual_seed(0)
        generator = build_generator(args)
        save_checkpoint({"g_ema": generator.state_dict(), "args": args}, str(path))
        return str(path)

    return make


@pytest.fixture
def one_torch_thread():
    """In-process training on one thread, as its subprocesses run (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
