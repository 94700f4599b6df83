"""The training loop around any training step: data, logs, sample grids, checkpoints, signals,
resuming, several ranks. train.py runs it with training/gan.py's GANStep, or for --arch ddpm with
training/diffusion.py's DiffusionStep.

A step is a callable `step(iteration, images) -> {loss name: scalar tensor on the device}` with:

    state_dict() / load_state_dict(checkpoint, source, config)   its checkpoint entries
    rank_state() / load_rank_state(state, device)                 what differs between ranks
    log_record()               extra figures for the log ({name: float})
    trained_networks()         the optimised modules, whose weights must stay finite
    saved_networks()           the modules a checkpoint stores (to size it)
    sample_inputs(count, rng), sample(inputs)   the fixed inputs of the sample grids, their images
    progress_keys              {label: log key} shown on the progress bar
    stability_advice           what to change when training diverges ("a lower --lr")

Outputs of an experiment --name: checkpoint/<name>/<iter>.pt (checkpoint.py knows that layout),
checkpoint/<name>/config.json and log.jsonl, sample/<name>/<iter:06d>.png. A checkpoint holds
every RNG state, the data order's position and the sample inputs, so that a resumed run is the
run it continues (bit for bit on the CPU).
"""

import argparse
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils import data
from tqdm import tqdm

from checkpoint import (
    LATEST,
    check_writable,
    checkpoint_bytes,
    checkpoint_iteration,
    checkpoint_path,
    experiment_dir,
    is_weights_only,
    load_checkpoint,
    load_latest_checkpoint,
    merge_model_config,
    numbered_checkpoints,
    remove_temporary_files,
    resolve_checkpoint,
    save_checkpoint,
)
from dataset import MultiResolutionDataset, ResumableSampler, SeededRecords, TrainTransform
from training import distributed
from utils.images import save_grid

# ---------------------------------------------------------------------------------------------
# where a run starts


@dataclass
class ResumePoint:
    """The checkpoint a run continues (path and contents; None for a fresh run) and the iteration
    it starts at."""

    path: str = None
    checkpoint: dict = None
    iteration: int = 0


def resume_point(args, explicit):
    """Where the run of `args` starts: --ckpt PATH (or a file name in checkpoint/<name>/), --ckpt
    latest (the newest checkpoint there that loads, or a fresh start when there is none), or a
    fresh start. The checkpoint's model configuration fills every model flag not given
    (`explicit`: the flags given). A checkpoint with weights only (no optimiser states) starts a
    fine-tuning run at iteration 0, whose --position may differ (training/finetune.py). A run
    never starts behind checkpoints already in checkpoint/<name>/ (refuse_later_checkpoints). Returns
    None when --ckpt latest finds the run complete, so that a requeued job ends quietly."""
    rank = distributed.get_rank()
    if args.ckpt == LATEST:
        path, checkpoint = load_latest_checkpoint(experiment_dir(args.name), report=rank == 0)
        if checkpoint is None:
            if rank == 0:
                print(
                    f"--ckpt latest: {experiment_dir(args.name)} holds no checkpoint; starting afresh", file=sys.stderr
                )
            return ResumePoint()
    elif args.ckpt is not None:
        path = resolve_checkpoint(args.ckpt, args.name)
        checkpoint = load_checkpoint(path)
    else:
        refuse_later_checkpoints(args, 0)
        return ResumePoint()
    fine_tune = is_weights_only(checkpoint)
    if "args" in checkpoint:
        # a fine-tuning run may change --position: a warm start of PE from StyleGAN2 (training/finetune.py)
        new_position = args.position if fine_tune and "position" in explicit else None
        merge_model_config(checkpoint["args"], args, set(explicit) - {"position"} if new_position else explicit, path)
        if new_position:
            args.position = new_position
    iteration = 0 if fine_tune else checkpoint_iteration(path)
    if args.ckpt != LATEST:  # latest starts after every checkpoint that loads
        refuse_later_checkpoints(args, iteration, path)
    if iteration >= args.iter:
        if args.ckpt == LATEST:
            if rank == 0:
                print(f"{path} is at --iter {args.iter}: training is complete", file=sys.stderr)
            return None
        raise SystemExit(f"{path} is at iteration {iteration}, already at --iter {args.iter}; raise --iter to train on")
    if not fine_tune and rank == 0:  # fine-tuning says what it loaded itself (training/finetune.py)
        print(f"resuming from {path} at iteration {iteration}", file=sys.stderr)
    return ResumePoint(path, checkpoint, iteration)


