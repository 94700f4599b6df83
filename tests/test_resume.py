"""Interrupted training loses nothing: exact resume, --ckpt latest, durable saves, faults.

Runs train.main in this process, or in forked children (no interpreter start-up per run) that
the fault test kills with SIGTERM and SIGKILL.
"""

import errno
import io
import json
import multiprocessing
import os
import random
import shutil
import signal
import time

import lmdb
import pytest
import torch

import checkpoint as checkpoint_module
import train
from checkpoint import load_checkpoint, load_latest_checkpoint, save_checkpoint
from dataset import MultiResolutionDataset, SeededRecords, TrainTransform, image_key
from training import gan

NAME = "tiny"
# 16 px, at most 8 channels, 8 images: an iteration takes milliseconds, a pass 4 iterations
TINY = [
    *"--size 16 --channel_max 8 --latent 8 --n_mlp 1 --batch 2 --n_sample 4 --translate 1.0".split(),
    *"--workers 0".split(),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lmdb16(tmp_path_factory):
    """An LMDB of 8 synthetic faces at 16 px."""
    from prepare_data import prepare

    out = str(tmp_path_factory.mktemp("faces16") / "lmdb")
    prepare(out, [16], n_synthetic=8, seed=0, n_worker=1, verbose=False)
    return out


def train_here(cwd, lmdb_path, *flags, name=NAME):
    """train.main in this process, in `cwd`; returns the Trainer."""
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        return train.main(["--name", name, "--path", lmdb_path, *TINY, *flags])
    finally:
        os.chdir(previous)


def refusal(cwd, lmdb_path, *flags):
    with pytest.raises(SystemExit) as stopped:
        train_here(cwd, lmdb_path, *flags)
    return str(stopped.value)


def folder(cwd, name=NAME):
    return os.path.join(cwd, "checkpoint", name)


def assert_same_state(a, b, what):
    """Bit-identical models, EMA, optimisers, ADA p, data position and RNG states."""
    for key in ("g", "d", "g_ema"):
        for tensor in a[key]:
            assert torch.equal(a[key][tensor], b[key][tensor]), f"{what}: {key}.{tensor} differs"
    for key in ("g_optim", "d_optim"):
        for index, state in a[key]["state"].items():
            for name, value in state.items():
                assert torch.equal(value, b[key]["state"][index][name]), f"{what}: {key} {index} {name} differs"
    assert a["ada_aug_p"] == b["ada_aug_p"], what
    assert a["data"] == b["data"], what
    assert torch.equal(a["rank_states"][0]["rng"]["torch"], b["rank_states"][0]["rng"]["torch"]), what


def read_bytes(path):
    with open(path, "rb") as file:
        return file.read()


# ---------------------------------------------------------------------------------------------
# exact resume


@pytest.mark.parametrize("workers", ["0", "1"])
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, lmdb16, workers):
    # 6 iterations of 4 per pass: the resume at 3 is inside a pass, between two ADA updates
    flags = [
        *"--augment --ada_every 4 --ada_length 100 --save_every 3 --sample_every 3 --log_every 3".split(),
        *"--workers".split(),
        workers,
    ]
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    whole.mkdir(), halves.mkdir()
    train_here(whole, lmdb16, *flags, "--iter", "6")
    train_here(halves, lmdb16, *flags, "--iter", "3")
    train_here(halves, lmdb16, *flags, "--iter", "6", "--ckpt", "latest")

    a, b = (load_checkpoint(os.path.join(folder(run), "000006.pt")) for run in (whole, halves))
    assert_same_state(a, b, f"--workers {workers}")
    assert a["ada_aug_p"] > 0  # ADA did move p
    assert read_bytes(whole / "sample" / NAME / "000006.png") == read_bytes(halves / "sample" / NAME / "000006.png")


def test_checkpoint_without_resume_state_still_resumes(tmp_path, lmdb16):
    train_here(tmp_path, lmdb16, "--iter", "4", "--save_every", "4")
    path = os.path.join(folder(tmp_path), "000004.pt")
    old = load_checkpoint(path)
    for key in ("data", "rank_states", "sample_z"):  # as the original and rosinality's write them
        del old[key]
    torch.save(old, path)
    trainer = train_here(tmp_path, lmdb16, "--iter", "6", "--save_every", "2", "--ckpt", "000004.pt")
    # as before: the pass that iteration 4 is in (4 iterations a pass) from its start
    assert (trainer.epoch, trainer.position) == (1, 4)
    assert os.path.exists(os.path.join(folder(tmp_path), "000006.pt"))


