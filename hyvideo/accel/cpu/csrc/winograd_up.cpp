// Winograd F(2x2, 2x2) transforms for the VAE decoder's upsampler convs in polyphase form (CPU, bfloat16).
//
// Nearest x2 upsampling (per spatial axis) followed by the replicate-padded 3x3 conv is, per output phase,
// a 2x2 conv of the replicate-padded input with folded weights (hyvideo.vae.causal_conv.polyphase_kernel).
// All phases read the same input tiles, so the input is transformed once (V = B^T d B on 3x3 tiles, stride 2)
// and one GEMM per transformed element covers every phase and output channel (N = P C_out, with the time taps
// along K); the output transform (Y = A^T M A) writes each phase's 2x2 results straight into their interleaved
// places of the upsampled [C_out, 2H, 2W] frame. 9 multiplies per 2x2 outputs of a phase instead of 16.
// 1D F(2, 2): B^T d = [d0 - d1, d1, d2 - d1], G g = [g0, g0 + g1, g1], A^T m = [m0 + m1, m1 + m2].
// Reference: A. Lavin, S. Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "frames.h"

namespace {

using hyvideo::to_bf16;
using hyvideo::to_float;

constexpr int64_t kBlock = 32;  // channels per work item

// frames: T' tensors [C, H, W] (bfloat16, contiguous rows, any channel stride), the phase conv's input frames
// in time order. Position p (0..H) of a phase conv reads replicate-padded rows p, p + 1 = source rows
// clamp(p - 1), clamp(p); tile k covers positions 2k, 2k + 1 (padded rows 2k .. 2k + 2), so H / 2 + 1 tile
// rows and W / 2 + 1 tile columns cover positions 0..H. Returns V [9, rows * tw, T', C] for tile rows
// row0 .. row0 + rows - 1, xi = 3 a + b.
at::Tensor up_input_transform(at::TensorList frames, int64_t row0, int64_t rows) {
  const hyvideo::Frames fr = hyvideo::gather_frames(frames, "winograd up input");
  const int64_t C = fr.C, H = fr.H, W = fr.W;
  const std::vector<const uint16_t*>& src = fr.data;
  const std::vector<int64_t>& cstride = fr.cstride;
  TORCH_CHECK(H % 2 == 0 && W % 2 == 0 && H >= 2 && W >= 2, "winograd up input: H and W must be even");
  const int64_t th = H / 2 + 1, tw = W / 2 + 1, Tp = static_cast<int64_t>(frames.size());
  TORCH_CHECK(row0 >= 0 && rows > 0 && row0 + rows <= th, "winograd up input: tile rows out of range");
  const int64_t Wq = 2 * tw + 1;  // padded columns 0 .. W + 2 (source column clamp(P - 1))
  at::Tensor V = at::empty({9, rows * tw, Tp, C}, frames[0].options());
  auto* O = reinterpret_cast<uint16_t*>(V.data_ptr<at::BFloat16>());
  const int64_t nb = (C + kBlock - 1) / kBlock, xi_stride = rows * tw * Tp * C, tile_stride = Tp * C;
  at::parallel_for(0, rows * nb * Tp, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(4 * Wq * kBlock, 0.f);
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t i = idx / (nb * Tp), cb = (idx / Tp) % nb, t = idx % Tp;
      const int64_t c0 = cb * kBlock, n = std::min(kBlock, C - c0);
      float* r = buf.data();  // [3][kBlock][Wq] row transforms
      for (int64_t cl = 0; cl < n; ++cl) {
        const uint16_t* p[3];
        for (int64_t k = 0; k < 3; ++k) {
          const int64_t h = std::min(std::max(2 * (row0 + i) + k - 1, int64_t{0}), H - 1);
          p[k] = src[t] + (c0 + cl) * cstride[t] + h * W;
        }
        float *q0 = r + cl * Wq, *q1 = q0 + kBlock * Wq, *q2 = q1 + kBlock * Wq;
#pragma omp simd
        for (int64_t w = 0; w < W; ++w) {  // padded column w + 1
          const float d0 = to_float(p[0][w]), d1 = to_float(p[1][w]), d2 = to_float(p[2][w]);
          q0[w + 1] = d0 - d1;
          q1[w + 1] = d1;
          q2[w + 1] = d2 - d1;
        }
        for (float* q : {q0, q1, q2}) {  // replicate border: column 0 and columns W + 1 ..
          q[0] = q[1];
          for (int64_t w = W + 1; w < Wq; ++w) q[w] = q[W];
        }
      }
      float* rt = r + 3 * kBlock * Wq;  // one row transform, transposed to [Wq][kBlock]
      for (int64_t a = 0; a < 3; ++a) {
        const float* ra = r + a * kBlock * Wq;
        for (int64_t w0 = 0; w0 < Wq; w0 += 16) {
          const int64_t w1 = std::min(Wq, w0 + 16);
          for (int64_t cl = 0; cl < kBlock; ++cl)
            for (int64_t w = w0; w < w1; ++w) rt[w * kBlock + cl] = ra[cl * Wq + w];
        }
        for (int64_t j = 0; j < tw; ++j) {
          const float *e0 = rt + 2 * j * kBlock, *e1 = e0 + kBlock, *e2 = e1 + kBlock;
          uint16_t* o = O + 3 * a * xi_stride + (i * tw + j) * tile_stride + t * C + c0;
          uint16_t *o1 = o + xi_stride, *o2 = o1 + xi_stride;
#pragma omp simd
          for (int64_t cl = 0; cl < n; ++cl) {
            o[cl] = to_bf16(e0[cl] - e1[cl]);
            o1[cl] = to_bf16(e1[cl]);
            o2[cl] = to_bf16(e2[cl] - e1[cl]);
          }
        }
      }
    }
  });
  return V;
}

