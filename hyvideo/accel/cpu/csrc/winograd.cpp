// Winograd F(2x2, 3x3) input and output transforms for the VAE's 3x3x3 causal convs on CPU (bfloat16).
//
// The GEMMs between them run in oneDNN through torch.mm (hyvideo/ops/winograd.py); these two kernels only
// move data: each reads its input once and writes its output once, with float32 arithmetic and one rounding
// to bfloat16 per written value. Reference: A. Lavin, S. Gray, "Fast Algorithms for Convolutional Neural
// Networks", CVPR 2016 (the B, G, A matrices of F(2x2, 3x3)).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "frames.h"

namespace {

using hyvideo::fast_exp;
using hyvideo::to_bf16;
using hyvideo::to_float;

constexpr int64_t kBlock = 32;  // channels per work item (one 64-byte line of bfloat16)

// The prologue applied to every input value as it is read: 0 none, 1 v * scale + shift (a GroupNorm with its
// statistics folded in), 2 SiLU of that.
template <int Mode>
inline float prologue(float v, float scale, float shift) {
  if constexpr (Mode == 0) {
    return v;
  } else {
    const float y = v * scale + shift;
    if constexpr (Mode == 1) return y;
    return y / (1.f + fast_exp(-y));
  }
}

// frames: T' tensors [C, H_s, W_s] (bfloat16, unit stride along W, rows W_s apart, any channel stride), the
// input frames of the conv in time order (a frame may repeat: replicate padding in time). pad = 0: the frames
// are already padded (H' = H_s, W' = W_s); pad = 1: they are not, and the 1-pixel replicate border is read
// by clamping (H' = H_s + 2, W' = W_s + 2). Returns V [16, rows * tw, T', C]: the transformed 4x4 input tiles
// (stride 2) of tile rows row0 .. row0 + rows - 1 of prologue(frames), xi = 4 a + b for row transform a and
// column transform b. Work item: one tile row, one frame, kBlock channels: the row transforms go to a float
// buffer, are transposed to [W', kBlock], and the column transforms and stores run contiguously over channels.
template <int Mode>
void input_transform_impl(const std::vector<const uint16_t*>& src, const std::vector<int64_t>& cstride,
                          int64_t C, int64_t Hs, int64_t Ws, int64_t pad, int64_t row0, int64_t rows,
                          const float* scale, const float* shift, uint16_t* O) {
  const int64_t Tp = static_cast<int64_t>(src.size()), Hp = Hs + 2 * pad, Wp = Ws + 2 * pad;
  const int64_t tw = (Wp - 2) / 2;
  const int64_t nb = (C + kBlock - 1) / kBlock;
  const int64_t xi_stride = rows * tw * Tp * C, tile_stride = Tp * C;
  at::parallel_for(0, rows * nb * Tp, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(5 * Wp * kBlock + 4 * Ws, 0.f);
    float* d = buf.data() + 5 * Wp * kBlock;  // [4][W_s]: the tile row's 4 input rows after the prologue
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t i = idx / (nb * Tp), cb = (idx / Tp) % nb, t = idx % Tp;
      const int64_t c0 = cb * kBlock, n = std::min(kBlock, C - c0);
      float* r = buf.data();  // [4][kBlock][W'] row transforms of this block's channels
      for (int64_t cl = 0; cl < n; ++cl) {  // B^T d along H: [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
        const int64_t c = c0 + cl;
        const float sc = scale ? scale[c] : 1.f, sh = shift ? shift[c] : 0.f;
        const uint16_t* p[4];
        for (int64_t k = 0; k < 4; ++k) {
          const int64_t h = std::min(std::max(2 * (row0 + i) + k - pad, int64_t{0}), Hs - 1);
          p[k] = src[t] + c * cstride[t] + h * Ws;
        }
        float *q0 = r + cl * Wp, *q1 = q0 + kBlock * Wp, *q2 = q1 + kBlock * Wp, *q3 = q2 + kBlock * Wp;
        // columns pad .. W' - pad - 1 read source columns 0 .. W_s - 1; the border columns are copies
        for (int64_t k = 0; k < 4; ++k) {
          float* dk = d + k * Ws;
          const uint16_t* pk = p[k];
#pragma omp simd
          for (int32_t w = 0; w < static_cast<int32_t>(Ws); ++w) dk[w] = prologue<Mode>(to_float(pk[w]), sc, sh);
        }
        const float *d0 = d, *d1 = d + Ws, *d2 = d1 + Ws, *d3 = d2 + Ws;
#pragma omp simd
        for (int64_t w = 0; w < Ws; ++w) {
          q0[pad + w] = d0[w] - d2[w];
          q1[pad + w] = d1[w] + d2[w];
          q2[pad + w] = d2[w] - d1[w];
          q3[pad + w] = d1[w] - d3[w];
        }
        if (pad) {
          for (float* q : {q0, q1, q2, q3}) {
            q[0] = q[1];
            q[Wp - 1] = q[Wp - 2];
          }
        }
      }
      float* rt = r + 4 * kBlock * Wp;  // one row transform, transposed to [W'][kBlock]
      for (int64_t a = 0; a < 4; ++a) {  // ... and along W, vectorised over channels
        const float* ra = r + a * kBlock * Wp;
        for (int64_t w0 = 0; w0 < Wp; w0 += 16) {  // blocked transpose [kBlock][W'] -> [W'][kBlock]
          const int64_t w1 = std::min(Wp, w0 + 16);
          for (int64_t cl = 0; cl < kBlock; ++cl)
            for (int64_t w = w0; w < w1; ++w) rt[w * kBlock + cl] = ra[cl * Wp + w];
        }
        for (int64_t j = 0; j < tw; ++j) {
          const float *e0 = rt + 2 * j * kBlock, *e1 = e0 + kBlock, *e2 = e1 + kBlock, *e3 = e2 + kBlock;
          uint16_t* o = O + 4 * a * xi_stride + (i * tw + j) * tile_stride + t * C + c0;
          uint16_t *o1 = o + xi_stride, *o2 = o1 + xi_stride, *o3 = o2 + xi_stride;
#pragma omp simd
          for (int64_t cl = 0; cl < n; ++cl) {
            o[cl] = to_bf16(e0[cl] - e2[cl]);
            o1[cl] = to_bf16(e1[cl] + e2[cl]);
            o2[cl] = to_bf16(e2[cl] - e1[cl]);
            o3[cl] = to_bf16(e1[cl] - e3[cl]);
          }
        }
      }
    }
  });
}

