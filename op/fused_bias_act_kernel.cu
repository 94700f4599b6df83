#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/types.h>

#include <algorithm>

// Computed in float for half, bfloat16 and float, in double for double (at::opmath_type).
template <typename scalar_t>
__global__ void fused_bias_act_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ x,
                                      const scalar_t* __restrict__ bias,
                                      const scalar_t* __restrict__ refer, int grad,
                                      float negative_slope, float scale, int64_t count,
                                      int64_t bias_step, int64_t bias_len) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count;
       i += (int64_t)blockDim.x * gridDim.x) {
    using acc_t = at::opmath_type<scalar_t>;
    acc_t value = static_cast<acc_t>(x[i]);
    bool positive;
    if (grad == 0) {
      if (bias != nullptr) value += static_cast<acc_t>(bias[(i / bias_step) % bias_len]);
      positive = value > 0;
    } else {
      positive = static_cast<acc_t>(refer[i]) > 0;
    }
    const acc_t slope = positive ? acc_t(1) : static_cast<acc_t>(negative_slope);
    out[i] = static_cast<scalar_t>(value * slope * static_cast<acc_t>(scale));
  }
}

torch::Tensor fused_bias_act_op(const torch::Tensor& input, const torch::Tensor& bias,
                                const torch::Tensor& refer, int grad, float negative_slope,
                                float scale) {
  const at::cuda::OptionalCUDAGuard device_guard(device_of(input));
  // channels-last input (2-D or 3-D) stays so (refer follows it element for element); element i
  // then belongs to channel i % C, where in NCHW order it belongs to (i / (H W)) % C
  const auto format = input.suggest_memory_format();
  auto x = input.contiguous(format);
  auto b = bias.contiguous();
  auto r = refer.numel() ? refer.contiguous(format) : refer;
  auto out = at::empty_like(x);
  const int64_t count = x.numel();
  if (count == 0) return out;

  int64_t bias_step = 1;
  const bool channel_fastest =
      format == at::MemoryFormat::ChannelsLast || format == at::MemoryFormat::ChannelsLast3d;
  if (!channel_fastest) {
    for (int64_t d = 2; d < x.dim(); ++d) bias_step *= x.size(d);
  }
  const int64_t bias_len = x.dim() > 1 ? x.size(1) : 1;

  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((count + threads - 1) / threads, 65536);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(), "fused_bias_act", [&] {
        fused_bias_act_kernel<scalar_t><<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
            out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
            b.numel() ? b.data_ptr<scalar_t>() : nullptr,
            r.numel() ? r.data_ptr<scalar_t>() : nullptr, grad, negative_slope, scale, count,
            bias_step, bias_len);
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}
