"""Where and in which precision the models run (`--device`, `--precision`)."""

import contextlib

import torch

PRECISIONS = ("fp32", "tf32", "bf16")


def choose_device(name="auto"):
    """torch.device for 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def default_precision(device):
    """tf32 on CUDA, fp32 elsewhere."""
    return "tf32" if device.type == "cuda" else "fp32"


def setup_precision(precision, device):
    """Configure matmul/conv precision; return a context-manager factory for the forward passes.

    fp32: exact float32. tf32: float32 storage with TF32 tensor-core math on CUDA (same as
    fp32 on CPU). bf16: autocast to bfloat16 (feature maps bfloat16 between layers; the
    generator's RGB images, losses, R1 and EMA stay float32).
    On CUDA, cuDNN also times its convolution algorithms once per shape and keeps the fastest
    (training repeats the same shapes; NVIDIA's StyleGAN2-ADA does the same).
    """
    if precision not in PRECISIONS:
        raise SystemExit(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if device.type == "cuda":
        allow_tf32 = precision != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        torch.backends.cudnn.allow_tf32 = allow_tf32
        torch.backends.cudnn.benchmark = True
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext
