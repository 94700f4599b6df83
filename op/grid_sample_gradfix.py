"""Bilinear grid sampling that is differentiable twice with respect to its input.

R1 on augmented real images (ADA) differentiates the discriminator's output with respect to
the images *before* augmentation with create_graph=True, and then differentiates that
gradient again; the second pass goes through grid_sample's backward. PyTorch 2.11 and older
lack that second derivative ("derivative for aten::grid_sampler_2d_backward is not
implemented"; 2.14 has it), so this op writes it out.

For a fixed grid, sampling is linear in the input: out = A x, so its input gradient is
A^T g, linear in g and independent of x, and the derivative of A^T g with respect to g, applied
to a vector v, is A v: grid sampling again. Second derivatives through the *grid's* gradient
are not implemented (the augmentation grids never need gradients).

`impl='ref'` is plain F.grid_sample (and so is everything torch.compile traces).
"""

import torch
from torch.autograd import Function
from torch.nn import functional as F

# grid_sampler_2d's integer codes of mode='bilinear' and padding_mode='zeros'
_BILINEAR, _ZEROS = 0, 0


def grid_sample(input, grid, impl="auto"):
    """F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False).

    Args:
        input: [N, C, H_in, W_in] tensor.
        grid: [N, H_out, W_out, 2] sampling positions (x, y) in [-1, 1], input's dtype.
        impl: 'auto' (differentiable twice with respect to `input`) | 'ref' (F.grid_sample).
    Returns:
        [N, C, H_out, W_out] tensor.
    """
    if impl not in ("auto", "ref"):
        raise ValueError(f"impl must be 'auto' or 'ref', not {impl!r}")
    if impl == "ref" or torch.compiler.is_compiling():
        return F.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _GridSample.apply(input, grid)


class _GridSample(Function):
    @staticmethod
    def forward(ctx, input, grid):
        ctx.save_for_backward(input, grid)
        return F.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    @staticmethod
    def backward(ctx, grad_output):
        input, grid = ctx.saved_tensors
        return _GridSampleBackward.apply(grad_output, input, grid, ctx.needs_input_grad[1])


class _GridSampleBackward(Function):
    @staticmethod
    def forward(ctx, grad_output, input, grid, grid_needs_grad):
        ctx.save_for_backward(grid)
        ctx.set_materialize_grads(False)  # None, not zeros, for a gradient nobody asks about
        return torch.ops.aten.grid_sampler_2d_backward(
            grad_output, input, grid, _BILINEAR, _ZEROS, False, [True, grid_needs_grad]
        )

    @staticmethod
    def backward(ctx, grad2_grad_input, grad2_grad_grid):
        if grad2_grad_grid is not None:
            raise NotImplementedError("grid_sample_gradfix: no second derivatives through the grid's gradient")
        (grid,) = ctx.saved_tensors
        grad2_grad_output = None
        if grad2_grad_input is not None and ctx.needs_input_grad[0]:
            grad2_grad_output = _GridSample.apply(grad2_grad_input, grid)
        return grad2_grad_output, None, None, None
