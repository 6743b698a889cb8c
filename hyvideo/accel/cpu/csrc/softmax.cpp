// In-place softmax over the rows of a bfloat16 score matrix, for the "gemm" attention backend on CPU
// (hyvideo/ops/attention.py). One read and one write of the scores: each row is converted to float32 once,
// its max, exp and sum are taken in float32 in a row-sized buffer, and the normalised row is rounded to
// bfloat16 in place (PyTorch's softmax on a bfloat16 tensor computes the same in float32 but writes a new
// tensor and runs a generic exp).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "common.h"

namespace {

using hyvideo::fast_exp;
using hyvideo::to_bf16;
using hyvideo::to_float;

// x [R, N] bfloat16 with unit stride along N: every row replaced by its softmax. Returns x.
at::Tensor softmax_(at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kBFloat16 && x.stride(1) == 1 && x.size(1) > 0,
              "softmax_: x must be a bfloat16 [R, N] matrix (N > 0) with unit stride along N");
  const int64_t R = x.size(0), N = x.size(1), ld = x.stride(0);
  auto* X = reinterpret_cast<uint16_t*>(x.data_ptr<at::BFloat16>());
  at::parallel_for(0, R, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(N);
    float* e = buf.data();
    for (int64_t r = begin; r < end; ++r) {
      uint16_t* row = X + r * ld;
      float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
      for (int64_t j = 0; j < N; ++j) m = std::max(m, to_float(row[j]));
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < N; ++j) {
        e[j] = fast_exp(to_float(row[j]) - m);
        s += e[j];
      }
      const float inv = 1.f / s;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) row[j] = to_bf16(e[j] * inv);
    }
  });
  return x;
}

}  // namespace

TORCH_LIBRARY(hyvideo_attention, m) { m.def("softmax_(Tensor(a!) x) -> Tensor(a!)"); }

TORCH_LIBRARY_IMPL(hyvideo_attention, CPU, m) { m.impl("softmax_", &softmax_); }
