"""Custom ops of StyleGAN2, each with a plain-PyTorch reference and a lazily built CUDA kernel."""

from . import conv2d_gradfix
from .fused_act import FusedLeakyReLU, fused_leaky_relu, fused_leaky_relu_ref
from .upfirdn2d import downsample_padding, transposed_conv_padding, upfirdn2d, upfirdn2d_ref, upsample_padding

__all__ = [
    "FusedLeakyReLU",
    "conv2d_gradfix",
    "downsample_padding",
    "fused_leaky_relu",
    "fused_leaky_relu_ref",
    "transposed_conv_padding",
    "upfirdn2d",
    "upfirdn2d_ref",
    "upsample_padding",
]
