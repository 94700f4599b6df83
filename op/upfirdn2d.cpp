#include <torch/extension.h>

torch::Tensor upfirdn2d_op(const torch::Tensor& input, const torch::Tensor& kernel, int up_x,
                           int up_y, int down_x, int down_y, int pad_x0, int pad_x1, int pad_y0,
                           int pad_y1);

#define CHECK_CUDA(x) TORCH_CHECK(x.is_cuda(), #x " must be a CUDA tensor")

// input: [N, C, H, W]; kernel: [kh, kw] float32. See op/upfirdn2d.py for the semantics.
torch::Tensor upfirdn2d(const torch::Tensor& input, const torch::Tensor& kernel, int up_x,
                        int up_y, int down_x, int down_y, int pad_x0, int pad_x1, int pad_y0,
                        int pad_y1) {
  CHECK_CUDA(input);
  CHECK_CUDA(kernel);
  TORCH_CHECK(input.dim() == 4, "input must be [N, C, H, W]");
  TORCH_CHECK(kernel.dim() == 2 && kernel.scalar_type() == at::kFloat, "kernel must be 2-D float32");
  TORCH_CHECK(kernel.device() == input.device(), "kernel must be on the input's device");
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "up and down must be >= 1");
  return upfirdn2d_op(input, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upfirdn2d", &upfirdn2d, "upsample, FIR filter, downsample (CUDA)");
}
