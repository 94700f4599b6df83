"""Multi-process training under torchrun, and the same calls as no-ops in a single process.

    torchrun --nproc_per_node=N train.py ...

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; `setup` joins the process group (NCCL on GPUs,
gloo on CPU). Every helper works unchanged without a process group, so train.py has one code path.
"""

import contextlib
import functools
import inspect
import os

import torch
from torch import distributed as dist
from torch import nn

from utils.device import choose_device

# A gloo group for small host-side agreements (e.g. "did any rank get SIGTERM?"): it never
# waits for the GPU, unlike a collective on the NCCL group.
_control_group = None


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return dist.get_rank() if is_distributed() else 0


def get_world_size():
    return dist.get_world_size() if is_distributed() else 1


def setup(device_name="auto", local_rank=0):
    """Join the torchrun process group when WORLD_SIZE > 1; return this process's torch.device.

    On CUDA each rank takes GPU LOCAL_RANK (`--local_rank` when the launcher passes it instead).
    """
    global _control_group
    device = choose_device(device_name)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device

    local_rank = int(os.environ.get("LOCAL_RANK", local_rank))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise SystemExit(
                f"rank {local_rank} needs GPU {local_rank}, but this machine has {torch.cuda.device_count()}; "
                "start at most one process per GPU (--nproc_per_node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", init_method="env://", device_id=device)
        _control_group = dist.new_group(backend="gloo")
    else:
        dist.init_process_group("gloo", init_method="env://")
        _control_group = dist.group.WORLD
    return device


@contextlib.contextmanager
def first_rank_reports():
    """Silence the block's output and error message on every rank but rank 0, keeping its exit:
    for work whose outcome is the same on every rank (checking the command line), so that a
    mistake is reported once, not once per process. The rank comes from torchrun's RANK, as the
    block may run before the process group exists."""
    if int(os.environ.get("RANK", "0")) == 0:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
            yield
    except SystemExit as error:  # a message as the code would be printed at exit: exit 1 instead
        raise SystemExit(error.code if isinstance(error.code, int) or error.code is None else 1) from None


def wait_for_all_ranks():
    """Return once every rank has called this (nothing without a process group)."""
    if is_distributed():
        dist.barrier(group=_control_group)


def cleanup():
    """Leave the process group (every rank, at the end of training)."""
    global _control_group
    if is_distributed():
        dist.destroy_process_group()
    _control_group = None


def reduce_sum(tensor):
    """Sum of `tensor` over all ranks (a copy; `tensor` itself is left alone)."""
    if not is_distributed():
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def reduce_mean(tensor):
    """Mean of `tensor` over all ranks."""
    return reduce_sum(tensor) / get_world_size()


def any_rank(flag):
    """True on every rank when `flag` is true on at least one (a host-side collective)."""
    if not is_distributed():
        return bool(flag)
    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_control_group)
    return bool(value.item())


def all_gather_object(value):
    """[value of rank 0, value of rank 1, ...] on every rank (picklable values; host-side)."""
    if not is_distributed():
        return [value]
    gathered = [None] * get_world_size()
    dist.all_gather_object(gathered, value, group=_control_group)
    return gathered


# Newer PyTorch renamed broadcast_buffers to forward_sync_buffers and warns on the old name;
# older releases lack the new one.
if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters:
    _NO_BUFFER_SYNC = {"forward_sync_buffers": False}
else:
    _NO_BUFFER_SYNC = {"broadcast_buffers": False}


def wrap_ddp(model, device):
    """DistributedDataParallel. Buffers (noise maps, PE tables) are equal on every rank, as the
    models are built from one seed or loaded from one checkpoint, and are never broadcast during
    training; newer PyTorch copies them from rank 0 once, at the wrap."""
    for parameter in model.parameters():
        if parameter.requires_grad and 1 in parameter.shape:
            parameter.register_hook(functools.partial(_strides_of, parameter))
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **_NO_BUFFER_SYNC)


def _strides_of(parameter, grad):
    """`grad`, given the strides of `parameter` where the two differ only on dimensions of size 1,
    which address nothing (a free view). DDP compares strides literally, and R1's summed gradient
    of the discriminator's [1, C] output weight comes back with strides (1, 1) instead of (C, 1),
    which made every torchrun print "Grad strides do not match bucket view strides"."""
    if grad.stride() == parameter.stride():  # nearly every call: return before comparing dimensions
        return grad
    same_layout = all(
        size == 1 or grad_stride == parameter_stride
        for size, grad_stride, parameter_stride in zip(grad.shape, grad.stride(), parameter.stride())
    )
    return grad.as_strided(grad.shape, parameter.stride()) if same_layout else grad


def unwrap(model):
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
