// The order in which contiguous (N, C, S) input is visited for a per-channel reduction
// followed by an optional elementwise pass:
//   reduce(n, c) -> Partial for every plane; merge the partials of a channel in sample order;
//   finish(c, total); then apply(n, c) for every plane.
// Long planes are walked a channel at a time, so apply re-reads the channel from cache.
// Short planes (runs too short for the hardware prefetcher when strided by C·S) are reduced
// in memory order, partials kept, and merged afterwards. The merge order is the same either
// way, so the result is bitwise the same whatever the path and the thread count.
#pragma once

#include <ATen/Parallel.h>

#include <vector>

#include "../common/tensor_checks.h"

namespace fusedbn::cpu {

template <typename Partial, typename Reduce, typename Merge, typename Finish, typename Apply>
void walk_channels(const detail::KernelLayout& l, int64_t element_bytes, Reduce&& reduce, Merge&& merge,
                   Finish&& finish, Apply&& apply) {
  constexpr int64_t kLongPlaneBytes = 16 * 1024;
  const int64_t N = l.batch, C = l.channels;
  if (l.spatial * element_bytes >= kLongPlaneBytes) {
    at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        Partial total{};
        for (int64_t n = 0; n < N; ++n) total = merge(total, reduce(n, c));
        finish(c, total);
        for (int64_t n = 0; n < N; ++n) apply(n, c);
      }
    });
    return;
  }
  std::vector<Partial> partials(N * C);
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) partials[p] = reduce(p / C, p % C);
  });
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      Partial total{};
      for (int64_t n = 0; n < N; ++n) total = merge(total, partials[n * C + c]);
      finish(c, total);
    }
  });
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) apply(p / C, p % C);
  });
}

// No elementwise pass.
inline constexpr auto kNoApply = [](int64_t, int64_t) {};

}  // namespace fusedbn::cpu
