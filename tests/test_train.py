"""train.py, training/gan.py, training/loop.py and training/distributed.py on a CPU with a tiny
model (32 px, 32 channels)."""

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from PIL import Image

import train
from checkpoint import build_generator, load_checkpoint, merge_model_config, save_checkpoint
from model import StyledConv
from training import gan
from training.augment import AdaptiveAugment
from training.loop import ResumePoint, prune_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "train.py")
NAME = "tiny"
TINY = ["--size", "32", "--channel_max", "32", "--latent", "32", "--n_mlp", "2", "--batch", "4", "--n_sample", "4"]
# One thread per process: the tests share two cores, and oversubscribed OpenMP threads crawl.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_train(cwd, lmdb, *flags, timeout=180):
    command = [sys.executable, TRAIN, "--name", NAME, "--path", lmdb, *TINY, "--workers", "0", *flags]
    return subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def refusal(monkeypatch, cwd, lmdb, *flags):
    """The message with which an in-process train.main refuses to run (SystemExit)."""
    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as stopped:
        train.main(["--name", NAME, "--path", lmdb, *TINY, "--workers", "0", *flags])
    return str(stopped.value)


def read_log(cwd):
    with open(os.path.join(cwd, "checkpoint", NAME, "log.jsonl")) as log_file:
        return [json.loads(line) for line in log_file]


def checkpoints(cwd):
    return sorted(name for name in os.listdir(os.path.join(cwd, "checkpoint", NAME)) if name.endswith(".pt"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_lmdb):
    """A run of 2 iterations of a tiny MS-PE model with ADA and translation; its folder."""
    cwd = tmp_path_factory.mktemp("trained")
    result = run_train(
        cwd,
        synthetic_lmdb,
        *"--position mspe --iter 2 --save_every 2 --sample_every 1 --log_every 1 --translate 1.0".split(),
        *"--augment --ada_every 4 --ada_length 100".split(),
        "--workers",
        "1",  # overrides run_train's 0: one loader process, as in real runs
    )
    assert result.returncode == 0, result.stderr
    return cwd


def copy_run(trained, tmp_path):
    shutil.copytree(os.path.join(trained, "checkpoint"), tmp_path / "checkpoint")
    return tmp_path


def test_training_writes_checkpoint_samples_config_and_log(trained):
    assert checkpoints(trained) == ["000002.pt"]
    for iteration in (1, 2):
        grid = Image.open(os.path.join(trained, "sample", NAME, f"{iteration:06d}.png"))
        assert grid.size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)  # 2x2 images of 32 px, 2 px padding

    checkpoint = load_checkpoint(os.path.join(trained, "checkpoint", NAME, "000002.pt"))
    assert {"g", "d", "g_ema", "g_optim", "d_optim", "args", "ada_aug_p"} <= set(checkpoint)
    args = checkpoint["args"]
    assert (args.position, args.size, args.channel_max, args.latent, args.translate) == ("mspe", 32, 32, 32, 1.0)
    generator = build_generator(args)
    generator.load_state_dict(checkpoint["g_ema"])  # strict: the stored config rebuilds the model
    assert any(key.startswith("pes.") for key in checkpoint["g"])

    log = read_log(trained)
    assert [record["iter"] for record in log] == [1, 2]
    for key in ("d", "g", "real_score", "fake_score", "augment_p", "images_per_s"):
        assert all(math.isfinite(record[key]) for record in log), key
    assert "r1" in log[0]  # R1 runs at iteration 0, lazily every 16 after that
    assert checkpoint["ada_aug_p"] == log[-1]["augment_p"]

    with open(os.path.join(trained, "checkpoint", NAME, "config.json")) as config_file:
        config = json.load(config_file)
    assert config["precision"] == "fp32" and config["device"] == "cpu" and config["world_size"] == 1
    assert config["g_reg_every"] == 0  # path-length regularisation off, as in the original


def test_resume_continues_iterations_and_optimiser_state(trained, tmp_path, synthetic_lmdb):
    cwd = copy_run(trained, tmp_path)
    saved = load_checkpoint(os.path.join(cwd, "checkpoint", NAME, "000002.pt"))

    # the state a resumed run starts from is the saved one
    args, explicit = train.parse_args(["--name", NAME, "--path", synthetic_lmdb, "--augment"])
    merge_model_config(saved["args"], args, explicit)  # model flags from the checkpoint
    step = gan.build_gan_step(args, torch.device("cpu"))
    step.load_state_dict(saved, "000002.pt", args)
    assert step.ada.p == saved["ada_aug_p"]
    for optimizer, key in ((step.g_optim, "g_optim"), (step.d_optim, "d_optim")):
        restored, stored = optimizer.state_dict(), saved[key]
        assert restored["param_groups"] == stored["param_groups"]
        for index, state in stored["state"].items():
            for name, value in state.items():
                assert torch.equal(restored["state"][index][name], value), (key, index, name)

    result = run_train(cwd, synthetic_lmdb, *"--ckpt 000002.pt --iter 4 --save_every 2 --log_every 1 --augment".split())
    assert result.returncode == 0, result.stderr
    assert "resuming from checkpoint/tiny/000002.pt at iteration 2" in result.stderr
    assert checkpoints(cwd) == ["000002.pt", "000004.pt"]
    assert [record["iter"] for record in read_log(cwd)] == [1, 2, 3, 4]
    resumed = load_checkpoint(os.path.join(cwd, "checkpoint", NAME, "000004.pt"))
    assert resumed["args"].position == "mspe"  # the model configuration came from the checkpoint
    # Adam counted every step since iteration 0: 4 loss steps (+1 R1 step for D), not 2
    assert {float(state["step"]) for state in resumed["g_optim"]["state"].values()} == {4.0}
    assert {float(state["step"]) for state in resumed["d_optim"]["state"].values()} == {5.0}


