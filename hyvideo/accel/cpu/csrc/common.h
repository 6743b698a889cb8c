// Scalar helpers shared by hyvideo's C++ CPU kernels, written so that loops over them vectorise (-O3).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace hyvideo {

inline float to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint16_t to_bf16(float f) {  // round to nearest even, as at::BFloat16
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// exp(x) in float32, written so that the compiler vectorises it: 2^n * p(f) with n the nearest integer to
// x log2(e) (clamped to the normal range, so exp(-inf) gives 2^-126 rather than 0) and p a degree-6 Taylor
// polynomial of 2^f, |f| <= 1/2 (relative error < 3e-7, far below the bfloat16 rounding of the results).
inline float fast_exp(float x) {
  const float t = std::min(std::max(x * 1.44269504088896341f, -126.f), 126.f);
  const float shifted = t + 12582912.f;  // 1.5 * 2^23: the low mantissa bits now hold round(t)
  const float n = shifted - 12582912.f;
  const float f = (t - n) * 0.693147180559945309f;
  float p = 1.f / 720;
  p = p * f + 1.f / 120;
  p = p * f + 1.f / 24;
  p = p * f + 1.f / 6;
  p = p * f + 0.5f;
  p = p * f + 1.f;
  p = p * f + 1.f;
  const int32_t bits = (__builtin_bit_cast(int32_t, shifted) - 0x4B400000 + 127) << 23;  // 2^round(t)
  return p * __builtin_bit_cast(float, bits);
}

}  // namespace hyvideo
