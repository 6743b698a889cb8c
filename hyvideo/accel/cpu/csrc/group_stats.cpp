// GroupNorm statistics of a bfloat16 activation chunk in one read, for the lean VAE decode
// (hyvideo/ops/lean_conv.py: group_norm_affine merges the chunks' results with Chan et al.'s formula).
//
// Shifted sums: per (sample, group) the values are taken relative to the group's first value K, summed in
// float32 over blocks of at most kSpan elements and across blocks in float64, so mean = K + S1 / n and
// M2 = S2 - S1^2 / n stay accurate even when |mean| >> std (no E[x^2] - mean^2 cancellation around zero).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include "common.h"

namespace {

using hyvideo::to_float;

constexpr int64_t kSpan = 4096;

// x [B, C, T, H, W] bfloat16 with contiguous frames (unit stride along W, H rows W apart), any other strides;
// C divisible by groups. Returns (mean, m2), both [B, groups] float64: the mean and the sum of squared
// deviations over each group's C / groups channels x T x H x W values.
std::tuple<at::Tensor, at::Tensor> group_stats(const at::Tensor& x, int64_t groups) {
  TORCH_CHECK(x.dim() == 5 && x.scalar_type() == at::kBFloat16 && x.stride(4) == 1 && x.stride(3) == x.size(4),
              "group_stats: x must be a bfloat16 [B, C, T, H, W] tensor with contiguous frames");
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), HW = x.size(3) * x.size(4);
  TORCH_CHECK(groups > 0 && C % groups == 0, "group_stats: C must be divisible by groups");
  TORCH_CHECK(T > 0 && HW > 0, "group_stats: empty input");
  const int64_t cg = C / groups;
  const auto* X = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
  const int64_t sb = x.stride(0), sc = x.stride(1), st = x.stride(2);
  std::vector<double> s1(B * C), s2(B * C);  // per (sample, channel): shifted sums
  std::vector<float> shift(B * groups);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < groups; ++g) shift[b * groups + g] = to_float(X[b * sb + g * cg * sc]);
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t b = idx / C, c = idx % C;
      const float k = shift[b * groups + c / cg];
      double a1 = 0, a2 = 0;
      for (int64_t t = 0; t < T; ++t) {
        const uint16_t* p = X + b * sb + c * sc + t * st;
        for (int64_t j0 = 0; j0 < HW; j0 += kSpan) {
          const int64_t j1 = std::min(HW, j0 + kSpan);
          float f1 = 0.f, f2 = 0.f;
#pragma omp simd reduction(+ : f1, f2)
          for (int64_t j = j0; j < j1; ++j) {
            const float d = to_float(p[j]) - k;
            f1 += d;
            f2 += d * d;
          }
          a1 += f1;
          a2 += f2;
        }
      }
      s1[idx] = a1;
      s2[idx] = a2;
    }
  });
  at::Tensor mean = at::empty({B, groups}, x.options().dtype(at::kDouble));
  at::Tensor m2 = at::empty({B, groups}, x.options().dtype(at::kDouble));
  double* pm = mean.data_ptr<double>();
  double* pv = m2.data_ptr<double>();
  const double n = static_cast<double>(cg * T * HW);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t g = 0; g < groups; ++g) {
      double a1 = 0, a2 = 0;
      for (int64_t c = g * cg; c < (g + 1) * cg; ++c) {
        a1 += s1[b * C + c];
        a2 += s2[b * C + c];
      }
      pm[b * groups + g] = shift[b * groups + g] + a1 / n;
      pv[b * groups + g] = std::max(a2 - a1 * a1 / n, 0.0);
    }
  }
  return {mean, m2};
}

}  // namespace

TORCH_LIBRARY(hyvideo_norm, m) { m.def("group_stats(Tensor x, int groups) -> (Tensor, Tensor)"); }

TORCH_LIBRARY_IMPL(hyvideo_norm, CPU, m) { m.impl("group_stats", &group_stats); }
