#include <torch/extension.h>

torch::Tensor fused_bias_act_op(const torch::Tensor& input, const torch::Tensor& bias,
                                const torch::Tensor& refer, int grad, float negative_slope,
                                float scale);

#define CHECK_CUDA(x) TORCH_CHECK(x.is_cuda(), #x " must be a CUDA tensor")

// input: [N, C, ...]; bias: [C] or empty; refer: like input or empty.
// grad 0: leaky_relu(input + bias) * scale. grad 1: input * (refer > 0 ? 1 : slope) * scale.
torch::Tensor fused_bias_act(const torch::Tensor& input, const torch::Tensor& bias,
                             const torch::Tensor& refer, int grad, float negative_slope,
                             float scale) {
  CHECK_CUDA(input);
  if (bias.numel()) {
    CHECK_CUDA(bias);
    TORCH_CHECK(bias.scalar_type() == input.scalar_type(), "bias dtype must match input");
    TORCH_CHECK(bias.device() == input.device(), "bias must be on the input's device");
    TORCH_CHECK(input.dim() >= 2 && bias.dim() == 1 && bias.size(0) == input.size(1),
                "bias must be [C] for an input of C channels");
  }
  if (refer.numel()) {
    CHECK_CUDA(refer);
    TORCH_CHECK(refer.numel() == input.numel(), "refer must be shaped like input");
    TORCH_CHECK(refer.device() == input.device(), "refer must be on the input's device");
  }
  return fused_bias_act_op(input, bias, refer, grad, negative_slope, scale);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fused_bias_act", &fused_bias_act, "bias + leaky ReLU + gain (CUDA)");
}
