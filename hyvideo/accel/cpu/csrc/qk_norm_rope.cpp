// RMSNorm of the DiT's query / key heads followed by the 3D RoPE rotation, in one pass (CPU, bfloat16).
//
// Per row (sample, token, head) of D_h values: float32 mean square, x / sqrt(ms + eps) * weight, then the
// interleaved-pair rotation out[2m] = y[2m] cos[2m] - y[2m+1] sin[2m], out[2m+1] = y[2m+1] cos[2m+1] +
// y[2m] sin[2m+1] for tokens below the table length (the rest, e.g. text tokens, are not rotated), rounded
// once to bfloat16 and written into a view of the joint [img; txt] buffer (no concatenation afterwards).
// Same math as hyvideo.models.norms.RMSNorm + hyvideo.models.rope.apply_rope in float32 (spec 1.6, 1.8).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"

namespace {

using hyvideo::to_bf16;
using hyvideo::to_float;

// x, out [B, L, H, D] bfloat16 with unit stride along D; weight [D]; cos, sin [L_r, D] float32 (L_r <= L) or
// absent (no rotation).
void qk_norm_rope(const at::Tensor& x, const at::Tensor& weight, double eps, const std::optional<at::Tensor>& cos,
                  const std::optional<at::Tensor>& sin, at::Tensor& out) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kBFloat16 && x.stride(3) == 1,
              "qk_norm_rope: x must be a bfloat16 [B, L, H, D] view with unit stride along D");
  TORCH_CHECK(out.sizes() == x.sizes() && out.scalar_type() == at::kBFloat16 && out.stride(3) == 1,
              "qk_norm_rope: out must be a bfloat16 view shaped like x with unit stride along D");
  const int64_t B = x.size(0), L = x.size(1), H = x.size(2), D = x.size(3);
  TORCH_CHECK(D % 2 == 0 && weight.numel() == D, "qk_norm_rope: D must be even and weight must have D entries");
  TORCH_CHECK(cos.has_value() == sin.has_value(), "qk_norm_rope: cos and sin go together");
  std::vector<float> w(D);
  const at::Tensor wf = weight.to(at::kFloat).contiguous();
  std::copy(wf.data_ptr<float>(), wf.data_ptr<float>() + D, w.begin());
  at::Tensor c, s;
  int64_t Lr = 0;
  if (cos.has_value()) {
    c = cos->to(at::kFloat).contiguous();
    s = sin->to(at::kFloat).contiguous();
    TORCH_CHECK(c.dim() == 2 && c.size(1) == D && c.sizes() == s.sizes() && c.size(0) <= L,
                "qk_norm_rope: cos / sin must be [L_r, D] with L_r <= L");
    Lr = c.size(0);
  }
  const float* C = Lr ? c.data_ptr<float>() : nullptr;
  const float* S = Lr ? s.data_ptr<float>() : nullptr;
  const auto* X = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
  auto* O = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  const float fe = static_cast<float>(eps);
  at::parallel_for(0, B * L, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> y(D);
    for (int64_t bl = begin; bl < end; ++bl) {
      const int64_t b = bl / L, l = bl % L;
      for (int64_t h = 0; h < H; ++h) {
        const uint16_t* p = X + b * x.stride(0) + l * x.stride(1) + h * x.stride(2);
        uint16_t* o = O + b * out.stride(0) + l * out.stride(1) + h * out.stride(2);
        float ss = 0.f;
#pragma omp simd reduction(+ : ss)
        for (int64_t d = 0; d < D; ++d) {
          y[d] = to_float(p[d]);
          ss += y[d] * y[d];
        }
        const float r = 1.f / std::sqrt(ss / static_cast<float>(D) + fe);
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) y[d] = y[d] * r * w[d];
        if (l < Lr) {
          const float *cl = C + l * D, *sl = S + l * D;
#pragma omp simd
          for (int64_t m = 0; m < D / 2; ++m) {
            const float e = y[2 * m], od = y[2 * m + 1];
            o[2 * m] = to_bf16(e * cl[2 * m] - od * sl[2 * m]);
            o[2 * m + 1] = to_bf16(od * cl[2 * m + 1] + e * sl[2 * m + 1]);
          }
        } else {
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) o[d] = to_bf16(y[d]);
        }
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY(hyvideo_rope, m) {
  m.def("qk_norm_rope(Tensor x, Tensor weight, float eps, Tensor? cos, Tensor? sin, Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(hyvideo_rope, CPU, m) { m.impl("qk_norm_rope", &qk_norm_rope); }