def test_a_resumed_run_trains_as_it_did_unless_told_otherwise(trained, tmp_path, synthetic_lmdb):
    """A shorter command line resumes the run it continues: --translate, --augment and ADA's
    settings come from the checkpoint, and a flag given wins."""
    cwd = copy_run(trained, tmp_path)
    result = run_train(cwd, synthetic_lmdb, *"--ckpt latest --iter 3 --save_every 3 --ada_every 8".split())
    assert result.returncode == 0, result.stderr
    assert "resuming as the run trained: --ada_length 100, --augment True, --translate 1.0" in result.stderr
    with open(os.path.join(cwd, "checkpoint", NAME, "config.json")) as config_file:
        config = json.load(config_file)
    assert (config["translate"], config["augment"], config["ada_length"]) == (1.0, True, 100)
    assert config["ada_every"] == 8


def test_mismatched_checkpoint_is_refused(trained, tmp_path, synthetic_lmdb, monkeypatch):
    cwd = copy_run(trained, tmp_path)
    message = refusal(
        monkeypatch, cwd, synthetic_lmdb, *"--ckpt 000002.pt --iter 4 --position sspe --channel_multiplier 1".split()
    )
    assert "position: " in message and "'mspe'" in message and "'sspe'" in message
    assert "channel_multiplier" in message
    assert checkpoints(cwd) == ["000002.pt"]


def test_a_checkpoint_missing_or_mismatching_an_optimiser_state_is_refused_by_name(
    trained, tmp_path, synthetic_lmdb, monkeypatch
):
    cwd = copy_run(trained, tmp_path)
    path = os.path.join(cwd, "checkpoint", NAME, "000002.pt")
    checkpoint = load_checkpoint(path)
    save_checkpoint({key: value for key, value in checkpoint.items() if key != "d_optim"}, path)
    message = refusal(monkeypatch, cwd, synthetic_lmdb, *"--ckpt 000002.pt --iter 4".split())
    assert "cannot resume training: it lacks d_optim" in message
    checkpoint["g_optim"], checkpoint["d_optim"] = checkpoint["d_optim"], checkpoint["g_optim"]
    save_checkpoint(checkpoint, path)
    message = refusal(monkeypatch, cwd, synthetic_lmdb, *"--ckpt 000002.pt --iter 4".split())
    assert "('g_optim') does not fit the optimiser" in message


def test_a_gan_run_refuses_the_diffusion_models_flags(trained, tmp_path, synthetic_lmdb, monkeypatch):
    """--steps or --grad_clip would change nothing in a GAN run, resumed ones included, whose
    --arch comes from the checkpoint."""
    cwd = copy_run(trained, tmp_path)
    message = refusal(monkeypatch, cwd, synthetic_lmdb, *"--ckpt latest --iter 4 --steps 10 --grad_clip 0".split())
    assert "--arch stylegan2 trains a GAN, which does not read --grad_clip, --steps" in message
    assert checkpoints(cwd) == ["000002.pt"]


def test_a_run_never_starts_behind_checkpoints_already_in_its_folder(trained, tmp_path, synthetic_lmdb, monkeypatch):
    """A fresh start, or a resume from an earlier checkpoint, into a folder holding later
    checkpoints is refused before it writes anything: --ckpt latest would later resume those."""
    cwd = copy_run(trained, tmp_path)
    log = read_log(cwd)
    message = refusal(monkeypatch, cwd, synthetic_lmdb, *"--iter 4 --position mspe".split())
    assert "checkpoint/tiny already holds the checkpoints 000002.pt of a run" in message
    assert "resume that run with --ckpt latest, or start this one under another --name" in message

    folder = os.path.join(cwd, "checkpoint", NAME)
    shutil.copy(os.path.join(folder, "000002.pt"), os.path.join(folder, "000001.pt"))
    message = refusal(monkeypatch, cwd, synthetic_lmdb, *"--ckpt 000001.pt --iter 4".split())
    assert "holds 000002.pt, past iteration 1 where checkpoint/tiny/000001.pt resumes" in message
    assert "move them out of checkpoint/tiny" in message
    assert checkpoints(cwd) == ["000001.pt", "000002.pt"] and read_log(cwd) == log


def test_a_resume_can_turn_ada_off_and_keeps_the_sample_grids_sampler():
    """--no-augment wins over the checkpoint's --augment; a diffusion run's grid sampler flags
    (--steps) come back from its checkpoint like every training flag."""
    args, explicit = train.parse_args(["--name", "unused", "--path", "unused", "--ckpt", "latest", "--no-augment"])
    stored = argparse.Namespace(**{**vars(args), "augment": True, "steps": 2})
    start = ResumePoint("checkpoint/unused/000002.pt", {"data": {}, "args": stored}, 2)
    train.restore_training_flags(start, args, explicit)
    assert (args.augment, args.steps) == (False, 2)


def test_the_batch_is_checked_against_the_resumed_runs_minibatch_groups():
    """Before --ckpt is read, --batch 6 cannot be judged: the run may have --mbstd_group 2, or be
    a diffusion model (no minibatch-stddev)."""
    args, _ = train.parse_args(["--name", "unused", "--path", "unused", "--ckpt", "latest", "--batch", "6"])
    args.mbstd_group = 2  # the checkpoint's
    train.check_args(args)
    with pytest.raises(SystemExit, match="--batch 6: .*--mbstd_group 4"):
        train.parse_args(["--name", "unused", "--path", "unused", "--batch", "6"])