def refuse_later_checkpoints(args, iteration, path=None):
    """Refuse a run starting at `iteration` (from `path`; None: a fresh start) when its folder
    already holds checkpoints numbered past it. They belong to another run, or to the rest of
    the one resumed: `--ckpt latest` would later resume them instead of this run, and --keep
    would delete this run's checkpoints first."""
    folder = experiment_dir(args.name)
    later = [name for name in numbered_checkpoints(folder) if checkpoint_iteration(name) > iteration]
    if not later:
        return
    names = [os.path.basename(name) for name in reversed(later)]
    names = ", ".join(names) if len(names) <= 3 else f"{names[0]}, ..., {names[-1]} ({len(names)} checkpoints)"
    if path is None or iteration == 0:
        start = "a fresh start" if path is None else f"a start at iteration 0 from {path}"
        raise SystemExit(
            f"{folder} already holds the checkpoints {names} of a run, which {start} would mix with its own: "
            "resume that run with --ckpt latest, or start this one under another --name"
        )
    raise SystemExit(
        f"{folder} holds {names}, past iteration {iteration} where {path} resumes, which this run would be mixed "
        f"with (--ckpt latest would resume {os.path.basename(later[0])}). To go on from iteration {iteration}, move "
        f"them out of {folder}; to go on from the newest, use --ckpt latest"
    )


# ---------------------------------------------------------------------------------------------
# data


def ignore_interrupts(_worker_id):
    """DataLoader workers leave Ctrl-C and SIGTERM to the main process, which saves and stops
    cleanly; both reach the workers too when a terminal or a job scheduler signals the whole
    process group."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def shut_down_workers(loader):
    """Stop the loader's worker processes now, not when it is garbage-collected. They ignore
    SIGTERM (ignore_interrupts), so after an exception, whose traceback keeps the loader alive,
    multiprocessing's exit handler would wait for them forever: a crashed run would hang."""
    iterator = loader._iterator  # the persistent workers' iterator; PyTorch has no public close
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None


def make_loader(args, device):
    """Per-rank batches of --batch from the LMDB --path at --size, circularly translated by
    --translate and flipped, as (images, records skipped per image): DistributedSampler's order
    (one rank: the whole dataset), resumable inside a pass, each image's random transform seeded
    by (--seed, pass, index), so the batches are the same for any --workers."""
    rank, world_size = distributed.get_rank(), distributed.get_world_size()
    try:
        dataset = MultiResolutionDataset(args.path, TrainTransform(translate=args.translate), args.size)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(str(error)) from None
    sampler = ResumableSampler(len(dataset), num_replicas=world_size, rank=rank, seed=args.seed)
    loader = data.DataLoader(
        SeededRecords(dataset, args.seed),
        batch_size=args.batch,
        sampler=sampler,
        # the loader's own draw (its workers' base seed) comes from here, not from torch's global
        # RNG, which the training step draws from
        generator=torch.Generator().manual_seed(args.seed),
        num_workers=args.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
        worker_init_fn=ignore_interrupts,
    )
    if batches_per_pass(loader) == 0:
        raise SystemExit(
            f"{args.path} holds {len(dataset)} images: less than one batch of {args.batch} for each of "
            f"{world_size} rank(s). Lower --batch or use a larger dataset."
        )
    return loader


def batches_per_pass(loader):
    return loader.sampler.num_samples // loader.batch_size


def sample_data(loader, epoch=0, position=0):
    """Batches forever from item `position` of pass `epoch` on, a new shuffle every pass; yields
    (epoch, position after the batch, batch)."""
    while True:
        loader.sampler.set_epoch(epoch, position)
        for batch in loader:
            position += loader.batch_size
            yield epoch, position, batch
        epoch, position = epoch + 1, 0


# ---------------------------------------------------------------------------------------------
# random number generators


