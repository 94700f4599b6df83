"""Custom ops of StyleGAN2 and StyleGAN3, each with a plain-PyTorch reference and an `impl`
switch: lazily built CUDA kernels (upfirdn2d, fused_leaky_relu, and filtered_lrelu through
them) or hand-written derivatives (conv2d_gradfix, grid_sample)."""

from . import _plugin, conv2d_gradfix, fused_act
from . import upfirdn2d as _upfirdn2d
from .filtered_lrelu import filtered_lrelu, filtered_lrelu_ref
from .fused_act import FusedLeakyReLU, fused_leaky_relu, fused_leaky_relu_ref
from .grid_sample_gradfix import grid_sample
from .upfirdn2d import downsample_padding, transposed_conv_padding, upfirdn2d, upfirdn2d_ref, upsample_padding


def implementations(tensor):
    """{op name: what runs it} for tensors like `tensor`, building the CUDA extensions if needed."""
    found = {}
    for name, module in (("upfirdn2d", _upfirdn2d), ("fused_leaky_relu", fused_act)):
        if _plugin.FORCE_REF:
            found[name] = "PyTorch reference (STYLEGAN_OP_IMPL=ref)"
        elif not tensor.is_cuda:
            found[name] = "PyTorch reference (not a CUDA tensor)"
        elif module._plugin() is None:
            found[name] = (
                f"PyTorch reference (the CUDA extension did not build: {_plugin.build_errors[module.EXTENSION]})"
            )
        else:
            found[name] = "CUDA kernel"
    gradfix = "conv2d_gradfix (no weight gradients in R1, second derivatives)" if conv2d_gradfix.enabled else "F.conv2d"
    found["conv2d"] = f"{'cuDNN' if tensor.is_cuda else 'PyTorch'} convolutions through {gradfix}"
    return found


__all__ = [
    "FusedLeakyReLU",
    "conv2d_gradfix",
    "downsample_padding",
    "filtered_lrelu",
    "filtered_lrelu_ref",
    "fused_leaky_relu",
    "fused_leaky_relu_ref",
    "grid_sample",
    "implementations",
    "transposed_conv_padding",
    "upfirdn2d",
    "upfirdn2d_ref",
    "upsample_padding",
]
