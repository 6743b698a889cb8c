// The frame lists that hyvideo's Winograd input transforms read: one [C, H, W] bfloat16 view per input frame.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace hyvideo {

struct Frames {
  int64_t C, H, W;
  std::vector<const uint16_t*> data;  // first element of each frame
  std::vector<int64_t> cstride;       // channel stride of each frame (rows are contiguous)
};

// Checks that every frame is a bfloat16 [C, H, W] view shaped like the first, with unit stride along W and
// rows W apart (any channel stride: frames of a larger chunk are fine), and collects their pointers.
inline Frames gather_frames(at::TensorList frames, const char* op) {
  TORCH_CHECK(!frames.empty() && frames[0].dim() == 3, op, ": frames must be a non-empty list of [C, H, W] views");
  Frames out{frames[0].size(0), frames[0].size(1), frames[0].size(2), {}, {}};
  for (const at::Tensor& f : frames) {
    TORCH_CHECK(f.dim() == 3 && f.size(0) == out.C && f.size(1) == out.H && f.size(2) == out.W &&
                    f.scalar_type() == at::kBFloat16 && f.stride(2) == 1 && f.stride(1) == out.W,
                op, ": every frame must be a bfloat16 [C, H, W] view with contiguous rows, like the first");
    out.data.push_back(reinterpret_cast<const uint16_t*>(f.data_ptr<at::BFloat16>()));
    out.cstride.push_back(f.stride(0));
  }
  return out;
}

}  // namespace hyvideo
