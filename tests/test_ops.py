"""op/: reference implementations against independent formulas, derivatives in float64, and the
CUDA kernels against the references (the latter only where a GPU is present)."""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import op
from op import conv2d_gradfix, fused_leaky_relu, fused_leaky_relu_ref, grid_sample, upfirdn2d, upfirdn2d_ref
from op.fused_act import FusedLeakyReLUFunction
from op.upfirdn2d import UpFirDn2dFunction, _parse

UPFIRDN_CASES = [
    # up, down, pad: the ways StyleGAN2 calls it, plus asymmetric and cropping pads
    (2, 1, (2, 1)),
    (1, 2, (1, 1)),
    (1, 1, (2, 2)),
    (1, 1, (-1, 2)),
    ((2, 1), (1, 2), (1, 2, 0, -1)),
]


def blur_kernel(dtype=torch.float64):
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=dtype)
    k = k[:, None] * k[None, :]
    return k / k.sum()


def upfirdn2d_explicit(x, kernel, up, down, pad):
    """Zero insertion, padding (negative crops), true convolution, subsampling: numpy loops."""
    (up_x, up_y), (down_x, down_y), (pad_x0, pad_x1, pad_y0, pad_y1) = _parse(up, down, pad)
    x, kernel = x.numpy(), kernel.numpy()
    n, c, h, w = x.shape
    upsampled = np.zeros((n, c, h * up_y, w * up_x))
    upsampled[:, :, ::up_y, ::up_x] = x
    padded = np.zeros((n, c, h * up_y + pad_y0 + pad_y1, w * up_x + pad_x0 + pad_x1))
    for y in range(padded.shape[2]):
        for x_ in range(padded.shape[3]):
            source_y, source_x = y - pad_y0, x_ - pad_x0
            if 0 <= source_y < upsampled.shape[2] and 0 <= source_x < upsampled.shape[3]:
                padded[:, :, y, x_] = upsampled[:, :, source_y, source_x]
    kh, kw = kernel.shape
    full = np.zeros((n, c, padded.shape[2] - kh + 1, padded.shape[3] - kw + 1))
    for y in range(full.shape[2]):
        for x_ in range(full.shape[3]):
            window = padded[:, :, y : y + kh, x_ : x_ + kw]
            full[:, :, y, x_] = (window * kernel[::-1, ::-1]).sum((2, 3))
    return torch.from_numpy(full[:, :, ::down_y, ::down_x].copy())


@pytest.mark.parametrize("up,down,pad", UPFIRDN_CASES)
def test_upfirdn2d_matches_explicit_formula(up, down, pad):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    kernel = torch.rand(4, 3, dtype=torch.float64)  # asymmetric: a missing flip would show
    expected = upfirdn2d_explicit(x, kernel, up, down, pad)
    assert torch.allclose(upfirdn2d_ref(x, kernel, up, down, pad), expected, atol=1e-12)
    assert torch.allclose(upfirdn2d(x, kernel, up, down, pad), expected, atol=1e-12)


@pytest.mark.parametrize("up,down,pad", UPFIRDN_CASES)
def test_upfirdn2d_reference_keeps_channels_last(up, down, pad):
    # as the CUDA kernel: a channels-last model's image stays channels-last through the RGB skip
    x = torch.randn(2, 5, 6, 7)
    kernel = blur_kernel(torch.float32)
    out = upfirdn2d_ref(x.contiguous(memory_format=torch.channels_last), kernel, up, down, pad)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, upfirdn2d_ref(x, kernel, up, down, pad))


@pytest.mark.parametrize("up,down,pad", UPFIRDN_CASES)
def test_upfirdn2d_derivatives(up, down, pad):
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    kernel = blur_kernel()
    u, d, p = _parse(up, down, pad)
    assert gradcheck(lambda x: upfirdn2d_ref(x, kernel, up, down, pad), (x,))
    assert gradgradcheck(lambda x: upfirdn2d_ref(x, kernel, up, down, pad), (x,))
    # the hand-written backward of the CUDA path, run with the reference forward on CPU
    assert torch.allclose(UpFirDn2dFunction.apply(x, kernel, u, d, p), upfirdn2d_ref(x, kernel, up, down, pad))
    assert gradcheck(lambda x: UpFirDn2dFunction.apply(x, kernel, u, d, p), (x,))
    assert gradgradcheck(lambda x: UpFirDn2dFunction.apply(x, kernel, u, d, p), (x,))


