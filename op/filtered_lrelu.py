"""Filtered leaky ReLU of the alias-free GAN (Karras et al. 2021, section 3.2 and appendix D).

A pointwise nonlinearity applied to a band-limited signal creates frequencies above its band;
the alias-free generator therefore applies it at a higher sampling rate and low-passes the
result before returning to the layer's own rate:

    x = x + b                                   (bias, at the input rate)
    x = upfirdn2d(x, fu, up=up, pad=padding)    (upsample; fu has DC gain 1, times up^2)
    x = clamp(leaky_relu(x, slope) * gain)      (the nonlinearity at up x the rate)
    x = upfirdn2d(x, fd, down=down)             (low-pass and downsample)

Filters are 1-D (separable: the same taps along x and y, applied in two passes) or 2-D (e.g.
the radially symmetric jinc filters of StyleGAN3-R); None is the identity. `impl='ref'` runs
the composition in plain PyTorch; `impl='cuda'` (and 'auto' on CUDA tensors) runs the same
composition through the CUDA kernels of upfirdn2d and fused_leaky_relu, which are
differentiable twice.
"""

from .fused_act import fused_leaky_relu
from .upfirdn2d import parse_padding, upfirdn2d


def _check_filter(f, name):
    if f is not None and f.ndim not in (1, 2):
        raise ValueError(f"filtered_lrelu: {name} must be None, 1-D (separable) or 2-D, not {f.ndim}-D")


def _filter(x, f, up, down, pad, impl):
    """upfirdn2d with a 1-D (two passes), 2-D or absent (identity) filter; `f` has DC gain 1 and
    is scaled by up^2 so that upsampling keeps a constant signal constant."""
    pad_x0, pad_x1, pad_y0, pad_y1 = pad
    if f is None:
        f = x.new_ones(1)
    if f.ndim == 2:
        return upfirdn2d(x, f * up**2, up=up, down=down, pad=pad, impl=impl)
    x = upfirdn2d(x, (f * up).view(1, -1), up=(up, 1), down=(down, 1), pad=(pad_x0, pad_x1, 0, 0), impl=impl)
    return upfirdn2d(x, (f * up).view(-1, 1), up=(1, up), down=(1, down), pad=(0, 0, pad_y0, pad_y1), impl=impl)


def filtered_lrelu(
    x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=2**0.5, slope=0.2, clamp=None, impl="auto"
):
    """Bias, upsample, leaky ReLU with gain and clamp, downsample (see the module docstring).

    Args:
        x: [N, C, H, W] input.
        fu: upsampling filter, [K] (separable) or [K, K], DC gain 1; None = identity.
        fd: downsampling filter, [K] or [K, K], DC gain 1; None = identity.
        b: [C] bias added before upsampling, or None.
        up, down: integer up- and downsampling factors.
        padding: int, (pad0, pad1) or (pad_x0, pad_x1, pad_y0, pad_y1) of the upsampled signal
            (as upfirdn2d's `pad`; negative crops).
        gain: multiplies the leaky ReLU's output (sqrt(2) keeps the variance; 1 for ToRGB).
        slope: negative slope of the leaky ReLU (1 = linear).
        clamp: clamp the activations to [-clamp, clamp] after the gain; None = no clamp.
        impl: 'auto' | 'ref' | 'cuda'.
    Returns:
        [N, C, out_h, out_w], out_w = (W * up + pad_x0 + pad_x1 - fu_taps + 1 - fd_taps + down) // down
        (likewise out_h); differentiable twice.
    """
    if x.ndim != 4:
        raise ValueError(f"filtered_lrelu: x must be [N, C, H, W], not {list(x.shape)}")
    _check_filter(fu, "fu")
    _check_filter(fd, "fd")
    if b is not None:
        x = x + b.to(x.dtype).view(1, -1, 1, 1)
    x = _filter(x, fu, up, 1, parse_padding(padding), impl)
    x = fused_leaky_relu(x, None, slope, gain, impl=impl)
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return _filter(x, fd, 1, down, (0, 0, 0, 0), impl)


def filtered_lrelu_ref(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=2**0.5, slope=0.2, clamp=None):
    """Reference implementation (plain PyTorch); arguments as `filtered_lrelu`."""
    return filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp, impl="ref")