at::Tensor input_transform(at::TensorList frames, int64_t row0, int64_t rows, int64_t pad,
                           const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                           bool silu) {
  TORCH_CHECK(pad == 0 || pad == 1, "winograd input: pad must be 0 or 1");
  const hyvideo::Frames fr = hyvideo::gather_frames(frames, "winograd input");
  const int64_t C = fr.C, Hs = fr.H, Ws = fr.W;
  const std::vector<const uint16_t*>& src = fr.data;
  const std::vector<int64_t>& cstride = fr.cstride;
  const int64_t Hp = Hs + 2 * pad, Wp = Ws + 2 * pad;
  TORCH_CHECK(Hp >= 4 && Wp >= 4 && Hp % 2 == 0 && Wp % 2 == 0, "winograd input: H and W must be even and >= 2");
  const int64_t th = (Hp - 2) / 2, tw = (Wp - 2) / 2;
  TORCH_CHECK(row0 >= 0 && rows > 0 && row0 + rows <= th, "winograd input: tile rows out of range");
  TORCH_CHECK(scale.has_value() == shift.has_value() && (scale.has_value() || !silu),
              "winograd input: scale and shift go together, and silu needs them");
  at::Tensor sc, sh;
  if (scale.has_value()) {
    sc = scale->to(at::kFloat).contiguous();
    sh = shift->to(at::kFloat).contiguous();
    TORCH_CHECK(sc.numel() == C && sh.numel() == C, "winograd input: scale and shift need C entries");
  }
  at::Tensor V = at::empty({16, rows * tw, static_cast<int64_t>(frames.size()), C}, frames[0].options());
  auto* O = reinterpret_cast<uint16_t*>(V.data_ptr<at::BFloat16>());
  const float* s = scale.has_value() ? sc.data_ptr<float>() : nullptr;
  const float* b = scale.has_value() ? sh.data_ptr<float>() : nullptr;
  if (!scale.has_value())
    input_transform_impl<0>(src, cstride, C, Hs, Ws, pad, row0, rows, s, b, O);
  else if (!silu)
    input_transform_impl<1>(src, cstride, C, Hs, Ws, pad, row0, rows, s, b, O);
  else
    input_transform_impl<2>(src, cstride, C, Hs, Ws, pad, row0, rows, s, b, O);
  return V;
}

// M [16, rows * tw, C_out] (the 16 GEMM results) -> y [C_out, H, W] output rows 2 row0 .. 2 (row0 + rows) - 1:
// y = A^T M A (+ bias), or y += that with accumulate. Work item: one tile row, kBlock output channels; kJ
// tiles at a time are transformed vectorised over channels into a float buffer, then written row by row.
constexpr int64_t kJ = 16;