def test_fused_leaky_relu_formula_and_derivatives():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    shifted = x + bias.view(1, 4, 1, 1)
    expected = torch.where(shifted >= 0, shifted, 0.2 * shifted) * 2**0.5
    assert torch.allclose(fused_leaky_relu(x, bias), expected)
    assert torch.allclose(fused_leaky_relu_ref(x[:, :, 0, 0], bias), expected[:, :, 0, 0])  # 2-D input

    def custom(x, bias):
        return FusedLeakyReLUFunction.apply(x, bias, 0.2, 2**0.5)

    assert torch.allclose(custom(x, bias), expected)
    for function in (fused_leaky_relu_ref, custom):
        assert gradcheck(function, (x, bias))
        assert gradgradcheck(function, (x, bias))
    assert gradgradcheck(lambda x: FusedLeakyReLUFunction.apply(x, None, 0.2, 2**0.5), (x,))


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("stride,groups", [(1, 1), (2, 1), (2, 2)])
def test_conv2d_gradfix_derivatives(transpose, stride, groups):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    if transpose:
        weight = torch.randn(4, 6 // groups, 3, 3, dtype=torch.float64, requires_grad=True)
        reference = torch.nn.functional.conv_transpose2d(x, weight, stride=stride, groups=groups)

        def conv(x, weight):
            return conv2d_gradfix.conv_transpose2d(x, weight, stride=stride, groups=groups)
    else:
        weight = torch.randn(6, 4 // groups, 3, 3, dtype=torch.float64, requires_grad=True)
        reference = torch.nn.functional.conv2d(x, weight, stride=stride, padding=1, groups=groups)

        def conv(x, weight):
            return conv2d_gradfix.conv2d(x, weight, stride=stride, padding=1, groups=groups)

    assert torch.allclose(conv(x, weight), reference)
    assert gradcheck(conv, (x, weight))
    assert gradgradcheck(conv, (x, weight))


def test_no_weight_gradients_skips_only_the_weight():
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, requires_grad=True)
    expected = torch.autograd.grad(conv2d_gradfix.conv2d(x, weight, padding=1).square().sum(), x)[0]
    with conv2d_gradfix.no_weight_gradients():
        out = conv2d_gradfix.conv2d(x, weight, padding=1).square().sum()
        grad_x, grad_weight = torch.autograd.grad(out, [x, weight], allow_unused=True)
    assert grad_weight is None
    assert torch.allclose(grad_x, expected)


def test_grid_sample_is_twice_differentiable_with_respect_to_its_input():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    # random positions, some outside the image (zero padding): a regular grid would put samples
    # on the pixel boundaries where bilinear interpolation has kinks and finite differences fail
    grid = (torch.rand(2, 7, 4, 2, dtype=torch.float64) * 2.4 - 1.2).requires_grad_(True)
    reference = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert torch.equal(grid_sample(x, grid), reference)
    assert torch.equal(grid_sample(x, grid, impl="ref"), reference)
    assert gradcheck(grid_sample, (x, grid))
    fixed_grid = grid.detach()
    # R1 through augmentation needs this one (F.grid_sample on PyTorch 2.11 raises "derivative
    # for aten::grid_sampler_2d_backward is not implemented")
    assert gradgradcheck(lambda images: grid_sample(images, fixed_grid), (x,))
    (grad_grid,) = torch.autograd.grad(grid_sample(x, grid).square().sum(), grid, create_graph=True)
    with pytest.raises(NotImplementedError, match="the grid's gradient"):
        grad_grid.sum().backward()


def test_importing_op_compiles_nothing():
    code = (
        "import torch, op, op._plugin as p\n"
        "op.upfirdn2d(torch.randn(1, 1, 4, 4), torch.ones(2, 2))\n"
        "op.fused_leaky_relu(torch.randn(2, 3), torch.zeros(3))\n"
        "assert p._loaded == {}, p._loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_failed_build_falls_back_to_the_reference_and_says_why(monkeypatch):
    import torch.utils.cpp_extension

    def failing_build(**kwargs):  # what torch's ninja build raises, shortened
        raise RuntimeError(
            "Error building extension 'stylegan_upfirdn2d': [1/3] nvcc -c upfirdn2d_kernel.cu\n"
            "FAILED: upfirdn2d_kernel.cuda.o\n"
            "nvcc fatal   : Unsupported gpu architecture 'compute_90'\n"
            "ninja: build stopped: subcommand failed."
        )

    monkeypatch.setattr(torch.utils.cpp_extension, "load", failing_build)
    monkeypatch.setattr(op._plugin, "_loaded", {})
    monkeypatch.setattr(op._plugin, "build_errors", {})
    monkeypatch.setattr(op._plugin, "FORCE_REF", False)
    like_a_cuda_tensor = SimpleNamespace(is_cuda=True)
    with pytest.warns(UserWarning, match="using the PyTorch reference implementation"):
        found = op.implementations(like_a_cuda_tensor)
    assert found["upfirdn2d"] == (
        "PyTorch reference (the CUDA extension did not build: nvcc fatal   : Unsupported gpu architecture 'compute_90')"
    )
    assert found["fused_leaky_relu"].startswith("PyTorch reference (the CUDA extension did not build: nvcc fatal")

    # asked for by name, the kernel is not replaced by the reference: the CUDA tests would pass on it
    for module in (op._upfirdn2d, op.fused_act):
        monkeypatch.setattr(module, "use_cuda_kernel", lambda tensor, impl: True)
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match="impl='cuda': the CUDA extension op/stylegan_upfirdn2d is not available"):
        upfirdn2d(x, torch.ones(2, 2) / 4, impl="cuda")
    with pytest.raises(RuntimeError, match="op/stylegan_fused_bias_act is not available .nvcc fatal"):
        fused_leaky_relu(x, torch.zeros(2), impl="cuda")
    assert torch.equal(
        fused_leaky_relu(x, torch.zeros(2)), fused_leaky_relu_ref(x, torch.zeros(2))
    )  # auto: the fallback


MEMORY_FORMATS = [torch.contiguous_format, torch.channels_last]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_upfirdn2d_keeps_its_input_dtype_under_bf16_autocast(dtype, device):
    # the reference as the CUDA kernel: autocast must not round the float32 RGB skip to bfloat16,
    # neither eagerly nor where --compile traces the reference
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8, device=device, dtype=dtype)
    kernel = blur_kernel(torch.float32).to(device)
    expected = upfirdn2d_ref(x, kernel, 2, 1, (2, 1))
    traced = torch.compile(upfirdn2d, backend="eager", fullgraph=True)
    with torch.autocast(device, dtype=torch.bfloat16):
        outputs = [upfirdn2d(x, kernel, 2, 1, (2, 1)), traced(x, kernel, 2, 1, (2, 1))]
    for out in outputs:
        assert out.dtype == dtype
        atol = 1e-5 if dtype == torch.float32 else 1e-2  # bfloat16 rounding would exceed 1e-5
        assert torch.allclose(out.float(), expected.float(), rtol=0, atol=atol)


