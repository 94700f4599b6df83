"""Bias + leaky ReLU + gain in one op (StyleGAN2's `fused_lrelu`).

    fused_leaky_relu(x, b) = leaky_relu(x + b, negative_slope) * scale

with the bias broadcast along dimension 1. `impl='ref'` is plain PyTorch (autograd does the
rest); `impl='cuda'` is one elementwise CUDA kernel per pass with hand-written first and second
derivatives, in the memory format it is given (NCHW or channels-last); `impl='auto'` (default)
takes the kernel for CUDA tensors when it builds.
"""

import torch
from torch import nn
from torch.autograd import Function
from torch.nn import functional as F

from ._plugin import get_plugin, unbuilt, use_cuda_kernel

EXTENSION = "stylegan_fused_bias_act"  # the compiled module's name, and torch's build-cache folder
_SOURCES = ["fused_bias_act.cpp", "fused_bias_act_kernel.cu"]


def _plugin():
    return get_plugin(EXTENSION, _SOURCES)


def _broadcast_bias(bias, ndim):
    return bias.view(1, bias.shape[0], *([1] * (ndim - 2)))


def fused_leaky_relu_ref(input, bias=None, negative_slope=0.2, scale=2**0.5):
    """Reference implementation.

    Args:
        input: [N, C, ...] tensor.
        bias: [C] tensor or None.
    Returns:
        tensor shaped like `input`.
    """
    if bias is not None:
        input = input + _broadcast_bias(bias.to(input.dtype), input.ndim)
    return F.leaky_relu(input, negative_slope) * scale


def _kernel(input, bias, refer, grad, negative_slope, scale):
    """One pass of the elementwise kernel, without autograd.

    grad=0: leaky_relu(input + bias) * scale.
    grad=1: input * (1 if refer > 0 else negative_slope) * scale, the derivative's mask being
            read off the forward output `refer` (its sign is that of input + bias).
    On CPU, the same arithmetic in PyTorch, so the Functions below run (and are tested) there.
    """
    plugin = _plugin() if input.is_cuda else None
    if plugin is not None:
        return plugin.fused_bias_act(input, bias, refer, grad, negative_slope, scale)
    if grad == 0:
        if bias.numel():
            input = input + _broadcast_bias(bias, input.ndim)
        return torch.where(input > 0, input, input * negative_slope) * scale
    return torch.where(refer > 0, input, input * negative_slope) * scale


class FusedLeakyReLUFunctionBackward(Function):
    @staticmethod
    def forward(ctx, grad_output, out, has_bias, negative_slope, scale):
        ctx.save_for_backward(out)
        ctx.has_bias, ctx.negative_slope, ctx.scale = has_bias, negative_slope, scale
        empty = grad_output.new_empty(0)
        grad_input = _kernel(grad_output, empty, out, 1, negative_slope, scale)
        if has_bias:
            grad_bias = grad_input.sum([0] + list(range(2, grad_input.ndim)))
        else:
            grad_bias = empty
        return grad_input, grad_bias

    @staticmethod
    def backward(ctx, gradgrad_input, gradgrad_bias):
        (out,) = ctx.saved_tensors
        if ctx.has_bias and gradgrad_bias is not None:
            gradgrad_input = gradgrad_input + _broadcast_bias(gradgrad_bias, gradgrad_input.ndim)
        empty = out.new_empty(0)
        gradgrad_out = _kernel(gradgrad_input, empty, out, 1, ctx.negative_slope, ctx.scale)
        return gradgrad_out, None, None, None, None


class FusedLeakyReLUFunction(Function):
    @staticmethod
    def forward(ctx, input, bias, negative_slope, scale):
        empty = input.new_empty(0)
        bias_arg = empty if bias is None else bias.to(input.dtype).contiguous()
        out = _kernel(input, bias_arg, empty, 0, negative_slope, scale)
        ctx.save_for_backward(out)
        ctx.has_bias, ctx.negative_slope, ctx.scale = bias is not None, negative_slope, scale
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (out,) = ctx.saved_tensors
        grad_input, grad_bias = FusedLeakyReLUFunctionBackward.apply(
            grad_output, out, ctx.has_bias, ctx.negative_slope, ctx.scale
        )
        return grad_input, grad_bias if ctx.has_bias else None, None, None


def fused_leaky_relu(input, bias=None, negative_slope=0.2, scale=2**0.5, impl="auto"):
    """leaky_relu(input + bias, negative_slope) * scale; see the module docstring.

    Args:
        input: [N, C, ...] tensor.
        bias: [C] tensor or None.
        impl: 'auto' | 'ref' | 'cuda'.
    Returns:
        tensor shaped like `input`; differentiable twice.
    """
    if use_cuda_kernel(input, impl):
        if _plugin() is not None:
            return FusedLeakyReLUFunction.apply(input, bias, negative_slope, scale)
        if impl == "cuda":
            raise unbuilt(EXTENSION)
    return fused_leaky_relu_ref(input, bias, negative_slope, scale)


class FusedLeakyReLU(nn.Module):
    """Learned per-channel bias, then leaky ReLU with gain (state dict: `bias`)."""

    def __init__(self, channel, bias=True, negative_slope=0.2, scale=2**0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, input):
        return fused_leaky_relu(input, self.bias, self.negative_slope, self.scale)
