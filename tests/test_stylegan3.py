"""The alias-free generator (stylegan3.py) and its op, filtered_lrelu."""

import pytest
import torch
from torch.autograd import gradcheck
from torch.nn import functional as F

from op import filtered_lrelu, filtered_lrelu_ref


# ---------------------------------------------------------------------------------------------
# filtered_lrelu


def upsample_explicit(x, kernel, up, pad):
    """Zero insertion, zero padding and a true 2-D convolution, with torch.nn.functional only."""
    n, c, h, w = x.shape
    stuffed = x.new_zeros(n, c, h * up, w * up)
    stuffed[:, :, ::up, ::up] = x
    stuffed = F.pad(stuffed, [pad[0], pad[1], pad[2], pad[3]])
    weight = kernel.flip([0, 1]).to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(stuffed, weight, groups=c)


def downsample_explicit(x, kernel, down):
    c = x.shape[1]
    weight = kernel.flip([0, 1]).to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=c, stride=down)


FILTER_CASES = [
    # up, down, padding, separable filters, gain, slope, clamp: the layers of StyleGAN3-T/-R
    (2, 2, (5, 6, 5, 6), True, 2**0.5, 0.2, None),
    (2, 1, (3, 4, 4, 3), False, 2**0.5, 0.2, 0.5),
    (1, 2, (2, 2, 2, 2), True, 1.0, 1.0, 256.0),
    (1, 1, (0, 0, 0, 0), True, 2**0.5, 0.2, None),
]


@pytest.mark.parametrize("up,down,padding,separable,gain,slope,clamp", FILTER_CASES)
def test_filtered_lrelu_equals_upsample_lrelu_downsample(up, down, padding, separable, gain, slope, clamp):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    taps_up, taps_down = 4 * up if up > 1 else 1, 3 * down if down > 1 else 1
    fu, fd = torch.rand(taps_up, dtype=torch.float64), torch.rand(taps_down, dtype=torch.float64)
    fu, fd = fu / fu.sum(), fd / fd.sum()
    fu2, fd2 = fu[:, None] * fu[None, :], fd[:, None] * fd[None, :]
    if not separable:
        fu, fd = fu2, fd2
    out = filtered_lrelu_ref(x, fu, fd, bias, up, down, padding, gain, slope, clamp)

    expected = upsample_explicit(x + bias.view(1, -1, 1, 1), fu2 * up**2, up, padding)
    expected = F.leaky_relu(expected, slope) * gain
    if clamp is not None:
        expected = expected.clamp(-clamp, clamp)
    expected = downsample_explicit(expected, fd2, down)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-12)
    assert torch.equal(filtered_lrelu(x, fu, fd, bias, up, down, padding, gain, slope, clamp), out)


def test_filtered_lrelu_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, requires_grad=True)
    fu = torch.tensor([0.1, 0.4, 0.4, 0.1], dtype=torch.float64)
    fd = torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64)
    function = lambda x, b: filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=(2, 1, 1, 2), clamp=1.5)
    assert gradcheck(function, (x, bias), eps=1e-6, atol=1e-6)