def rng_state(device):
    """Every RNG the training loop draws from in this process: Python's (style mixing), NumPy's,
    torch's on the CPU and, on CUDA, this rank's GPU (latents, noise, augmentation)."""
    numpy_state = np.random.get_state(legacy=False)
    # a tensor, not a NumPy array: checkpoints load with weights_only=True
    key = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    state = {
        "python": random.getstate(),
        "numpy": {**numpy_state, "state": {**numpy_state["state"], "key": key}},
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device):
    """Restore what rng_state returned (a CUDA state only on CUDA)."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    key = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state({**numpy_state, "state": {**numpy_state["state"], "key": key}})
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_rngs(seed, rank, start_iter):
    """Seed torch's and Python's RNGs for one rank of a run starting at `start_iter`: models start
    identical on every rank (they are built before), but noise, mixing and augmentation differ per
    rank, and per run resumed from a checkpoint without RNG states."""
    seed = int(np.random.SeedSequence([seed, rank, start_iter]).generate_state(1)[0])
    torch.manual_seed(seed)
    random.seed(seed)


# ---------------------------------------------------------------------------------------------
# logs, signals, checkpoints


class LossMeter:
    """Per-step loss tensors summed on the device; averaged over steps and ranks when read.

    Adding never waits for the device. A non-finite loss anywhere in an interval makes its mean
    non-finite, which is how the training loop notices.
    """

    def __init__(self):
        self.sums, self.counts = {}, {}

    def add(self, losses):
        for key, value in losses.items():
            self.sums[key] = self.sums[key] + value.float() if key in self.sums else value.float()
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self):
        """{name: mean over steps and ranks} as floats, then start a new interval."""
        keys = sorted(self.sums)
        if not keys:
            return {}
        stacked = torch.stack([self.sums[key] / self.counts[key] for key in keys])
        values = distributed.reduce_mean(stacked).tolist()
        self.sums, self.counts = {}, {}
        return dict(zip(keys, values))

    def all_finite(self):
        """Whether every loss so far in this interval is finite, on every rank."""
        if not self.sums:
            return True
        bad = sum((~torch.isfinite(value)).int() for value in self.sums.values())
        return distributed.reduce_sum(bad).item() == 0


class StopRequest:
    """SIGINT/SIGTERM ask training to stop after the current iteration (with a checkpoint).

    A second signal gets the default behaviour, so a stuck run can still be interrupted.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal_name = None
        self.previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}

    def _handle(self, signum, _frame):
        self.signal_name = signal.Signals(signum).name
        for restored in self.SIGNALS:
            signal.signal(restored, self.previous[restored])

    def agreed(self):
        """True on every rank as soon as any rank got a signal (all stop at the same iteration)."""
        return distributed.any_rank(self.signal_name is not None)

    def restore(self):
        for signum in self.SIGNALS:
            signal.signal(signum, self.previous[signum])