def test_ada_settings_without_augment_are_warned_of(capsys):
    args, explicit = train.parse_args(["--name", "unused", "--path", "unused", "--augment_p", "0.5"])
    train.check_kind_flags(args, explicit)
    assert "warning: ADA is off without --augment; it ignores --augment_p" in capsys.readouterr().err
    args, explicit = train.parse_args(["--name", "unused", "--path", "unused", "--augment_p", "0.5", "--augment"])
    train.check_kind_flags(args, explicit)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--lr -1", "--lr must be positive, not -1.0"),
        ("--d_lr 0", "--d_lr must be positive, not 0.0"),
        ("--mixing 2", "--mixing is a probability from 0 to 1, not 2.0"),
        ("--r1 -1", "--r1 must be 0 or more, not -1.0"),
        ("--translate 1.5", "--translate is a fraction of the image size from 0 to 1, not 1.5"),
        ("--batch 0", "argument --batch: must be at least 1, not 0"),
        ("--channel_max 0", "argument --channel_max: must be at least 1, not 0"),
    ],
)
def test_a_setting_out_of_range_is_refused_by_name_before_training(flags, message, capsys):
    with pytest.raises(SystemExit) as refused:
        train.parse_args(["--name", "unused", "--path", "unused", *flags.split()])
    assert message in f"{refused.value} {capsys.readouterr().err}"


@pytest.mark.parametrize("flags, code", [("--lr -1", 1), ("--batch 0", 2)])  # train.py's check, argparse's
def test_under_torchrun_a_mistake_on_the_command_line_is_reported_by_rank_0_alone(flags, code, capsys, monkeypatch):
    argv = ["--name", "unused", "--path", "unused", *flags.split()]
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit) as first:
        train.main(argv)
    assert flags.split()[0] in f"{first.value} {capsys.readouterr().err}"
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit) as other:
        train.main(argv)
    assert other.value.code == code and capsys.readouterr() == ("", "")


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_checkpoint_that_runs_code_is_refused(tmp_path, synthetic_lmdb, monkeypatch):
    marker = str(tmp_path / "code_ran")
    os.makedirs(tmp_path / "checkpoint" / NAME)
    torch.save({"g": RunsCode(marker), "g_ema": {}}, tmp_path / "checkpoint" / NAME / "000010.pt")
    message = refusal(monkeypatch, tmp_path, synthetic_lmdb, "--ckpt", "000010.pt", "--iter", "12")
    # what torch refused: "Trying to load unsupported GLOBAL posix.mkdir" from torch 2.6 on,
    # "WeightsUnpickler error: Unsupported global: GLOBAL posix.mkdir was not ..." before
    assert "can load safely (" in message and "GLOBAL posix.mkdir" in message.split("can load safely (")[1]
    assert "add_safe_globals" not in message  # torch's advice to allow it, which this project does not take
    assert not os.path.exists(marker)


def test_non_finite_losses_stop_the_run_and_keep_the_last_checkpoint(trained, tmp_path, synthetic_lmdb, monkeypatch):
    cwd = copy_run(trained, tmp_path)
    checkpoint = load_checkpoint(os.path.join(cwd, "checkpoint", NAME, "000002.pt"))
    checkpoint["d"]["final_linear.1.bias"].fill_(float("nan"))
    torch.save(checkpoint, os.path.join(cwd, "checkpoint", NAME, "000010.pt"))
    message = refusal(
        monkeypatch, cwd, synthetic_lmdb, *"--ckpt 000010.pt --iter 14 --save_every 2 --log_every 2".split()
    )
    assert "iteration 12" in message and "non-finite" in message and "000010.pt" in message
    assert checkpoints(cwd) == ["000002.pt", "000010.pt"]


def test_sigterm_saves_a_loadable_checkpoint_and_exits_cleanly(tmp_path, synthetic_lmdb):
    command = [
        sys.executable,
        TRAIN,
        "--name",
        NAME,
        "--path",
        synthetic_lmdb,
        *TINY,
        *"--workers 1 --iter 100000 --log_every 1 --save_every 100000 --sample_every 100000".split(),
    ]
    # its own process group: the signal goes to the loader worker too, as a job scheduler's does
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    log_path = tmp_path / "checkpoint" / NAME / "log.jsonl"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if log_path.exists() and log_path.read_text().strip():  # at least one iteration done
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 0, stderr
    assert "SIGTERM" in stderr
    (name,) = checkpoints(tmp_path)
    last_logged = read_log(tmp_path)[-1]["iter"]
    assert name == f"{last_logged:06d}.pt"
    checkpoint = load_checkpoint(str(tmp_path / "checkpoint" / NAME / name))
    build_generator(checkpoint["args"]).load_state_dict(checkpoint["g"])  # strict: a missing or unexpected key raises


def test_two_ranks_with_gloo_keep_identical_generators_print_no_warning_and_leave_together(tmp_path, synthetic_lmdb):
    # Each rank saves the generator it ends with, to compare them (only rank 0 writes outputs).
    # Rank 0 writes the last checkpoint slowly, as a large one on a slow disk would: a rank that
    # left before it was written would tear down its process group while rank 0 still ran, which
    # aborted about one finished torchrun in eight (SIGABRT). DDP warned of a deprecated argument
    # and of gradient strides in every run; users read such lines as something to fix.
    driver = tmp_path / "driver.py"
    driver.write_text(
        textwrap.dedent(f"""
        import os, sys, time
        import torch
        sys.path.insert(0, {ROOT!r})
        import train
        import training.loop
        from training.distributed import unwrap
        save_checkpoint = training.loop.save_checkpoint
        def slow_save_checkpoint(*args):
            time.sleep(1)
            save_checkpoint(*args)
        training.loop.save_checkpoint = slow_save_checkpoint
        trainer = train.main(sys.argv[1:])
        assert os.path.exists("checkpoint/{NAME}/000003.pt"), "a rank left before the last checkpoint was written"
        torch.save(unwrap(trainer.step.generator).state_dict(), f"rank{{os.environ['RANK']}}.pt")
    """)
    )
    command = [
        sys.executable,
        *"-m torch.distributed.run --nproc_per_node=2 --standalone".split(),
        str(driver),
        "--name",
        NAME,
        "--path",
        synthetic_lmdb,
        *TINY,
        *"--workers 0 --device cpu --iter 3 --log_every 1 --save_every 3 --sample_every 3".split(),
        *"--augment --ada_every 8".split(),
    ]
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr, result.stderr[-3000:]

    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    initial = build_generator(load_checkpoint(str(tmp_path / "checkpoint" / NAME / "000003.pt"))["args"])
    assert all(torch.equal(rank0[key], rank1[key]) for key in rank0)
    assert not torch.equal(rank0["conv1.conv.weight"], initial.state_dict()["conv1.conv.weight"])  # it trained
    log = read_log(tmp_path)
    assert [record["iter"] for record in log] == [1, 2, 3]
    assert all(math.isfinite(record["d"]) and math.isfinite(record["g"]) for record in log)
    assert checkpoints(tmp_path) == ["000003.pt"]
    with open(tmp_path / "checkpoint" / NAME / "config.json") as config_file:
        assert json.load(config_file)["world_size"] == 2


