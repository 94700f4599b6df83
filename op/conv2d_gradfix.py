"""conv2d / conv_transpose2d whose weight gradient can be switched off, differentiable twice.

Inside `with no_weight_gradients():` the backward pass computes input gradients only. R1 and
path-length regularisation differentiate the discriminator (generator) with respect to its
*input* with create_graph=True; skipping the weight gradients of that first pass saves a third
of its work. `impl='ref'` (or `enabled = False`) is plain F.conv2d / F.conv_transpose2d, and
so is everything torch.compile traces: the compiled forward passes of training never run
inside no_weight_gradients, and inductor optimises plain convolutions best.
"""

import contextlib

import torch
from torch.nn import functional as F

enabled = True
weight_gradients_disabled = False


@contextlib.contextmanager
def no_weight_gradients(disable=True):
    """Within this context, conv weight gradients are not computed (they come back as None)."""
    global weight_gradients_disabled
    previous = weight_gradients_disabled
    weight_gradients_disabled = disable
    try:
        yield
    finally:
        weight_gradients_disabled = previous


def _use_gradfix(impl):
    return enabled and impl != "ref" and not torch.compiler.is_compiling()


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, impl="auto"):
    """As F.conv2d (input [N, C_in, H, W], weight [C_out, C_in / groups, kh, kw])."""
    if _use_gradfix(impl):
        return _conv2d_gradfix(
            transpose=False,
            weight_shape=weight.shape,
            stride=stride,
            padding=padding,
            output_padding=0,
            dilation=dilation,
            groups=groups,
        ).apply(input, weight, bias)
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


def conv_transpose2d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, impl="auto"
):
    """As F.conv_transpose2d (weight [C_in, C_out / groups, kh, kw])."""
    if _use_gradfix(impl):
        return _conv2d_gradfix(
            transpose=True,
            weight_shape=weight.shape,
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            dilation=dilation,
            groups=groups,
        ).apply(input, weight, bias)
    return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


_cache = {}


def _conv2d_gradfix(transpose, weight_shape, stride, padding, output_padding, dilation, groups):
    """The autograd Function for one convolution configuration (cached: they are few)."""
    weight_shape = tuple(weight_shape)
    stride, padding = _pair(stride), _pair(padding)
    output_padding, dilation = _pair(output_padding), _pair(dilation)
    key = (transpose, weight_shape, stride, padding, output_padding, dilation, groups)
    if key in _cache:
        return _cache[key]

    common = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def backward_output_padding(input_shape, output_shape):
        # A strided conv maps several input sizes to one output size; the transposed conv of
        # the backward pass needs output_padding to land on the right one.
        if transpose:
            return (0, 0)
        return tuple(
            input_shape[i + 2]
            - (output_shape[i + 2] - 1) * stride[i]
            - (1 - 2 * padding[i])
            - dilation[i] * (weight_shape[i + 2] - 1)
            for i in range(2)
        )

    def backward_op(input_shape, output_shape):
        return _conv2d_gradfix(
            transpose=not transpose,
            weight_shape=weight_shape,
            output_padding=backward_output_padding(input_shape, output_shape),
            **common,
        )

    class Conv2d(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input, weight, bias):
            device_type = input.device.type
            if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
                # save what the convolution computes with: the backward pass runs outside
                # autocast and must not meet float32 weights next to bfloat16 gradients
                dtype = torch.get_autocast_dtype(device_type)
                input, weight = input.to(dtype), weight.to(dtype)
                bias = bias.to(dtype) if bias is not None else None
            ctx.save_for_backward(input, weight)
            if transpose:
                return F.conv_transpose2d(input, weight, bias, output_padding=output_padding, **common)
            return F.conv2d(input, weight, bias, **common)

        @staticmethod
        def backward(ctx, grad_output):
            input, weight = ctx.saved_tensors
            grad_input = grad_weight = grad_bias = None
            if ctx.needs_input_grad[0]:
                grad_input = backward_op(input.shape, grad_output.shape).apply(grad_output, weight, None)
            if ctx.needs_input_grad[1] and not weight_gradients_disabled:
                grad_weight = Conv2dGradWeight.apply(grad_output, input)
            if ctx.needs_input_grad[2]:
                grad_bias = grad_output.sum([0, 2, 3])
            return grad_input, grad_weight, grad_bias

    class Conv2dGradWeight(torch.autograd.Function):
        @staticmethod
        def forward(ctx, grad_output, input):
            ctx.save_for_backward(grad_output, input)
            weight = input.new_empty(weight_shape)  # only its shape is read
            return torch.ops.aten.convolution_backward(
                grad_output,
                input,
                weight,
                None,
                stride,
                padding,
                dilation,
                transpose,
                output_padding,
                groups,
                [False, True, False],
            )[1]

        @staticmethod
        def backward(ctx, grad2_grad_weight):
            grad_output, input = ctx.saved_tensors
            grad2_grad_output = grad2_input = None
            if ctx.needs_input_grad[0]:
                grad2_grad_output = Conv2d.apply(input, grad2_grad_weight, None)
            if ctx.needs_input_grad[1]:
                grad2_input = backward_op(input.shape, grad_output.shape).apply(grad_output, grad2_grad_weight, None)
            return grad2_grad_output, grad2_input

    _cache[key] = Conv2d
    return Conv2d