@pytest.mark.cuda
@pytest.mark.parametrize("kernel_kind", ["blur", "asymmetric"])
@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
@pytest.mark.parametrize("up,down,pad", UPFIRDN_CASES)
def test_upfirdn2d_cuda_matches_reference(up, down, pad, memory_format, kernel_kind):
    # the reference runs in float64, where no TF32 convolution can blur the comparison; a kernel
    # with no symmetry shows a missing flip or swapped kernel axes, which the blur would hide
    x = torch.randn(4, 8, 16, 12, device="cuda").contiguous(memory_format=memory_format).requires_grad_()
    if kernel_kind == "blur":
        kernel = blur_kernel(torch.float32).cuda()
    else:
        kernel = torch.rand(3, 4, generator=torch.Generator().manual_seed(0)).cuda()
    out = upfirdn2d(x, kernel, up, down, pad, impl="cuda")
    expected = upfirdn2d_ref(x.double(), kernel.double(), up, down, pad)
    assert out.is_contiguous(memory_format=memory_format)  # the layout comes back as it went in
    assert torch.allclose(out.double(), expected, atol=1e-5)
    grad_out = torch.randn(out.shape, device="cuda").contiguous(memory_format=memory_format).requires_grad_()
    (grad,) = torch.autograd.grad(out, x, grad_out, create_graph=True)
    (expected_grad,) = torch.autograd.grad(expected, x, grad_out.double(), create_graph=True)
    assert torch.allclose(grad, expected_grad, atol=1e-5)
    (grad2,) = torch.autograd.grad(grad.square().sum(), grad_out)
    (expected_grad2,) = torch.autograd.grad(expected_grad.square().sum(), grad_out)
    assert torch.allclose(grad2, expected_grad2, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
def test_upfirdn2d_cuda_matches_reference_on_a_tensor_of_1024_px_training_size(memory_format):
    # more elements than the kernels' grid covers at once (their loop over the rest runs)
    x = torch.randn(2, 32, 512, 512, device="cuda").contiguous(memory_format=memory_format)
    kernel = blur_kernel(torch.float32).cuda()
    out = upfirdn2d(x, kernel, 2, 1, (2, 1), impl="cuda")
    expected = upfirdn2d_ref(x.double(), kernel.double(), 2, 1, (2, 1))
    assert out.shape == (2, 32, 1024, 1024) and torch.allclose(out.double(), expected, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_leaky_relu_cuda_matches_reference_on_linear_layer_outputs(with_bias):
    # [N, C]: the mapping network's and the discriminator's last layers
    x = torch.randn(64, 512, device="cuda", requires_grad=True)
    bias = torch.randn(512, device="cuda", requires_grad=True) if with_bias else None
    out = fused_leaky_relu(x, bias, impl="cuda")
    expected = fused_leaky_relu_ref(x.double(), None if bias is None else bias.double())
    assert torch.allclose(out.double(), expected, rtol=1e-5, atol=1e-5)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    assert torch.allclose(grad.double(), expected_grad, rtol=1e-5, atol=1e-4)


@pytest.mark.cuda
def test_fused_leaky_relu_cuda_adds_each_channels_bias_to_channels_last_3d_input():
    x = torch.randn(2, 4, 3, 5, 6, device="cuda").contiguous(memory_format=torch.channels_last_3d)
    bias = torch.randn(4, device="cuda")
    out = fused_leaky_relu(x, bias, impl="cuda")
    assert torch.allclose(out, fused_leaky_relu_ref(x, bias), rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
def test_the_cuda_kernels_compute_float64_in_float64():
    # a float32 sum would be off by about 1e-7; taps of the blur kernel are exact in float32
    x = torch.randn(2, 4, 16, 12, device="cuda", dtype=torch.float64)
    kernel = blur_kernel(torch.float32).cuda()
    filtered = upfirdn2d(x, kernel, 2, 1, (2, 1), impl="cuda")
    assert torch.allclose(filtered, upfirdn2d_ref(x, kernel.double(), 2, 1, (2, 1)), rtol=0, atol=1e-12)
    bias = torch.randn(4, device="cuda", dtype=torch.float64)
    activated = fused_leaky_relu(x, bias, impl="cuda")
    assert torch.allclose(activated, fused_leaky_relu_ref(x, bias), rtol=0, atol=1e-12)


@pytest.mark.cuda
@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_leaky_relu_cuda_matches_reference(dtype, memory_format):
    x = torch.randn(4, 16, 8, 8, device="cuda", dtype=dtype).contiguous(memory_format=memory_format).requires_grad_()
    bias = torch.randn(16, device="cuda", requires_grad=True)
    out = fused_leaky_relu(x, bias, impl="cuda")
    expected = fused_leaky_relu_ref(x.double(), bias.double())
    assert out.dtype == dtype and out.is_contiguous(memory_format=memory_format)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    assert torch.allclose(out.double(), expected, rtol=tolerance, atol=tolerance)
    grads = torch.autograd.grad(out.double().square().sum(), [x, bias], create_graph=True)
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, bias], create_graph=True)
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.allclose(grad.double(), expected_grad.double(), rtol=tolerance, atol=tolerance * 10)
    grad2 = torch.autograd.grad(grads[0].double().sum(), x)[0]
    expected_grad2 = torch.autograd.grad(expected_grads[0].double().sum(), x)[0]
    assert torch.allclose(grad2.double(), expected_grad2.double(), rtol=tolerance, atol=tolerance * 10)