def test_every_spec_flag_is_accepted():
    args, _ = train.parse_args(
        ["--name", "EXP", "--path", "LMDB", "--position", "mspe"]
    )  # the original README's command
    assert (args.size, args.iter, args.batch, args.position, args.lr) == (256, 800000, 16, "mspe", 0.002)
    assert (args.r1, args.d_reg_every, args.mixing, args.n_sample) == (10, 16, 0.9, 64)

    flags = {
        "--iter": "10",
        "--batch": "8",
        "--n_sample": "16",
        "--size": "64",
        "--r1": "5",
        "--path_regularize": "1",
        "--path_batch_shrink": "4",
        "--d_reg_every": "8",
        "--g_reg_every": "4",
        "--mixing": "0.5",
        "--ckpt": "550000.pt",
        "--lr": "0.001",
        "--channel_multiplier": "1",
        "--local_rank": "0",
        "--augment_p": "0.2",
        "--ada_target": "0.7",
        "--ada_length": "1000",
        "--ada_every": "64",
        "--kernel_size": "1",
        "--translate": "0.5",
        "--channel_max": "128",
        "--device": "cpu",
        "--precision": "bf16",
        "--save_every": "5",
        "--sample_every": "5",
        "--keep": "3",
        "--log_every": "2",
        "--workers": "2",
        "--seed": "7",
        "--latent": "64",
        "--n_mlp": "4",
        "--position": "sspe",
        "--modconv": "plain",
    }
    switches = ["--wandb", "--augment", "--channels_last", "--affine", "--compile"]
    argv = ["--name", "EXP", "--path", "LMDB", *[token for item in flags.items() for token in item], *switches]
    args, explicit = train.parse_args(argv)
    for flag, value in flags.items():
        parsed = getattr(args, flag[2:])
        assert parsed == type(parsed)(value), flag
    assert all(getattr(args, switch[2:]) for switch in switches)
    assert {"size", "position", "channel_max"} <= explicit

    with pytest.raises(SystemExit, match="--batch 6: .* batch of at most 4 or a multiple of 4"):
        train.parse_args(["--name", "EXP", "--path", "LMDB", "--batch", "6"])
    with pytest.raises(SystemExit, match="--batch 12: .*--mbstd_group 8.* a multiple of 8"):
        train.parse_args(["--name", "EXP", "--path", "LMDB", "--batch", "12", "--mbstd_group", "8"])
    assert train.parse_args(["--name", "EXP", "--path", "LMDB", "--batch", "6", "--mbstd_group", "2"])[0].batch == 6


def test_the_step_owns_the_hyperparameter_defaults():
    """train.py's flags named like a StepSettings field default to that field (those left to the
    architecture's recipe default to None), so a bare command line trains with StepSettings()."""
    defaults = gan.StepSettings()
    flag_defaults = {action.dest: action.default for action in train.build_parser()._actions}
    shared = [field.name for field in dataclasses.fields(defaults) if field.name in flag_defaults]
    assert {"lr", "latent", "mixing", "r1", "d_reg_every", "path_regularize", "g_reg_every"} <= set(shared)
    for name in shared:
        if flag_defaults[name] is not None or name == "d_lr":
            assert flag_defaults[name] == getattr(defaults, name), name
    args, _ = train.parse_args(["--name", "EXP", "--path", "LMDB"])
    gan.apply_recipe(args, explicit=set(), resumed=False, world_size=1)
    assert gan.StepSettings.from_args(args) == dataclasses.replace(
        defaults, blur_fade_iterations=args.blur_fade_iterations
    )


def test_keep_prunes_the_oldest_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "checkpoint" / NAME
    folder.mkdir(parents=True)
    for name in ["000002.pt", "000004.pt", "000010.pt", "000008.pt", "config.json", "best.pt"]:
        (folder / name).write_bytes(b"")
    prune_checkpoints(os.path.join("checkpoint", NAME), keep=2)
    assert sorted(os.listdir(folder)) == ["000008.pt", "000010.pt", "best.pt", "config.json"]


def test_lazy_regularisation_corrects_adam():
    args, _ = train.parse_args(["--name", "EXP", "--path", "LMDB", "--g_reg_every", "4"])
    settings = gan.adam_settings(gan.StepSettings.from_args(args))
    assert settings["d"][0] == pytest.approx(0.002 * 16 / 17)
    assert settings["d"][1] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert settings["g"][0] == pytest.approx(0.002 * 4 / 5)
    # path length off, as in the original, whose G Adam is still built for its interval of 4
    args, _ = train.parse_args(["--name", "EXP", "--path", "LMDB"])
    lr, betas = gan.adam_settings(gan.StepSettings.from_args(args))["g"]
    assert lr == pytest.approx(0.0016) and betas == pytest.approx((0.0, 0.99**0.8))
    # StyleGAN3's recipe, as NVIDIA's: no G regularisation interval, no correction
    args, explicit = train.parse_args(["--name", "EXP", "--path", "LMDB", "--arch", "stylegan3-t"])
    gan.apply_recipe(args, explicit, resumed=False, world_size=1)
    assert gan.adam_settings(gan.StepSettings.from_args(args))["g"] == (0.0025, (0.0, 0.99))


