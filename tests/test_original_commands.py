"""The original repositories' other command lines, run as written on tiny checkpoints: the
`rand_mspe` position, closed_form_factorization.py / apply_factor.py, ppl.py, calc_inception.py
and fid.py."""

import argparse
import os
import subprocess
import sys

import pytest
import torch

import generate
from checkpoint import build_generator, load_generator, model_config, save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}


def run_script(script, *args, cwd):
    """Run ROOT/script in `cwd` (a subprocess, as a user would); returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *map(str, args)],
        cwd=cwd, env=ENV, capture_output=True, text=True, timeout=180,
    )


def test_rand_mspe_is_the_original_name_of_mspe(tmp_path, monkeypatch, make_tiny_checkpoint):
    assert model_config({"position": "rand_mspe"})["position"] == "mspe"
    generator = build_generator({"position": "rand_mspe", "size": 32, "channel_max": 16, "latent": 32, "n_mlp": 2})
    assert generator.position == "mspe" and hasattr(generator, "pes")
    # a checkpoint of the original storing rand_mspe loads as mspe and agrees with --position rand_mspe
    path = make_tiny_checkpoint(tmp_path / "rand.pt", position="rand_mspe")
    args = argparse.Namespace(**model_config({"position": "rand_mspe"}))
    loaded, config = load_generator(path, args=args, explicit={"position"})
    assert config.position == "mspe" and "pes.0.gamma" in loaded.state_dict()
    monkeypatch.chdir(tmp_path)
    generate.main(["--ckpt", path, "--position", "rand_mspe", "--n_sample", "1"])
    assert (tmp_path / "generate" / "test" / "grid" / "seed0000.png").is_file()
