"""Upsample, FIR-filter, downsample (StyleGAN2's `upfirdn2d`).

For each channel independently: insert up-1 zeros between pixels, pad (negative pads crop),
convolve with the 2-D FIR `kernel` (a true convolution: the kernel is flipped), keep every
`down`-th pixel. Output size per axis: (in * up + pad0 + pad1 - kernel + down) // down.
`impl='ref'` is plain PyTorch; `impl='cuda'` a direct CUDA kernel whose gradient is the same op
with the flipped kernel and up/down swapped, so it is differentiable to any order. Both keep
the memory format they are given (NCHW, or channels-last with no conversion copies) and the
dtype, also under autocast.
"""

import contextlib

import torch
from torch.autograd import Function
from torch.nn import functional as F

from ._plugin import get_plugin, unbuilt, use_cuda_kernel

EXTENSION = "stylegan_upfirdn2d"  # the compiled module's name, and torch's build-cache folder
_SOURCES = ["upfirdn2d.cpp", "upfirdn2d_kernel.cu"]


def _plugin():
    return get_plugin(EXTENSION, _SOURCES)


def parse_padding(pad):
    """(pad_x0, pad_x1, pad_y0, pad_y1) of a padding given as one int, (pad0, pad1) for both axes,
    or all four."""
    if isinstance(pad, int):
        pad = (pad,) * 4
    elif len(pad) == 2:
        pad = (pad[0], pad[1], pad[0], pad[1])
    return tuple(int(p) for p in pad)


def _parse(up, down, pad):
    up_x, up_y = (up, up) if isinstance(up, int) else up
    down_x, down_y = (down, down) if isinstance(down, int) else down
    return (up_x, up_y), (down_x, down_y), parse_padding(pad)


def upsample_padding(taps, factor, margin=0):
    """(pad0, pad1) for upfirdn2d(up=factor) with a `taps`-tap filter that makes the output exactly
    `factor` times the input with pixel centres aligned, plus `margin` more on each side."""
    return ((taps + factor - 1) // 2 + margin, (taps - factor) // 2 + margin)


def downsample_padding(taps, factor, margin=0):
    """(pad0, pad1) for upfirdn2d(down=factor), or for a blur before a stride-`factor` convolution
    (then `taps` counts the blur's taps plus the convolution's minus one), that makes the output
    exactly 1/`factor` of the input, plus `margin` more on each side (negative crops)."""
    return ((taps - factor + 1) // 2 + margin, (taps - factor) // 2 + margin)


def transposed_conv_padding(taps, factor, conv_size):
    """(pad0, pad1) for the `taps`-tap blur after a stride-`factor` transposed convolution of
    `conv_size` taps: StyleGAN2's upsampling modulated convolution, output `factor` x input."""
    p = taps - factor - (conv_size - 1)
    return ((p + 1) // 2 + factor - 1, p // 2 + 1)


def upfirdn2d_ref(input, kernel, up=1, down=1, pad=(0, 0)):
    """Reference implementation; arguments as `upfirdn2d`."""
    (up_x, up_y), (down_x, down_y), (pad_x0, pad_x1, pad_y0, pad_y1) = _parse(up, down, pad)
    batch, channel, in_h, in_w = input.shape
    kernel_h, kernel_w = kernel.shape

    out = input
    if up_x > 1 or up_y > 1:
        # zeros between the pixels, in the input's memory format (as the CUDA kernel keeps it)
        channels_last = not input.is_contiguous() and input.is_contiguous(memory_format=torch.channels_last)
        out = torch.empty(
            batch,
            channel,
            in_h * up_y,
            in_w * up_x,
            dtype=input.dtype,
            device=input.device,
            memory_format=torch.channels_last if channels_last else torch.contiguous_format,
        ).zero_()
        out[:, :, ::up_y, ::up_x] = input
    out = F.pad(out, [max(pad_x0, 0), max(pad_x1, 0), max(pad_y0, 0), max(pad_y1, 0)])
    out = out[:, :, max(-pad_y0, 0) : out.shape[2] - max(-pad_y1, 0), max(-pad_x0, 0) : out.shape[3] - max(-pad_x1, 0)]
    weight = torch.flip(kernel, [0, 1]).to(out.dtype).view(1, 1, kernel_h, kernel_w)
    weight = weight.expand(channel, 1, kernel_h, kernel_w)
    # The filter keeps its input's dtype, as the CUDA kernel does: under bf16 autocast F.conv2d
    # would round the float32 RGB skip to bfloat16 at every resolution. (Devices named, not
    # looked up: PyTorch 2.4's torch.compile cannot trace torch.amp.is_autocast_available.)
    device_type = out.device.type
    keep_dtype = (
        torch.autocast(device_type, enabled=False) if device_type in ("cuda", "cpu") else contextlib.nullcontext()
    )
    with keep_dtype:
        return F.conv2d(out, weight, stride=(down_y, down_x), groups=channel)


def _kernel(input, kernel, up, down, pad):
    """Forward pass without autograd: the CUDA kernel, or the reference on CPU."""
    plugin = _plugin() if input.is_cuda else None
    if plugin is None:
        with torch.no_grad():
            return upfirdn2d_ref(input, kernel, up, down, pad)
    return plugin.upfirdn2d(input, kernel.float(), *up, *down, *pad)


class UpFirDn2dFunction(Function):
    @staticmethod
    def forward(ctx, input, kernel, up, down, pad):
        ctx.save_for_backward(kernel)
        ctx.config = (input.shape[2], input.shape[3], up, down, pad)
        return _kernel(input, kernel, up, down, pad)

    @staticmethod
    def backward(ctx, grad_output):
        (kernel,) = ctx.saved_tensors
        in_h, in_w, (up_x, up_y), (down_x, down_y), (pad_x0, pad_x1, pad_y0, pad_y1) = ctx.config
        kernel_h, kernel_w = kernel.shape
        out_h, out_w = grad_output.shape[2:]
        grad_pad = (
            kernel_w - pad_x0 - 1,
            in_w * up_x - out_w * down_x + pad_x0 - up_x + 1,
            kernel_h - pad_y0 - 1,
            in_h * up_y - out_h * down_y + pad_y0 - up_y + 1,
        )
        grad_input = UpFirDn2dFunction.apply(
            grad_output, torch.flip(kernel, [0, 1]), (down_x, down_y), (up_x, up_y), grad_pad
        )
        return grad_input, None, None, None, None


def upfirdn2d(input, kernel, up=1, down=1, pad=(0, 0), impl="auto"):
    """Upsample, filter and downsample a batch of images.

    Args:
        input: [N, C, H, W] tensor.
        kernel: [kernel_h, kernel_w] FIR filter (float32).
        up, down: int, or (x, y) pair.
        pad: (pad0, pad1) for both axes, or (pad_x0, pad_x1, pad_y0, pad_y1); negative crops.
        impl: 'auto' | 'ref' | 'cuda'.
    Returns:
        [N, C, out_h, out_w] tensor, out = (in * up + pad0 + pad1 - kernel + down) // down.
    """
    up, down, pad = _parse(up, down, pad)
    if use_cuda_kernel(input, impl):
        if _plugin() is not None:
            return UpFirDn2dFunction.apply(input, kernel, up, down, pad)
        if impl == "cuda":
            raise unbuilt(EXTENSION)
    return upfirdn2d_ref(input, kernel, up, down, pad)