def tiny_step(*flags, device="cpu", **step_options):
    """training/gan.py's GANStep for the tiny model with `flags`, built on the CPU (the same
    initialisation everywhere) and moved to `device`; `step_options`: GANStep's keywords."""
    args, _ = train.parse_args(["--name", "x", "--path", "x", *TINY, *flags])
    models = gan.build_models(args, torch.device("cpu"), modconv=args.modconv)
    generator, discriminator, g_ema = (module.to(device) for module in models)
    settings = gan.StepSettings.from_args(args)
    g_optim, d_optim = gan.build_optimizers(generator, discriminator, settings)
    return gan.GANStep(generator, discriminator, g_ema, g_optim, d_optim, settings, **step_options)


@pytest.mark.parametrize(
    "flags",
    [
        ["--position", "none"],
        ["--position", "mspe"],
        ["--position", "mspe", "--modconv", "plain"],
        ["--arch", "swagan", "--position", "mspe"],
        ["--arch", "stylegan3-t", "--channel_max", "16"],
    ],
    ids=["none", "mspe", "mspe-plain", "swagan", "stylegan3-t"],
)
def test_training_and_generation_never_read_values_back_from_the_device(flags):
    """On a GPU, a value read back inside an iteration (.item(), float(), a shape that depends on
    data) makes the host wait for the device every step. Meta tensors have no values, so any such
    read raises here: iteration 0 runs R1 and the path-length penalty, iteration 1 neither; then the
    EMA generator renders a batch."""
    meta = torch.device("meta")
    step = tiny_step("--g_reg_every", "4", "--mixing", "0.9", *flags, device=meta)
    real = torch.empty(4, 3, 32, 32, device=meta)
    losses = set()
    for iteration in (0, 1):
        losses |= set(step(iteration, real))
    assert {"d", "r1", "g", "path_length"} <= losses
    with torch.no_grad():
        image, _ = step.g_ema([torch.empty(4, 32, device=meta)])  # generation, as bench.py times it
    assert image.shape == (4, 3, 32, 32)


@pytest.mark.parametrize("position", ["none", "mspe"])
def test_channels_last_runs_the_whole_synthesis_channels_last(position):
    """--channels_last with the plain modulated convolution: every styled convolution's output
    and the image are channels-last (no layer converts back and forth), and the image is the same."""
    args, _ = train.parse_args(["--name", "x", "--path", "x", *TINY, "--position", position])
    generator, _, _ = gan.build_models(args, torch.device("cpu"), modconv="plain")
    latents = [torch.randn(2, 32)]
    expected = generator(latents, randomize_noise=False)[0]
    gan.to_channels_last(generator)
    outputs = []
    for module in generator.modules():
        if isinstance(module, StyledConv):
            module.register_forward_hook(lambda _module, _input, output: outputs.append(output))
    image = generator(latents, randomize_noise=False)[0]
    assert len(outputs) == generator.num_layers
    assert all(output.is_contiguous(memory_format=torch.channels_last) for output in outputs)
    assert image.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(image, expected, rtol=1e-4, atol=1e-5)


def run_steps(channels_last, autocast=contextlib.nullcontext, steps=2, modconv="grouped", feature_dtypes=None):
    """Losses and g_ema after `steps` iterations; `feature_dtypes`, a list: gets the dtype of every
    feature map the generator's first styled convolution puts out."""
    step = tiny_step("--g_reg_every", "2", "--modconv", modconv, ada=AdaptiveAugment(p=0.5), autocast=autocast)
    if feature_dtypes is not None:
        step.generator.conv1.register_forward_hook(lambda module, inputs, output: feature_dtypes.append(output.dtype))
    if channels_last:
        gan.use_channels_last(step.generator, step.discriminator, step.g_ema)
    torch.manual_seed(1)
    random.seed(1)  # style mixing
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    if channels_last:
        real = real.contiguous(memory_format=torch.channels_last)
    history = []
    for i in range(steps):  # iteration 0 runs R1 and path-length regularisation
        losses = step(i, real)
        history.append({key: value.item() for key, value in losses.items()})
    return history, step.g_ema.state_dict()


def test_channels_last_and_plain_modconv_match_fp32_and_bf16_trains(monkeypatch):
    plain_losses, plain_ema = run_steps(channels_last=False)
    fast_losses, fast_ema = run_steps(channels_last=True)
    assert {"d", "g", "r1", "path"} <= set(plain_losses[0])
    for plain, fast in zip(plain_losses, fast_losses):
        for key in plain:
            assert fast[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-5), key
    for key in plain_ema:
        torch.testing.assert_close(fast_ema[key], plain_ema[key], rtol=1e-4, atol=1e-5)

    plain_conv_losses, plain_conv_ema = run_steps(channels_last=False, modconv="plain")
    for plain, plain_conv in zip(plain_losses, plain_conv_losses):
        for key in plain:
            assert plain_conv[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-5), key
    for key in plain_ema:
        torch.testing.assert_close(plain_conv_ema[key], plain_ema[key], rtol=1e-4, atol=1e-5)

    monkeypatch.setattr(gan.conv2d_gradfix, "enabled", True)  # restored after the test
    args, _ = train.parse_args(["--name", "x", "--path", "x", "--precision", "bf16"])
    autocast = train.configure_precision(args, torch.device("cpu"))
    feature_dtypes = []
    bf16_losses, _ = run_steps(channels_last=False, autocast=autocast, feature_dtypes=feature_dtypes)
    # feature maps in bfloat16: the losses alone agree with fp32's within the tolerance below even without autocast
    assert set(feature_dtypes) == {torch.bfloat16}
    assert all(math.isfinite(value) for losses in bf16_losses for value in losses.values())
    assert bf16_losses[0]["d"] == pytest.approx(plain_losses[0]["d"], rel=0.05)