// M [9, rows * tw, P C_out] (P = number of time phases x 4 spatial phases, phase-major: channel
// ((pt * 2 + ph) * 2 + pw) C_out + co) -> the upsampled frames outs[k] [C_out, 2H, 2W] of time phases
// phases[k]. Tile (ky, kx), spatial phase (ph, pw) and A^T rows (a, b) give input position (2 ky + a - ph,
// 2 kx + b - pw) of that phase, i.e. output pixel (4 ky + 2 a - ph, 4 kx + 2 b - pw): each tile row writes
// output rows 4 ky - 1 .. 4 ky + 2 (those inside the frame). y = A^T M A + bias, rounded once.
void up_output_transform(const at::Tensor& M, at::TensorList outs, at::IntArrayRef phases, int64_t row0,
                         const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(M.dim() == 3 && M.size(0) == 9 && M.scalar_type() == at::kBFloat16 && M.is_contiguous(),
              "winograd up output: M must be a contiguous bfloat16 [9, tiles, P C_out] tensor");
  TORCH_CHECK(!outs.empty() && outs.size() == phases.size(), "winograd up output: one time phase per frame");
  const int64_t Co = outs[0].size(0), H2 = outs[0].size(1), W2 = outs[0].size(2);
  const int64_t tw = W2 / 4 + 1, rows = M.size(1) / tw, N = M.size(2);
  TORCH_CHECK(H2 % 4 == 0 && W2 % 4 == 0 && M.size(1) % tw == 0 && N % (4 * Co) == 0,
              "winograd up output: shape mismatch");
  TORCH_CHECK(row0 >= 0 && row0 + rows <= H2 / 4 + 1, "winograd up output: tile rows out of range");
  std::vector<uint16_t*> dst;
  std::vector<int64_t> sc, sh;
  for (size_t k = 0; k < outs.size(); ++k) {
    const at::Tensor& y = outs[k];
    TORCH_CHECK(y.dim() == 3 && y.size(0) == Co && y.size(1) == H2 && y.size(2) == W2 &&
                    y.scalar_type() == at::kBFloat16 && y.stride(2) == 1,
                "winograd up output: frames must be bfloat16 [C_out, 2H, 2W] views with unit stride along W");
    TORCH_CHECK(phases[k] >= 0 && (phases[k] + 1) * 4 * Co <= N, "winograd up output: time phase out of range");
    dst.push_back(reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>()));
    sc.push_back(y.stride(0));
    sh.push_back(y.stride(1));
  }
  std::vector<float> bvec(Co, 0.f);
  if (bias.has_value()) {
    const at::Tensor bf = bias->to(at::kFloat).contiguous();
    TORCH_CHECK(bf.numel() >= Co, "winograd up output: bias must have C_out entries");
    std::copy(bf.data_ptr<float>(), bf.data_ptr<float>() + Co, bvec.begin());
  }
  const auto* P = reinterpret_cast<const uint16_t*>(M.data_ptr<at::BFloat16>());
  const int64_t xi_stride = rows * tw * N, nb = (Co + kBlock - 1) / kBlock, nk = static_cast<int64_t>(outs.size());
  const int64_t Wb = 4 * tw;  // buffer columns: output columns -1 .. 4 tw - 2
  at::parallel_for(0, rows * nb * nk, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> ob(4 * kBlock * Wb);  // [4 output rows][kBlock][Wb]
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t i = idx / (nb * nk), cb = (idx / nk) % nb, k = idx % nk;
      const int64_t c0 = cb * kBlock, n = std::min(kBlock, Co - c0), pt = phases[k];
      for (int64_t kx = 0; kx < tw; ++kx) {
        for (int64_t ph = 0; ph < 2; ++ph) {
          for (int64_t pw = 0; pw < 2; ++pw) {
            const uint16_t* m = P + (i * tw + kx) * N + ((pt * 2 + ph) * 2 + pw) * Co + c0;
            float y00[kBlock], y01[kBlock], y10[kBlock], y11[kBlock];
#pragma omp simd
            for (int64_t cl = 0; cl < n; ++cl) {
              float v[9];
              for (int e = 0; e < 9; ++e) v[e] = to_float(m[e * xi_stride + cl]);
              const float s0[3] = {v[0] + v[3], v[1] + v[4], v[2] + v[5]};  // A^T along H: rows a = 0, 1
              const float s1[3] = {v[3] + v[6], v[4] + v[7], v[5] + v[8]};
              y00[cl] = s0[0] + s0[1];
              y01[cl] = s0[1] + s0[2];
              y10[cl] = s1[0] + s1[1];
              y11[cl] = s1[1] + s1[2];
            }
            for (int64_t cl = 0; cl < n; ++cl) {  // buffer row 2 a - ph + 1, column 4 kx + 2 b - pw + 1
              float* r0 = ob.data() + ((1 - ph) * kBlock + cl) * Wb + 4 * kx - pw + 1;
              float* r1 = ob.data() + ((3 - ph) * kBlock + cl) * Wb + 4 * kx - pw + 1;
              r0[0] = y00[cl];
              r0[2] = y01[cl];
              r1[0] = y10[cl];
              r1[2] = y11[cl];
            }
          }
        }
      }
      for (int64_t rr = 0; rr < 4; ++rr) {
        const int64_t row = 4 * (row0 + i) - 1 + rr;
        if (row < 0 || row >= H2) continue;
        for (int64_t cl = 0; cl < n; ++cl) {
          const float* s = ob.data() + (rr * kBlock + cl) * Wb + 1;  // output column 0
          uint16_t* o = dst[k] + (c0 + cl) * sc[k] + row * sh[k];
          const float b = bvec[c0 + cl];
#pragma omp simd
          for (int64_t u = 0; u < W2; ++u) o[u] = to_bf16(s[u] + b);
        }
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY(hyvideo_winograd_up, m) {
  m.def("input_transform(Tensor[] frames, int row0, int rows) -> Tensor");
  m.def("output_transform(Tensor M, Tensor(a!)[] outs, int[] phases, int row0, Tensor? bias) -> ()");
}

TORCH_LIBRARY_IMPL(hyvideo_winograd_up, CPU, m) {
  m.impl("input_transform", &up_input_transform);
  m.impl("output_transform", &up_output_transform);
}
