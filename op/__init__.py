"""Custom ops of StyleGAN2, each with a plain-PyTorch reference and a lazily built CUDA kernel."""

from . import conv2d_gradfix
from .fused_act import FusedLeakyReLU, fused_leaky_relu, fused_leaky_relu_ref
from .upfirdn2d import upfirdn2d, upfirdn2d_ref

__all__ = [
    "FusedLeakyReLU",
    "conv2d_gradfix",
    "fused_leaky_relu",
    "fused_leaky_relu_ref",
    "upfirdn2d",
    "upfirdn2d_ref",
]