def test_compiled_step_traces_whole_graphs_and_one_per_phase(monkeypatch):
    """--compile trains: the generator and discriminator trace without graph breaks, each phase
    runs a graph traced for it (PyTorch 2.11 reused the frozen generator's graph in the generator
    phase: no gradient), and style mixing's random layer does not compile a new graph per value.
    The aot_eager backend traces autograd ahead of time as inductor does, without code
    generation."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    step = tiny_step("--position", "mspe", "--mixing", "0.9", compile=True)
    generator = step.generator
    random.seed(0)
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    start = generator.conv1.conv.weight.detach().clone()
    for iteration in range(12):  # mixing at several layers, and without
        step(iteration, real)
    torch._dynamo.reset()
    assert not counters["graph_break"], dict(counters["graph_break"])
    # both models compiled, and at most two graphs a model: the generator without autograd (D
    # phase) and trained (G phase), the discriminator trained (D phase) and frozen (G phase); mixed
    # and unmixed batches alike
    assert 2 <= counters["stats"]["unique_graphs"] <= 4
    assert not torch.equal(generator.conv1.conv.weight, start)


def test_compiled_step_trains_under_ddp(tmp_path):
    """--compile under torchrun: dynamo compiles the models' own forward inside
    DistributedDataParallel, so the phases must differ in what every PyTorch guards (one gloo
    rank; aot_eager as in the test above)."""
    driver = tmp_path / "driver.py"
    driver.write_text(
        textwrap.dedent(f"""
        import functools, random, sys
        import torch
        sys.path.insert(0, {ROOT!r})
        import train
        from training import distributed, gan
        torch.compile = functools.partial(torch.compile, backend="aot_eager")
        torch.distributed.init_process_group("gloo")  # one rank: what torchrun sets up, as in train.py
        args, _ = train.parse_args(["--name", "x", "--path", "x", *{TINY!r}, "--position", "mspe"])
        generator, discriminator, g_ema = gan.build_models(args, torch.device("cpu"))
        settings = gan.StepSettings.from_args(args)
        g_optim, d_optim = gan.build_optimizers(generator, discriminator, settings)
        start = generator.conv1.conv.weight.detach().clone()
        step = gan.GANStep(
            distributed.wrap_ddp(generator, torch.device("cpu")),
            distributed.wrap_ddp(discriminator, torch.device("cpu")),
            g_ema, g_optim, d_optim, settings, compile=True,
        )
        random.seed(0)
        for iteration in range(3):
            step(iteration, torch.rand(4, 3, 32, 32) * 2 - 1)
        assert not torch.equal(generator.conv1.conv.weight, start)
        torch.distributed.destroy_process_group()
    """)
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--standalone", str(driver)]
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]


def test_compiled_unmixed_batches_render_as_uncompiled_ones():
    """Under --compile an unmixed batch is passed as two latents switching after the last layer;
    the images are those of the one-latent input, and the random draws that follow are the same."""
    args, _ = train.parse_args(["--name", "x", "--path", "x", *TINY, "--position", "mspe"])
    generator, _, _ = gan.build_models(args, torch.device("cpu"))
    images, next_draws = [], []
    for compiled in (False, True):
        random.seed(0)
        torch.manual_seed(0)
        latents, inject_index = gan.mixing_latents(4, 32, 0.0, generator.n_latent, "cpu", compiled)
        images.append(generator(latents, inject_index=inject_index, randomize_noise=False)[0])
        next_draws.append((random.random(), torch.rand(1)))
    assert len(latents) == 2
    assert torch.equal(images[0], images[1])
    assert next_draws[0] == next_draws[1]


def test_the_stylegan3_recipe_ramps_the_ema_up_as_nvidia_does():
    """NVIDIA's beta = 0.5 ** (batch / min(ema_nimg, cur_nimg * 0.05)) with ema_nimg = batch x 10k / 32:
    per step, a half-life of min(312.5, 0.05 x iteration) steps, whatever the batch."""
    args, explicit = train.parse_args(["--name", "EXP", "--path", "LMDB", "--arch", "stylegan3-t"])
    gan.apply_recipe(args, explicit, resumed=False, world_size=1)
    settings = gan.StepSettings.from_args(args)
    for iteration in (0, 1, 100, 6000, 7000):
        batch = 32
        nvidia = 0.5 ** (batch / max(min(batch * 10 / 32 * 1000, iteration * batch * 0.05), 1e-8))
        assert settings.ema_decay_at(iteration) == pytest.approx(nvidia, rel=1e-12, abs=1e-300)
    # StyleGAN2 keeps the original's constant decay
    args, explicit = train.parse_args(["--name", "EXP", "--path", "LMDB"])
    assert gan.StepSettings.from_args(args).ema_decay_at(0) == gan.EMA_DECAY


def test_r1_auto_scales_with_resolution_and_the_batch_of_all_ranks():
    def r1_of(*flags, world_size=1):
        args, explicit = train.parse_args(["--name", "EXP", "--path", "LMDB", *flags])
        gan.apply_recipe(args, explicit, resumed=False, world_size=world_size)
        return args.r1

    assert r1_of("--size", "32", "--batch", "8", "--r1", "auto") == pytest.approx(0.0256)
    assert r1_of("--size", "1024", "--batch", "32", "--r1", "auto") == pytest.approx(6.5536)
    # StyleGAN2-ADA's rule divides by the total batch: 4 GPUs of 8 are a batch of 32
    assert r1_of("--size", "1024", "--batch", "8", "--r1", "auto", world_size=4) == pytest.approx(6.5536)
    with pytest.raises(SystemExit):
        r1_of("--r1", "strong")


def test_path_length_penalty_keeps_the_gradient_through_the_batch_mean():
    """rosinality's and NVIDIA's target a = a_prev + 0.01 (mean |J^T y| - a_prev) is not detached:
    d penalty / d l_i = 2/N (l_i - a) - 2 decay/N^2 sum_j (l_j - a). Only the returned running
    mean is."""
    torch.manual_seed(0)
    latents = torch.randn(4, 3, 8, requires_grad=True)
    image = torch.einsum("bld,cd->bc", latents.pow(2), torch.randn(16, 8)).reshape(4, 1, 4, 4)
    previous_mean, decay = torch.tensor(0.3), 0.01
    torch.manual_seed(1)
    penalty, running_mean, lengths = gan.g_path_regularize(image, latents, previous_mean, decay)
    (grad_lengths,) = torch.autograd.grad(penalty, lengths)
    target = previous_mean + decay * (lengths.detach().mean() - previous_mean)
    deviation = lengths.detach() - target
    expected = 2 / 4 * deviation - 2 * decay / 16 * deviation.sum()
    torch.testing.assert_close(grad_lengths, expected)
    torch.testing.assert_close(running_mean, target)
    assert not running_mean.requires_grad


def test_r1_and_the_generator_augment_with_p_as_ada_just_tuned_it(monkeypatch):
    """rosinality's loop tunes ada_aug_p after the discriminator's step, and its R1 and generator
    steps augment with the new value."""
    ada = AdaptiveAugment(p=0.5, update_every=4, length=8)  # the first batch of 4 moves p by 0.5
    step = tiny_step(ada=ada)
    seen = []
    discriminator_input = step.discriminator_input
    monkeypatch.setattr(step, "discriminator_input", lambda images, p: seen.append(p) or discriminator_input(images, p))
    torch.manual_seed(0)
    step(0, torch.rand(4, 3, 32, 32) * 2 - 1)  # iteration 0 runs R1
    tuned = ada.p
    assert tuned != 0.5
    assert seen == [0.5, 0.5, tuned, tuned]  # fakes and reals for D, then R1's reals, G's fakes


# ---------------------------------------------------------------------------------------------
# three iterations against rosinality/stylegan2-pytorch's train.py


@pytest.fixture(scope="module")
def rosinality_run():
    """tests/data/rosinality_train_reference.pt holds what rosinality/stylegan2-pytorch (commit
    bef283a) computed on the CPU: its op/ without the CUDA extensions (upfirdn2d_native and
    fused_leaky_relu's CPU branch), its model.py's two channel tables capped at 8 (our
    --channel_max 8), nothing else changed.

    - `generator`, `discriminator`: the initial state of Generator(16, 16, 2, channel_multiplier=2)
      built after torch.manual_seed(0) and Discriminator(16, channel_multiplier=2) after
      torch.manual_seed(1); g_ema was a third Generator that accumulate(g_ema, generator, 0)
      set to the generator's parameters, as its __main__ does. `real_images`: three batches of 4
      torch.rand * 2 - 1 after torch.manual_seed(3).
    - `adam`: the learning rate, betas and eps of the two Adams built as its __main__ builds them
      for `settings` (its flags: lr 0.002, d_reg_every 2, g_reg_every 2, ...).
    - what train.train(args, ...) did for --iter 3 (iterations 0 to 2, R1 and path length at 0
      and 2), batch 4, mixing 0.9, r1 10, path_regularize 2, path_batch_shrink 2, no
      augmentation, after torch.manual_seed(4) and random.seed(4): `torch_draws` and
      `python_draws`, every value that torch.randn, torch.randn_like, Tensor.normal_,
      random.random and random.randint returned, in call order (the draws of torch rounded to
      float16 and the run fed the rounded values, so that they store in half the bytes; its
      first draw, sample_z of its sample grids, left out); `losses`, what its d_logistic_loss,
      d_r1_loss, g_nonsaturating_loss and g_path_regularize returned, in call order; `steps`, the
      optimiser of every step, and `grads`, the gradients at the first four (iteration 0's D,
      R1, G and path-length steps); `ema_decays`, the decay of each accumulate; and `final_*`,
      the parameters after the run. Its sample grid and checkpoint at iteration 0 were skipped.
    - `defaults`: its argparse defaults of the step's flags, `default_adam`: its two Adams for them.
    """
    return torch.load(os.path.join(ROOT, "tests", "data", "rosinality_train_reference.pt"), weights_only=True)


class ReplayedDraws:
    """Stands in for the training step's random draws: torch.randn (latents), torch.randn_like
    (the path-length probe), Tensor.normal_ (the generator's noise), random.random and
    random.randint (style mixing) return the values of rosinality's run, in its order, each only
    to the function and shape (or arguments) it was drawn by."""

    def __init__(self, torch_draws, python_draws, monkeypatch):
        self.torch_draws = [(kind, value.float()) for kind, value in torch_draws]
        self.python_draws = list(python_draws)
        monkeypatch.setattr(torch, "randn", lambda *size, device=None: self.next_tensor("randn", size))
        monkeypatch.setattr(torch, "randn_like", lambda tensor: self.next_tensor("randn_like", tensor.shape))
        # a function, not the bound method: it binds to each tensor as its method
        monkeypatch.setattr(torch.Tensor, "normal_", lambda tensor: self.fill_normal(tensor))
        monkeypatch.setattr(random, "random", lambda: self.next_number("random", ()))
        monkeypatch.setattr(random, "randint", lambda low, high: self.next_number("randint", (low, high)))

    def fill_normal(self, tensor):
        return tensor.copy_(self.next_tensor("normal_", tensor.shape))

    def next_tensor(self, function, size):
        expected_function, value = self.torch_draws.pop(0)
        assert (function, tuple(size)) == (expected_function, tuple(value.shape))
        return value.clone()

    def next_number(self, function, arguments):
        expected_function, expected_arguments, value = self.python_draws.pop(0)
        assert (function, arguments) == (expected_function, tuple(expected_arguments))
        return value


# Tolerances, about 3x the float32 differences measured (float32's eps is 1.2e-7):
# losses up to 3.0e-7 of their value (2.5 eps);
LOSS_RTOL = 1e-6
# gradients up to 6.9e-6 (58 eps) of their tensor's largest entry, at a noise strength, whose
# gradient is a sum over every pixel that mostly cancels (in float64 the two differ there by 46
# float64 eps);
GRAD_TOL_OF_MAX = 2e-5
# weights and EMA within 4 eps of their value plus 7e-9; the EMA is 3 eps off at 410 (a
# mapping weight stored / lr_mul) as ours lerps where rosinality's multiplies and adds. One step
# moves a weight by up to lr = 1.3e-3, the EMA by 0.0022 of that, 3e-6.
WEIGHT_RTOL, WEIGHT_ATOL = 1e-6, 1e-7


def losses_per_iteration(calls):
    """rosinality's loss calls ([(name, {figure: value})]) as one dict per iteration, each opened
    by the discriminator's loss."""
    iterations = []
    for name, figures in calls:
        if name == "d":
            iterations.append({})
        iterations[-1].update(figures)
    return iterations


def test_the_default_hyperparameters_are_rosinalitys_but_for_path_length(rosinality_run):
    """A bare command line trains as rosinality's train.py does by default, except that the
    path-length penalty is off, as in the original research code; G's Adam is still corrected for
    rosinality's interval of 4."""
    defaults, ours = rosinality_run["defaults"], gan.StepSettings()
    for name in ("lr", "mixing", "r1", "path_regularize", "path_batch_shrink", "d_reg_every"):
        assert getattr(ours, name) == defaults[name], name
    assert (ours.g_reg_every, defaults["g_reg_every"]) == (0, 4)
    generator, discriminator = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    for optimizer, key in zip(gan.build_optimizers(generator, discriminator, ours), ("g", "d")):
        group = optimizer.param_groups[0]
        assert (group["lr"], group["betas"], group["eps"]) == rosinality_run["default_adam"][key]
    assert all(ours.ema_decay_at(iteration) == decay for iteration, decay in enumerate(rosinality_run["ema_decays"]))


def test_three_iterations_train_as_rosinalitys_train_loop(rosinality_run, monkeypatch):
    """Iterations 0 to 2 of GANStep from rosinality's initial weights, real images and random
    draws: the same draws asked for in the same order, the same losses, gradients at every step
    of iteration 0, weights and EMA after iteration 2. Both run once in float64 (from the same
    draws) agreed to 1e-16: what differs in float32 is the rounding of sums taken in other orders
    (see the tolerances)."""
    reference = rosinality_run
    config = reference["config"]  # position "none": rosinality's has no positional encoding
    generator, discriminator, g_ema = gan.build_models(config, torch.device("cpu"))
    generator.load_state_dict(reference["generator"])
    discriminator.load_state_dict(reference["discriminator"])
    # rosinality's g_ema, a third Generator, has the generator's parameters but other stored noise
    # maps (unused in training; ours copies the generator's buffers at every EMA step)
    g_ema.load_state_dict(reference["generator"])
    settings = {key: value for key, value in reference["settings"].items() if key != "batch"}
    settings = gan.StepSettings(latent=config["latent"], **settings)
    g_optim, d_optim = gan.build_optimizers(generator, discriminator, settings)
    for optimizer, key in ((g_optim, "g"), (d_optim, "d")):
        group = optimizer.param_groups[0]
        assert (group["lr"], group["betas"], group["eps"]) == reference["adam"][key]
    step = gan.GANStep(generator, discriminator, g_ema, g_optim, d_optim, settings)

    steps = []  # (optimiser, {parameter: gradient}) at each optimiser step
    for key, optimizer, module in (("g", g_optim, generator), ("d", d_optim, discriminator)):

        def recording_step(optimizer_step=optimizer.step, key=key, module=module):
            grads = {name: param.grad.clone() for name, param in module.named_parameters() if param.grad is not None}
            steps.append((key, grads))
            return optimizer_step()

        monkeypatch.setattr(optimizer, "step", recording_step)
    draws = ReplayedDraws(reference["torch_draws"], reference["python_draws"], monkeypatch)
    losses = []
    for iteration, real_img in enumerate(reference["real_images"].float()):
        figures = step(iteration, real_img)
        if "path" in figures:
            figures["mean_path_length"] = step.mean_path_length
        losses.append(figures)
    assert not draws.torch_draws and not draws.python_draws
    assert [key for key, _ in steps] == reference["steps"]

    expected_losses = losses_per_iteration(reference["losses"])
    assert [set(figures) for figures in losses] == [set(figures) for figures in expected_losses]
    for figures, expected in zip(losses, expected_losses):
        for name, value in expected.items():
            torch.testing.assert_close(figures[name], value, rtol=LOSS_RTOL, atol=0, msg=name)
    for (_, grads), (_, expected_grads) in zip(steps, reference["grads"]):
        assert grads.keys() == expected_grads.keys()
        for name, expected in expected_grads.items():
            scale = expected.abs().max()
            torch.testing.assert_close(grads[name], expected, rtol=0, atol=GRAD_TOL_OF_MAX * scale, msg=name)
    for module, key in ((generator, "final_generator"), (discriminator, "final_discriminator"), (g_ema, "final_g_ema")):
        for name, param in module.named_parameters():
            expected = reference[key][name]
            torch.testing.assert_close(
                param.detach(), expected, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, msg=f"{key} {name}"
            )