void output_transform(const at::Tensor& M, at::Tensor& y, int64_t row0, const std::optional<at::Tensor>& bias,
                      bool accumulate) {
  TORCH_CHECK(M.dim() == 3 && M.size(0) == 16 && M.scalar_type() == at::kBFloat16 && M.is_contiguous(),
              "winograd output: M must be a contiguous bfloat16 [16, tiles, C_out] tensor");
  TORCH_CHECK(y.dim() == 3 && y.scalar_type() == at::kBFloat16 && y.stride(2) == 1,
              "winograd output: y must be a bfloat16 [C_out, H, W] view with unit stride along W");
  const int64_t Co = y.size(0), H = y.size(1), W = y.size(2), tw = W / 2;
  TORCH_CHECK(M.size(2) == Co && W % 2 == 0 && M.size(1) % tw == 0, "winograd output: shape mismatch");
  const int64_t rows = M.size(1) / tw;
  TORCH_CHECK(row0 >= 0 && 2 * (row0 + rows) <= H, "winograd output: tile rows out of range");
  std::vector<float> bvec(Co, 0.f);
  if (bias.has_value()) {
    const at::Tensor bf = bias->to(at::kFloat).contiguous();
    TORCH_CHECK(bf.numel() == Co, "winograd output: bias must have C_out entries");
    std::copy(bf.data_ptr<float>(), bf.data_ptr<float>() + Co, bvec.begin());
  }
  const float* bb = bvec.data();
  const auto* P = reinterpret_cast<const uint16_t*>(M.data_ptr<at::BFloat16>());
  auto* Y = reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>());
  const int64_t sc = y.stride(0), sh = y.stride(1), xi_stride = rows * tw * Co;
  const int64_t nb = (Co + kBlock - 1) / kBlock;
  at::parallel_for(0, rows * nb, 1, [&](int64_t begin, int64_t end) {
    float ob[2][kBlock][2 * kJ];  // [output row of the tile][channel][2 kJ output columns]
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t i = idx / nb, c0 = (idx % nb) * kBlock, n = std::min(kBlock, Co - c0);
      for (int64_t j0 = 0; j0 < tw; j0 += kJ) {
        const int64_t nj = std::min(kJ, tw - j0);
        for (int64_t jj = 0; jj < nj; ++jj) {
          const uint16_t* m = P + (i * tw + j0 + jj) * Co + c0;
          float y00[kBlock], y01[kBlock], y10[kBlock], y11[kBlock];
#pragma omp simd
          for (int64_t cl = 0; cl < n; ++cl) {
            float v[16];
            for (int k = 0; k < 16; ++k) v[k] = to_float(m[k * xi_stride + cl]);
            float s0[4], s1[4];  // A^T M along H: [m0 + m1 + m2, m1 - m2 - m3]
            for (int q = 0; q < 4; ++q) {
              s0[q] = v[q] + v[4 + q] + v[8 + q];
              s1[q] = v[4 + q] - v[8 + q] - v[12 + q];
            }
            const float b = bb[c0 + cl];
            y00[cl] = s0[0] + s0[1] + s0[2] + b;
            y01[cl] = s0[1] - s0[2] - s0[3] + b;
            y10[cl] = s1[0] + s1[1] + s1[2] + b;
            y11[cl] = s1[1] - s1[2] - s1[3] + b;
          }
          for (int64_t cl = 0; cl < n; ++cl) {
            ob[0][cl][2 * jj] = y00[cl];
            ob[0][cl][2 * jj + 1] = y01[cl];
            ob[1][cl][2 * jj] = y10[cl];
            ob[1][cl][2 * jj + 1] = y11[cl];
          }
        }
        for (int64_t cl = 0; cl < n; ++cl) {
          for (int64_t rr = 0; rr < 2; ++rr) {
            uint16_t* o = Y + (c0 + cl) * sc + (2 * (row0 + i) + rr) * sh + 2 * j0;
            const float* src = ob[rr][cl];
            if (accumulate) {  // y += conv: the residual add of a resnet, with one rounding
#pragma omp simd
              for (int64_t u = 0; u < 2 * nj; ++u) o[u] = to_bf16(src[u] + to_float(o[u]));
            } else {
#pragma omp simd
              for (int64_t u = 0; u < 2 * nj; ++u) o[u] = to_bf16(src[u]);
            }
          }
        }
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY(hyvideo_winograd, m) {
  m.def("input_transform(Tensor[] frames, int row0, int rows, int pad, Tensor? scale, Tensor? shift, "
        "bool silu) -> Tensor");
  m.def("output_transform(Tensor M, Tensor(a!) y, int row0, Tensor? bias, bool accumulate) -> ()");
}

TORCH_LIBRARY_IMPL(hyvideo_winograd, CPU, m) {
  m.impl("input_transform", &input_transform);
  m.impl("output_transform", &output_transform);
}