def logged_iteration(line):
    """The iteration of a log.jsonl line; infinity for a line torn by a kill mid-write."""
    try:
        return json.loads(line)["iter"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def trim_log(path, iteration):
    """Drop the records of the log.jsonl at `path` past `iteration` (and torn lines): a run killed
    after its last checkpoint logged iterations that the resumed run logs again."""
    if not os.path.exists(path):
        return
    with open(path) as log_file:
        lines = log_file.readlines()
    kept = [line for line in lines if logged_iteration(line) <= iteration]
    if len(kept) == len(lines):
        return
    temporary = path + ".tmp"
    with open(temporary, "w") as log_file:
        log_file.writelines(kept)
    os.replace(temporary, path)


def prune_checkpoints(folder, keep):
    """Delete all but the newest `keep` numbered checkpoints of `folder` (0 keeps all)."""
    if keep <= 0:
        return
    for path in numbered_checkpoints(folder)[keep:]:
        os.remove(path)


def nonfinite_parameters(*modules):
    """Names of the parameters of `modules` that hold a nan or inf (one device sync in all)."""
    named = [(name, parameter) for module in modules for name, parameter in module.named_parameters()]
    finite = torch.stack([torch.isfinite(parameter).all() for _, parameter in named]).tolist()
    return [name for (name, _), ok in zip(named, finite) if not ok]


# ---------------------------------------------------------------------------------------------
# the loop


class Trainer:
    """The training loop around a step (see the module docstring): data, logs, samples,
    checkpoints, signals. `args` is the training command line, stored in every checkpoint."""

    def __init__(self, args, step, device):
        self.args = args
        self.step = step
        self.device = device
        self.rank = distributed.get_rank()
        self.world_size = distributed.get_world_size()
        self.folder = experiment_dir(args.name)
        self.meter = LossMeter()
        self.start_iter = 0
        # the newest checkpoint known to be good: the run's starting point, then each one saved
        self.last_saved = None
        self.last_logged = {}
        # the same sample inputs for every grid of the run, resumed or not
        self.sample_inputs = step.sample_inputs(args.n_sample, torch.Generator().manual_seed(args.seed)).to(device)
        # where the data stands: the pass, the items of it trained on (this rank's), and how many
        # records of it could not be decoded
        self.epoch, self.position, self.bad_records = 0, 0, 0

    def resume(self, point, loader):
        """Start at `point` (a ResumePoint) exactly where its checkpoint stopped: the step's state,
        the data order's position, this rank's RNGs and per-rank state, the sample inputs.
        Checkpoints without them (older ones, rosinality's) restart the pass they are in with
        fresh RNG seeds. A fresh run starts at iteration 0 with fresh seeds. Rank 0 also checks
        that its outputs can be written and clears what a killed run left there."""
        self.start_iter, self.last_saved = point.iteration, point.path
        checkpoint = point.checkpoint or {}
        if point.checkpoint is not None:
            self.step.load_state_dict(checkpoint, point.path, self.args)
        self.prepare_outputs()
        seed_rngs(self.args.seed, self.rank, self.start_iter)

        data_state = checkpoint.get("data")
        if data_state is not None and data_state["world_size"] == self.world_size:
            self.epoch, self.position = data_state["epoch"], data_state["position"]
        else:
            self.epoch = self.start_iter // batches_per_pass(loader)
        sample_inputs = checkpoint.get("sample_z")
        if sample_inputs is not None and sample_inputs.shape == self.sample_inputs.shape:
            self.sample_inputs = sample_inputs.to(self.device)
        rank_states = checkpoint.get("rank_states") or []
        if data_state is None or self.rank >= len(rank_states):
            return
        state = rank_states[self.rank]
        set_rng_state(state["rng"], self.device)
        self.bad_records = state["bad_records"]
        self.step.load_rank_state(state, self.device)

    def prepare_outputs(self):
        """Rank 0: prove checkpoint/<name> and sample/<name> writable, with room for a checkpoint,
        now rather than at the first save; remove what saves killed mid-write left; drop log
        records past the start; write config.json; start wandb."""
        if self.rank != 0:
            return
        args = self.args
        check_writable(self.folder, checkpoint_bytes(self.step.saved_networks(), self.step.trained_networks()))
        check_writable(os.path.join("sample", args.name))
        remove_temporary_files(self.folder)
        trim_log(os.path.join(self.folder, "log.jsonl"), self.start_iter)
        config = {**vars(args), "device": str(self.device), "world_size": self.world_size}
        with open(os.path.join(self.folder, "config.json"), "w") as config_file:
            json.dump(config, config_file, indent=2, sort_keys=True)
        if args.wandb:
            try:
                import wandb
            except ImportError:
                raise SystemExit("--wandb needs the wandb package: pip install wandb (or drop --wandb)") from None
            wandb.init(project="spatially unbiased stylegan2", name=args.name, config=vars(args))

    def rank_state(self):
        """What differs between ranks and an exact resume needs: RNGs, bad records, the step's."""
        return {"rng": rng_state(self.device), "bad_records": self.bad_records, **self.step.rank_state()}

    def checkpoint(self, rank_states):
        return {
            **self.step.state_dict(),
            "args": argparse.Namespace(**vars(self.args)),
            "sample_z": self.sample_inputs.cpu(),
            "data": {"epoch": self.epoch, "position": self.position, "world_size": self.world_size},
            "rank_states": rank_states,
        }

    def save(self, iteration):
        """Write checkpoint <iteration>.pt (rank 0) unless the state went non-finite."""
        self.stop_if_nonfinite(iteration)
        path = checkpoint_path(self.args.name, iteration)
        rank_states = distributed.all_gather_object(self.rank_state())
        if self.rank == 0:
            save_checkpoint(self.checkpoint(rank_states), path)
            prune_checkpoints(self.folder, self.args.keep)
        self.last_saved = path

    def count_bad_records(self, epoch, position, skipped, loader):
        """Account for a batch of pass `epoch` (items up to `position`) with `skipped` records that
        could not be decoded; True on every rank once any rank's share of bad records in this
        pass passes --max_bad_records."""
        if epoch != self.epoch:
            self.bad_records = 0
        self.epoch, self.position = epoch, position
        self.bad_records += int(skipped.sum())
        return distributed.any_rank(self.bad_records > self.args.max_bad_records * loader.sampler.num_samples)

    def stop_if_nonfinite(self, iteration, values=None):
        """End the run with a clear message when losses or weights stopped being finite."""
        losses_finite = self.meter.all_finite() if values is None else all(math.isfinite(v) for v in values.values())
        bad_parameters = nonfinite_parameters(*self.step.trained_networks())
        if losses_finite and not distributed.any_rank(bad_parameters):
            return
        what = "the losses" if not losses_finite else "the weights"
        if values is not None and not losses_finite:
            bad_losses = [f"{key} {value}" for key, value in values.items() if not math.isfinite(value)]
            what += f" ({', '.join(bad_losses)})"
        if bad_parameters:
            what += f"; non-finite parameters include {', '.join(bad_parameters[:3])}"
        last = self.last_saved
        advice = (
            f"The last good checkpoint is {last}: resume from it (--ckpt {last}) with {self.step.stability_advice}."
            if last
            else "No checkpoint was written; start again with a lower --lr."
        )
        raise SystemExit(f"training stopped at iteration {iteration}: {what} became non-finite (nan or inf). {advice}")

    def log(self, iteration, images, seconds, pbar):
        """Average the interval's losses over ranks; print, append to log.jsonl, wandb."""
        values = self.meter.means()
        self.stop_if_nonfinite(iteration, values)
        record = {"iter": iteration, **{key: round(value, 6) for key, value in values.items()}}
        record.update(self.step.log_record())
        record["images_per_s"] = round(images / seconds, 2) if seconds > 0 else None
        bad_records = int(distributed.reduce_sum(torch.tensor(self.bad_records)))
        if bad_records:
            record["bad_records"] = bad_records  # in this pass, replaced by their neighbours
        self.last_logged.update(record)
        if self.rank != 0:
            return
        with open(os.path.join(self.folder, "log.jsonl"), "a") as log_file:
            log_file.write(json.dumps(record) + "\n")
        shown = self.last_logged
        figures = [f"{label}: {shown.get(key, 0):.4f}" for label, key in self.step.progress_keys.items()]
        pbar.set_description("; ".join([*figures, f"{shown.get('images_per_s') or 0:.1f} img/s"]))
        if self.args.wandb:
            import wandb

            wandb.log(record, step=iteration)

    def sample(self, iteration):
        """The step's images of the fixed sample inputs, as sample/<name>/<iteration>.png (rank 0)."""
        if self.rank != 0:
            return
        # the sampler's random draws come from forked RNGs: a grid never changes the training that follows
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            images = torch.cat([self.step.sample(inputs) for inputs in self.sample_inputs.split(self.args.batch)])
        nrow = max(1, int(round(math.sqrt(self.args.n_sample))))
        save_grid(images, os.path.join("sample", self.args.name, f"{iteration:06d}.png"), nrow=nrow)

    def train(self, loader):
        """Iterations from the start (see resume) to --iter - 1; returns the iteration count reached."""
        args = self.args
        stop = StopRequest()
        batches = sample_data(loader, self.epoch, self.position)
        too_many_bad = False
        pbar = range(self.start_iter, args.iter)
        if self.rank == 0:
            pbar = tqdm(pbar, initial=self.start_iter, total=args.iter, dynamic_ncols=True, smoothing=0.01)
        done = self.start_iter
        interval_start, interval_iterations = time.perf_counter(), 0
        try:
            for i in pbar:
                if stop.agreed():
                    break
                epoch, position, (real_img, skipped) = next(batches)
                too_many_bad = self.count_bad_records(epoch, position, skipped, loader)
                real_img = real_img.to(self.device, non_blocking=True)
                if args.channels_last:
                    real_img = real_img.contiguous(memory_format=torch.channels_last)
                self.meter.add(self.step(i, real_img))
                done = i + 1
                interval_iterations += 1
                if too_many_bad:
                    break

                if done % args.log_every == 0 or done == args.iter:
                    now = time.perf_counter()
                    images = interval_iterations * args.batch * self.world_size
                    self.log(done, images, now - interval_start, pbar)
                    interval_start, interval_iterations = now, 0
                if done % args.sample_every == 0:
                    self.sample(done)
                if done % args.save_every == 0:
                    self.save(done)
        finally:
            stop.restore()
            shut_down_workers(loader)
            if self.rank == 0:
                pbar.close()

        if stop.signal_name is not None and self.rank == 0:
            print(f"{stop.signal_name}: saving iteration {done} and stopping", file=sys.stderr)
        if self.last_saved != checkpoint_path(args.name, done):
            self.save(done)
        if too_many_bad:
            raise SystemExit(
                f"training stopped at iteration {done} (saved): {self.bad_records} records of {args.path} in this "
                f"pass could not be decoded, more than --max_bad_records {args.max_bad_records} of "
                f"{loader.sampler.num_samples}. Prepare the dataset again (prepare_data.py), or raise "
                "--max_bad_records."
            )
        if stop.signal_name is None and done % args.sample_every:
            self.sample(done)  # the final grid; a stopped run exits as soon as it has saved
        return done
