"""The original repositories' other command lines on tiny checkpoints: the `rand_mspe` position
and the scripts' entry points. (Their results are tested in test_sefa.py, test_ppl.py,
test_fid_commands.py and test_swagan.py.)"""

import argparse
import os
import subprocess
import sys

import torch

import generate
from checkpoint import build_generator, load_generator, model_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


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


def test_the_scripts_run_as_written(tmp_path, make_tiny_checkpoint):
    """The scripts' own entry points (`python SCRIPT ...`), all in one interpreter to spare the
    start-up time: SeFa, apply_factor and the --help of ppl.py, fid.py and calc_inception.py."""
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt", position="sspe")
    commands = [
        ["closed_form_factorization.py", ckpt, "--out", "factor.pt"],
        ["apply_factor.py", "-i", "2", "-d", "4", "--ckpt", ckpt, "-n", "2", "--device", "cpu", "factor.pt"],
        ["ppl.py", "--help"],
        ["fid.py", "--help"],
        ["calc_inception.py", "--help"],
    ]
    runner = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        f"for command in {commands!r}:\n"
        f"    sys.argv = command\n"
        "    try:\n"
        f"        runpy.run_path({ROOT!r} + '/' + command[0], run_name='__main__')\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code in (0, None), (command, stop.code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", runner], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    assert torch.load(tmp_path / "factor.pt", weights_only=True)["ckpt"] == ckpt
    assert (tmp_path / "factor_index-2_degree-4.0.png").is_file()
    for flag in ("--space", "--sampling", "--crop", "--eps", "--n_sample"):
        assert flag in result.stdout
    assert "--inception" in result.stdout and "--truncation_mean" in result.stdout and "--flip" in result.stdout