# ---------------------------------------------------------------------------------------------
# --ckpt latest and durable saves


def test_latest_skips_half_written_and_truncated_files(tmp_path, capsys):
    save_checkpoint({"g": {}, "n": 10}, str(tmp_path / "000010.pt"))
    (tmp_path / ".000020.pt.tmp").write_bytes(read_bytes(tmp_path / "000010.pt")[:100])  # a killed save
    whole = read_bytes(tmp_path / "000010.pt")
    (tmp_path / "000030.pt").write_bytes(whole[: len(whole) // 2])  # a writer that never fsynced
    path, checkpoint = load_latest_checkpoint(str(tmp_path))
    assert path == str(tmp_path / "000010.pt") and checkpoint["n"] == 10
    warning = capsys.readouterr().err
    assert "skipping" in warning and "000030.pt" in warning and "truncated" in warning
    assert load_latest_checkpoint(str(tmp_path), report=False)[0] == path  # the other ranks under torchrun
    assert capsys.readouterr().err == ""
    assert load_latest_checkpoint(str(tmp_path / "empty")) == (None, None)


def test_latest_starts_afresh_then_finishes_without_error(tmp_path, lmdb16, capsys):
    train_here(tmp_path, lmdb16, "--iter", "2", "--save_every", "2", "--ckpt", "latest")
    assert "starting afresh" in capsys.readouterr().err
    assert train_here(tmp_path, lmdb16, "--iter", "2", "--ckpt", "latest") is None  # a requeued, finished job
    assert "training is complete" in capsys.readouterr().err


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(tmp_path, lmdb16, monkeypatch):
    train_here(tmp_path, lmdb16, "--iter", "2", "--save_every", "2")

    class FullDisk(io.FileIO):
        """A file on a disk that fills up after 1000 bytes."""

        def write(self, data):
            if self.tell() + len(data) > 1000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    def open_on_full_disk(path, mode, buffering=-1):  # checkpoints only: the start-up test write passes
        return FullDisk(path, mode) if path.endswith(".pt.tmp") else open(path, mode, buffering)

    monkeypatch.setattr(checkpoint_module, "open", open_on_full_disk, raising=False)
    message = refusal(tmp_path, lmdb16, "--iter", "4", "--save_every", "2", "--ckpt", "latest")
    assert "000004.pt" in message and "No space left on device" in message and "intact" in message
    assert sorted(os.listdir(folder(tmp_path))) == ["000002.pt", "config.json", "log.jsonl"]  # no temporary file
    monkeypatch.undo()
    assert load_checkpoint(os.path.join(folder(tmp_path), "000002.pt"))["data"]["position"] == 4


def test_unwritable_output_or_no_room_is_found_at_start(tmp_path, lmdb16, monkeypatch):
    os.makedirs(tmp_path / "checkpoint")
    (tmp_path / "checkpoint" / NAME).write_text("a file where the folder should be")
    message = refusal(tmp_path, lmdb16, "--iter", "2")
    assert "cannot write to checkpoint/tiny" in message

    os.remove(tmp_path / "checkpoint" / NAME)
    almost_full = shutil._ntuple_diskusage(total=10**9, used=10**9 - 1000, free=1000)
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda path: almost_full)
    message = refusal(tmp_path, lmdb16, "--iter", "2")
    assert "MiB free" in message and "one checkpoint needs" in message
    assert not os.path.exists(os.path.join(folder(tmp_path), "log.jsonl"))  # stopped before training


# ---------------------------------------------------------------------------------------------
# records that cannot be decoded


@pytest.fixture
def damaged_lmdb(lmdb16, tmp_path):
    """A copy of lmdb16 whose record 5 is not an image."""
    path = str(tmp_path / "damaged")
    shutil.copytree(lmdb16, path)
    with lmdb.open(path, readonly=False) as env, env.begin(write=True) as txn:
        txn.put(image_key(16, 5), b"not an image")
    return path


def test_a_record_that_cannot_be_decoded_is_replaced_by_the_next(damaged_lmdb, capsys):
    records = SeededRecords(MultiResolutionDataset(damaged_lmdb, TrainTransform(translate=1.0), 16), seed=3)
    image, skipped = records[(5, 2)]
    substitute, none_skipped = records[(6, 2)]
    assert skipped == 1 and none_skipped == 0
    assert torch.equal(image, substitute)  # the same replacement, with the same random transform
    assert "record 5" in capsys.readouterr().err


def test_bad_records_are_counted_and_stop_training_past_the_threshold(tmp_path, damaged_lmdb):
    trainer = train_here(tmp_path, damaged_lmdb, "--iter", "4", "--log_every", "4", "--max_bad_records", "0.2")
    assert trainer.last_logged["bad_records"] == 1  # 1 of 8 records in the pass: under 0.2, trained on

    message = refusal(tmp_path, damaged_lmdb, "--iter", "8", "--ckpt", "latest", "--max_bad_records", "0.1")
    assert "could not be decoded" in message and "--max_bad_records 0.1" in message
    path, _ = load_latest_checkpoint(folder(tmp_path))
    assert int(os.path.basename(path)[:-3]) < 8  # stopped within the pass, with a checkpoint


# ---------------------------------------------------------------------------------------------
# checkpoints that cannot be resumed


def test_truncated_foreign_or_mismatched_checkpoints_are_refused(tmp_path, lmdb16):
    train_here(tmp_path, lmdb16, "--iter", "2", "--save_every", "2")
    good = read_bytes(os.path.join(folder(tmp_path), "000002.pt"))
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "foreign.pt").write_text("not a checkpoint\n")
    for name in ("truncated.pt", "foreign.pt"):
        message = refusal(tmp_path, lmdb16, "--iter", "4", "--ckpt", str(tmp_path / name))
        assert name in message and "cannot be read as a checkpoint" in message

    bigger = load_checkpoint(os.path.join(folder(tmp_path), "000002.pt"))
    del bigger["args"]  # a checkpoint of another size without its configuration, as the original wrote
    other = gan.build_models(argparse_namespace(size=32), torch.device("cpu"))[0]
    bigger["g"] = bigger["g_ema"] = other.state_dict()
    torch.save(bigger, tmp_path / "other.pt")
    os.remove(os.path.join(folder(tmp_path), "000002.pt"))  # a start at iteration 0 would be refused behind it
    message = refusal(tmp_path, lmdb16, "--iter", "4", "--ckpt", str(tmp_path / "other.pt"))
    assert "does not fit" in message and "size 16" in message
    assert "Unexpected key(s) in state_dict:" in message or "Missing key(s) in state_dict:" in message, message


