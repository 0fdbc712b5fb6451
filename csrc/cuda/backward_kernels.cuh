// The backward reduction: per channel Σg and Σg·(x - mean), with g = dy · act'(z) and
// z = x · scale + shift recomputed from x (never an activation-sized intermediate), as block
// partials for each layout and then one ordered sum per channel. The math, and how these sums
// become dx, dweight and dbias, is derived in csrc/common/batch_norm_math.h.
#pragma once

// First: under FUSEDBN_SIMT it defines the CUDA qualifiers the common headers use.
#include "portability.h"

#include <cstdint>

#include "../common/activation.h"
#include "../common/batch_norm_math.h"
#include "block_reduce.cuh"
#include "kernel_args.cuh"
#include "memory_access.cuh"

namespace fusedbn::cuda {

// One channel's partial sums.
template <typename acc_t>
using GradientPartial = GradientSums<acc_t, 1>;

// A channel's constants for the reduction: adds one value's g and g·(x - mean) to the sums.
template <typename acc_t, Activation A>
struct GradientTerm {
  ForwardCoefficients<acc_t> f;
  acc_t mean;

  __device__ FUSEDBN_INLINE void add(acc_t x, acc_t dy, acc_t param, acc_t& sum_g, acc_t& sum_gx) const {
    const acc_t g = dy * ActivationFn<A>::derivative(x * f.scale + f.shift, param);
    sum_g += g;
    sum_gx += g * (x - mean);
  }
};

template <typename acc_t, Activation A>
__device__ FUSEDBN_INLINE GradientTerm<acc_t, A> gradient_term(const ChannelParams<acc_t>& params, int64_t c) {
  return {params.forward(c), device::load(params.mean + c)};
}

// Contiguous input; grid, block and partials as plane_statistics_kernel. Thread 0 reads the
// channel's constants and shares them (one global read per block, not per thread). Vector
// lanes keep their own sums (independent adds), folded in lane order at the end.
template <typename scalar_t, typename acc_t, Activation A>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    plane_gradient_sums_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x, PlaneGeometry g,
                               ChannelParams<acc_t> params, acc_t param,
                               GradientPartial<acc_t>* __restrict__ partials) {
  constexpr int V = kVectorWidth<scalar_t>;
  using State = GradientPartial<acc_t>;
  using Term = GradientTerm<acc_t, A>;
  FUSEDBN_SHARED_ARRAY(State, shared, kThreads / kWarpSize);
  FUSEDBN_SHARED_ARRAY(Term, shared_term, 1);
  const unsigned chunks = unsigned(g.chunks);  // < 2^16: a 32-bit division, not a 64-bit call
  const int64_t group = blockIdx.x / chunks, span = blockIdx.x % chunks;
  const int64_t begin = g.begin(span), end = g.end(span);
  for (int64_t c = blockIdx.y; c < g.channels; c += gridDim.y) {
    if (threadIdx.x == 0 && threadIdx.y == 0) shared_term[0] = gradient_term<acc_t, A>(params, c);
    __syncthreads();
    const Term term = shared_term[0];  // overwritten only after reduce_block's barriers
    GradientSums<acc_t, V> lanes{};
    for (int64_t n = group * blockDim.y + threadIdx.y; n < g.batch; n += g.plane_groups * blockDim.y) {
      const int64_t offset = (n * g.channels + c) * g.spatial;
      const scalar_t* xp = x + offset;
      const scalar_t* dyp = dy + offset;
      for_each_in_span<V>(
          xp, begin, end, threadIdx.x, blockDim.x, g.vector,
          [&](int64_t i) {
            term.add(static_cast<acc_t>(device::load(xp + i)), static_cast<acc_t>(device::load(dyp + i)), param,
                     lanes.g[0], lanes.gx[0]);
          },
          [&](int64_t i) {
            acc_t xv[V], gv[V];
            load_lanes<V>(xp + i, V, true, xv);
            load_lanes<V>(dyp + i, V, true, gv);
            for (int j = 0; j < V; ++j) term.add(xv[j], gv[j], param, lanes.g[j], lanes.gx[j]);
          });
    }
    State s{{lanes.g[0]}, {lanes.gx[0]}};
    for (int j = 1; j < V; ++j) {
      s.g[0] += lanes.g[j];
      s.gx[0] += lanes.gx[j];
    }
    s = reduce_block(s, shared);
    if (threadIdx.x == 0 && threadIdx.y == 0) device::store(partials + int64_t(blockIdx.x) * g.channels + c, s);
  }
}

// Channels_last input; grid, block and partials as row_statistics_kernel. The threads of row
// 0 read their channels' constants and share them with their column.
template <typename scalar_t, typename acc_t, Activation A>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    row_gradient_sums_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x, RowGeometry g,
                             ChannelParams<acc_t> params, acc_t param, GradientPartial<acc_t>* __restrict__ partials) {
  constexpr int V = kVectorWidth<scalar_t>;
  using State = GradientSums<acc_t, V>;
  using Terms = Lanes<GradientTerm<acc_t, A>, V>;
  FUSEDBN_SHARED_ARRAY(State, shared, kThreads);  // blockDim.x <= 32 columns per warp
  FUSEDBN_SHARED_ARRAY(Terms, shared_terms, kWarpSize);
  const int64_t c0 = first_channel<V>();
  const int count = int(min_of<int64_t>(V, g.channels - c0));  // <= 0: a thread past the last channel
  if (threadIdx.y == 0 && count > 0) {
    Terms terms;
    for (int j = 0; j < V; ++j) terms.lane[j] = gradient_term<acc_t, A>(params, c0 + min_of(j, count - 1));
    shared_terms[threadIdx.x] = terms;
  }
  __syncthreads();
  State s{};
  if (count > 0) {
    const Terms terms = shared_terms[threadIdx.x];
    for (int64_t r = first_row(); r < g.rows; r += row_stride()) {
      acc_t xv[V], gv[V];
      load_lanes<V>(x + r * g.channels + c0, count, g.vector, xv);
      load_lanes<V>(dy + r * g.channels + c0, count, g.vector, gv);
      for (int j = 0; j < V; ++j) terms.lane[j].add(xv[j], gv[j], param, s.g[j], s.gx[j]);
    }
  }
  s = reduce_block_columns(s, shared);
  if (threadIdx.y == 0) {
    for (int j = 0; j < V; ++j) {  // a constant trip count keeps `s` in registers
      if (j < count) {
        device::store(partials + int64_t(blockIdx.y) * g.channels + c0 + j,
                      GradientPartial<acc_t>{{s.g[j]}, {s.gx[j]}});
      }
    }
  }
}

// Block (32, 8), one warp per channel (merge_partials), grid-stride over channels: writes
// sum_g = Σg and sum_g_xhat = Σg·(x - mean) · invstd = Σg·x̂, both acc_t.
template <typename acc_t>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    finalize_gradient_sums_kernel(const GradientPartial<acc_t>* __restrict__ partials, int64_t splits,
                                  int64_t channels, const acc_t* __restrict__ invstd, acc_t* __restrict__ sum_g,
                                  acc_t* __restrict__ sum_g_xhat) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; c < channels;
       c += int64_t(gridDim.x) * blockDim.y) {
    const GradientPartial<acc_t> total = merge_partials(partials, splits, channels, c);
    if (threadIdx.x == 0) {
      device::store(sum_g + c, total.g[0]);
      device::store(sum_g_xhat + c, total.gx[0] * device::load(invstd + c));
    }
  }
}

}  // namespace fusedbn::cuda
