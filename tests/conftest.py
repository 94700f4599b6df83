"""Shared pytest fixtures."""

import os
import sys

import pytest

# The scripts live at the repository root, which plain `pytest` does not put on sys.path.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def synthetic_lmdb(tmp_path_factory):
    """Path (str) of a synthetic-face LMDB of 64 images at sizes 32 and 64, made once per session."""
    from prepare_data import prepare

    out = str(tmp_path_factory.mktemp("synthetic") / "lmdb")
    prepare(out, [32, 64], n_synthetic=64, seed=0, n_worker=1, verbose=False)

    return out