def argparse_namespace(**config):
    args, _ = train.parse_args(["--name", NAME, "--path", "unused", *TINY[:8]])
    vars(args).update(config)
    return args


# ---------------------------------------------------------------------------------------------
# the fault test


def train_in(cwd, argv):
    os.chdir(cwd)
    torch.set_num_threads(1)
    train.main(argv)


def train_in_child(cwd, argv):
    """train.main(argv) in `cwd`, in a child forked from a fork server that imported train.py
    once: no interpreter start-up per run, and no threads of this process inherited."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["train"])
    process = context.Process(target=train_in, args=(str(cwd), argv))
    process.start()
    return process


def finish(process, seconds=300):
    process.join(seconds)
    if process.is_alive():
        process.kill()
        pytest.fail(f"a training run did not end within {seconds} s")


def crash_at_iteration_3(cwd, argv):
    """train_in, with a training step that raises at iteration 3 (as an out-of-memory error would)."""
    real_call = gan.GANStep.__call__

    def crashing_call(self, iteration, real_img):
        if iteration == 3:
            raise RuntimeError("a failure at iteration 3")
        return real_call(self, iteration, real_img)

    gan.GANStep.__call__ = crashing_call
    train_in(cwd, argv)


def train_with_stalled_saves(cwd, argv, stalled_path):
    """train_in, but every save after the first stops halfway and stalls before its rename."""
    real_save = checkpoint_module.torch.save
    saves = []

    def stalled_save(obj, file):
        saves.append(file)
        if len(saves) == 1:
            return real_save(obj, file)
        file.write(b"half a checkpoint")
        file.flush()
        open(stalled_path, "w").close()
        time.sleep(600)

    checkpoint_module.torch.save = stalled_save
    train_in(cwd, argv)


def test_sigkill_in_the_middle_of_a_save_keeps_the_previous_checkpoint(tmp_path, lmdb16):
    argv = ["--name", NAME, "--path", lmdb16, *TINY, "--iter", "4", "--save_every", "2", "--ckpt", "latest"]
    stalled = tmp_path / "stalled"
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["train"])
    process = context.Process(target=train_with_stalled_saves, args=(str(tmp_path), argv, str(stalled)))
    process.start()
    deadline = time.monotonic() + 120
    while not stalled.exists() and process.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    finish(process)
    assert stalled.exists()
    names = sorted(os.listdir(folder(tmp_path)))
    assert "000002.pt" in names and "000004.pt" not in names and ".000004.pt.tmp" in names

    process = train_in_child(tmp_path, argv)  # the requeued job
    finish(process)
    assert process.exitcode == 0
    assert sorted(name for name in os.listdir(folder(tmp_path)) if name.endswith((".pt", ".tmp"))) == [
        "000002.pt",
        "000004.pt",  # resumed from 2; the half-written file is gone
    ]


def test_a_run_that_crashes_exits_with_its_data_workers(tmp_path, lmdb16):
    # the workers ignore SIGTERM, so multiprocessing's exit handler could not stop them: the
    # crashed run used to hang at exit instead of failing
    argv = ["--name", NAME, "--path", lmdb16, *TINY, "--iter", "8", "--workers", "2"]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["train"])
    process = context.Process(target=crash_at_iteration_3, args=(str(tmp_path), argv))
    process.start()
    finish(process, seconds=60)
    assert process.exitcode == 1


def test_training_survives_random_sigterm_and_sigkill(tmp_path, lmdb16):
    iterations = 160
    argv = [
        "--name",
        NAME,
        "--path",
        lmdb16,
        *TINY,
        "--iter",
        str(iterations),
        *"--save_every 10 --sample_every 80 --log_every 40 --ckpt latest".split(),
    ]
    started = time.monotonic()
    reference = tmp_path / "reference"
    reference.mkdir()
    process = train_in_child(reference, argv)
    finish(process)
    assert process.exitcode == 0
    reference_seconds = time.monotonic() - started

    faulted = tmp_path / "faulted"
    faulted.mkdir()
    schedule = random.Random(12)
    faults = {"SIGTERM": 0, "SIGKILL": 0}
    final = os.path.join(folder(faulted), f"{iterations:06d}.pt")
    for attempt in range(40):  # noqa: B007 (the report below counts the runs)
        process = train_in_child(faulted, argv)
        if sum(faults.values()) < 10:  # then one run to the end
            process.join(schedule.uniform(0.03, 0.15) * reference_seconds)
            if process.is_alive():  # at a random moment: in start-up, an iteration, a save, a log...
                signum = (signal.SIGTERM, signal.SIGKILL)[sum(faults.values()) % 2]
                os.kill(process.pid, signum)
                faults[signal.Signals(signum).name] += 1
        finish(process)
        if process.exitcode == 0 and os.path.exists(final):
            break
    seconds = time.monotonic() - started
    figures = (
        f"survived {faults['SIGTERM']} SIGTERM and {faults['SIGKILL']} SIGKILL over {attempt + 1} runs of "
        f"{iterations} iterations; {seconds:.1f} s in all ({reference_seconds:.1f} s uninterrupted)"
    )
    print(figures)
    assert os.path.exists(final), figures
    assert_same_state(load_checkpoint(os.path.join(folder(reference), "000160.pt")), load_checkpoint(final), figures)
    grids = [read_bytes(run / "sample" / NAME / "000160.png") for run in (reference, faulted)]
    assert grids[0] == grids[1], figures
    assert faults["SIGTERM"] >= 1 and faults["SIGKILL"] >= 1, figures
    logged = [
        [json.loads(line)["iter"] for line in read_bytes(run / "checkpoint" / NAME / "log.jsonl").splitlines()]
        for run in (reference, faulted)
    ]
    assert logged[0] == logged[1] == [40, 80, 120, 160], figures  # no iteration logged twice
