// Batch statistics: Welford partials per block for each layout, then one ordered merge per
// channel. Two launches rather than a last-block-done merge: the merge order is then fixed by
// construction (bitwise reproducible) and the partials need no counter to reset.
#pragma once

// First: under FUSEDBN_SIMT it defines the CUDA qualifiers the common headers use.
#include "portability.h"

#include <cmath>
#include <cstdint>

#include "../common/welford.h"
#include "block_reduce.cuh"
#include "kernel_args.cuh"
#include "memory_access.cuh"

namespace fusedbn::cuda {

// One channel's partial statistics.
template <typename acc_t>
using WelfordPartial = WelfordLanes<acc_t, 1>;

// Contiguous input. Grid (plane_groups * chunks, min(C, 65535)), block (bx, by). Block (k, c)
// reduces span k % chunks of the planes in group k / chunks of channel c into
// partials[k * C + c]. A thread keeps V Welford lanes that share one count for its vectors
// (one division per vector) and one scalar state for the unaligned ends.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    plane_statistics_kernel(const scalar_t* __restrict__ x, PlaneGeometry g,
                            WelfordPartial<acc_t>* __restrict__ partials) {
  constexpr int V = kVectorWidth<scalar_t>;
  using State = WelfordPartial<acc_t>;
  FUSEDBN_SHARED_ARRAY(State, shared, kThreads / kWarpSize);
  const unsigned chunks = unsigned(g.chunks);  // < 2^16: a 32-bit division, not a 64-bit call
  const int64_t group = blockIdx.x / chunks, span = blockIdx.x % chunks;
  const int64_t begin = g.begin(span), end = g.end(span);
  for (int64_t c = blockIdx.y; c < g.channels; c += gridDim.y) {
    const acc_t shift = static_cast<acc_t>(device::load(x + c * g.spatial));  // see channel_shift
    WelfordLanes<acc_t, V> lanes{};
    State ends{};
    for (int64_t n = group * blockDim.y + threadIdx.y; n < g.batch; n += g.plane_groups * blockDim.y) {
      const scalar_t* plane = x + (n * g.channels + c) * g.spatial;
      for_each_in_span<V>(
          plane, begin, end, threadIdx.x, blockDim.x, g.vector,
          [&](int64_t i) {
            ends.count += 1;
            welford_step(ends.mean[0], ends.m2[0], static_cast<acc_t>(device::load(plane + i)) - shift,
                         acc_t(1) / acc_t(ends.count));
          },
          [&](int64_t i) {
            acc_t v[V];
            load_lanes<V>(plane + i, V, true, v);
            lanes.count += 1;
            const acc_t inv_count = acc_t(1) / acc_t(lanes.count);
            for (int j = 0; j < V; ++j) welford_step(lanes.mean[j], lanes.m2[j], v[j] - shift, inv_count);
          });
    }
    State s = ends;
    for (int j = 0; j < V; ++j) s = merge(s, State{{lanes.mean[j]}, {lanes.m2[j]}, lanes.count});
    s = reduce_block(s, shared);
    if (threadIdx.x == 0 && threadIdx.y == 0) device::store(partials + int64_t(blockIdx.x) * g.channels + c, s);
  }
}

// Channels_last input. Grid (ceil(C / (V * bx)), splits), block (bx, by). Each thread runs
// Welford on its V channels over its rows (one count for all lanes); block (i, k) writes its
// channels' partials to partials[k * C + channel].
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    row_statistics_kernel(const scalar_t* __restrict__ x, RowGeometry g,
                          WelfordPartial<acc_t>* __restrict__ partials) {
  constexpr int V = kVectorWidth<scalar_t>;
  using State = WelfordLanes<acc_t, V>;
  FUSEDBN_SHARED_ARRAY(State, shared, kThreads);  // blockDim.x <= 32 columns per warp
  const int64_t c0 = first_channel<V>();
  const int count = int(min_of<int64_t>(V, g.channels - c0));  // <= 0: a thread past the last channel
  State s{};
  if (count > 0) {
    acc_t shift[V];  // see channel_shift
    load_lanes<V>(x + c0, count, g.vector, shift);
    for (int64_t r = first_row(); r < g.rows; r += row_stride()) {
      acc_t v[V];
      load_lanes<V>(x + r * g.channels + c0, count, g.vector, v);
      s.count += 1;
      const acc_t inv_count = acc_t(1) / acc_t(s.count);
      for (int j = 0; j < V; ++j) welford_step(s.mean[j], s.m2[j], v[j] - shift[j], inv_count);
    }
  }
  s = reduce_block_columns(s, shared);
  if (threadIdx.y == 0) {
    for (int j = 0; j < V; ++j) {  // a constant trip count keeps `s` in registers
      if (j < count) {
        device::store(partials + int64_t(blockIdx.y) * g.channels + c0 + j,
                      WelfordPartial<acc_t>{{s.mean[j]}, {s.m2[j]}, s.count});
      }
    }
  }
}

// The partials hold the statistics of x - shift_c, where shift_c is the channel's first value
// (x[c * shift_stride]: S for contiguous input, 1 for channels_last). Welford in float32 stalls
// once delta / count falls under half an ulp of the mean: shifting by a value of the channel
// keeps the running mean near zero, where ulps are small. The variance is shift-invariant.
//
// Block (32, 8), one warp per channel (merge_partials), grid-stride over channels: writes the
// biased mean and variance and invstd = 1 / sqrt(var + eps), all acc_t. Needs count > 0.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    finalize_statistics_kernel(const WelfordPartial<acc_t>* __restrict__ partials, int64_t splits,
                               int64_t channels, const scalar_t* __restrict__ x, int64_t shift_stride, acc_t eps,
                               acc_t* __restrict__ mean, acc_t* __restrict__ var, acc_t* __restrict__ invstd) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; c < channels;
       c += int64_t(gridDim.x) * blockDim.y) {
    const WelfordPartial<acc_t> total = merge_partials(partials, splits, channels, c);
    if (threadIdx.x == 0) {
      const acc_t variance = total.m2[0] / acc_t(total.count);
      const acc_t root = ::sqrt(variance + eps);  // rounded to acc_t first, as the CPU code does
      device::store(mean + c, total.mean[0] + static_cast<acc_t>(device::load(x + c * shift_stride)));
      device::store(var + c, variance);
      device::store(invstd + c, acc_t(1) / root);
    }
  }
}

}  // namespace fusedbn::cuda
