#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/types.h>

#include <algorithm>

// One thread per output element, in the output's memory order: NCHW, or NHWC (channels-last, the
// channel fastest, so that neighbouring threads read neighbouring input elements there too).
// Output pixel (oy, ox) reads the zero-inserted, padded input at rows oy * down_y + ky - pad_y0
// (in upsampled coordinates) against the flipped kernel; only rows that are multiples of up_y
// hold input pixels. Sums run in float for half, bfloat16 and float, in double for double
// (at::opmath_type), as the float64 reference does.
template <typename scalar_t, bool channels_last>
__global__ void upfirdn2d_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ x,
                                 const float* __restrict__ kernel, int64_t batch, int channel,
                                 int in_h, int in_w, int out_h, int out_w, int kernel_h,
                                 int kernel_w, int up_x, int up_y, int down_x, int down_y,
                                 int pad_x0, int pad_y0) {
  const int64_t count = batch * channel * out_h * out_w;
  const int up_h = in_h * up_y;
  const int up_w = in_w * up_x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count;
       i += (int64_t)blockDim.x * gridDim.x) {
    int ox, oy;
    const scalar_t* src;
    int64_t pixel_stride;  // between horizontally neighbouring input pixels of one channel
    if (channels_last) {
      const int c = i % channel;
      ox = (i / channel) % out_w;
      oy = (i / ((int64_t)channel * out_w)) % out_h;
      const int64_t n = i / ((int64_t)channel * out_w * out_h);
      src = x + n * in_h * in_w * channel + c;
      pixel_stride = channel;
    } else {
      ox = i % out_w;
      oy = (i / out_w) % out_h;
      const int64_t plane = i / ((int64_t)out_w * out_h);
      src = x + plane * in_h * in_w;
      pixel_stride = 1;
    }
    using acc_t = at::opmath_type<scalar_t>;
    acc_t acc = 0;
    for (int ky = 0; ky < kernel_h; ++ky) {
      const int uy = oy * down_y + ky - pad_y0;
      if (uy < 0 || uy >= up_h || uy % up_y != 0) continue;
      const int iy = uy / up_y;
      for (int kx = 0; kx < kernel_w; ++kx) {
        const int ux = ox * down_x + kx - pad_x0;
        if (ux < 0 || ux >= up_w || ux % up_x != 0) continue;
        const acc_t tap = kernel[(kernel_h - 1 - ky) * kernel_w + (kernel_w - 1 - kx)];
        acc += static_cast<acc_t>(src[((int64_t)iy * in_w + ux / up_x) * pixel_stride]) * tap;
      }
    }
    out[i] = static_cast<scalar_t>(acc);
  }
}

torch::Tensor upfirdn2d_op(const torch::Tensor& input, const torch::Tensor& kernel, int up_x,
                           int up_y, int down_x, int down_y, int pad_x0, int pad_x1, int pad_y0,
                           int pad_y1) {
  const at::cuda::OptionalCUDAGuard device_guard(device_of(input));
  // channels-last input stays channels-last: converting it would cost two copies per call
  const auto format = input.suggest_memory_format();
  auto x = input.contiguous(format);
  auto k = kernel.contiguous();
  const int64_t batch = x.size(0), channel = x.size(1);
  const int in_h = x.size(2), in_w = x.size(3);
  const int kernel_h = k.size(0), kernel_w = k.size(1);
  const int out_h = (in_h * up_y + pad_y0 + pad_y1 - kernel_h + down_y) / down_y;
  const int out_w = (in_w * up_x + pad_x0 + pad_x1 - kernel_w + down_x) / down_x;
  TORCH_CHECK(out_h > 0 && out_w > 0, "upfirdn2d: padding leaves an empty output");
  auto out = at::empty({batch, channel, out_h, out_w}, x.options().memory_format(format));
  const int64_t count = out.numel();
  if (count == 0) return out;

  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((count + threads - 1) / threads, 65536);
  const bool channels_last = format == at::MemoryFormat::ChannelsLast;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(), "upfirdn2d", [&] {
        auto launch = channels_last ? upfirdn2d_kernel<scalar_t, true> : upfirdn2d_kernel<scalar_t, false>;
        launch<<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
            out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), k.data_ptr<float>(), batch, channel,
            in_h, in_w, out_h, out_w, kernel_h, kernel_w, up_x, up_y, down_x, down_y, pad_x0,
            pad_y0);
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}
