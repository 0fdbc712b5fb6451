// Reductions across a block, in a fixed order so that results are bitwise reproducible: a
// warp-shuffle tree, then the warps' results merged one after another through shared memory.
// The states are plain structs of V lanes (one lane per channel), so they can live in shared
// memory; merge() and shuffle_down() are defined for each.
#pragma once

// First: under FUSEDBN_SIMT it defines the CUDA qualifiers the common headers use.
#include "portability.h"

#include <cstdint>

#include "../common/welford.h"
#include "kernel_args.cuh"

namespace fusedbn::cuda {

constexpr unsigned kFullMask = 0xffffffffu;

// Welford statistics (mean, sum of squared deviations) of V channels over `count` values each.
template <typename acc_t, int V>
struct WelfordLanes {
  acc_t mean[V];
  acc_t m2[V];
  int64_t count;
};

// Σg and Σg·(x - mean) of V channels.
template <typename acc_t, int V>
struct GradientSums {
  acc_t g[V];
  acc_t gx[V];
};

// Chan's merge, lane by lane. Returns WelfordLanes<acc_t, V>.
template <typename acc_t, int V>
__device__ FUSEDBN_INLINE WelfordLanes<acc_t, V> merge(const WelfordLanes<acc_t, V>& a,
                                                        const WelfordLanes<acc_t, V>& b) {
  WelfordLanes<acc_t, V> out;
  for (int j = 0; j < V; ++j) {
    const WelfordData<acc_t> m =
        welford_merge(WelfordData<acc_t>{a.mean[j], a.m2[j], a.count}, WelfordData<acc_t>{b.mean[j], b.m2[j], b.count});
    out.mean[j] = m.mean;
    out.m2[j] = m.m2;
  }
  out.count = a.count + b.count;
  return out;
}

template <typename acc_t, int V>
__device__ FUSEDBN_INLINE GradientSums<acc_t, V> merge(const GradientSums<acc_t, V>& a,
                                                        const GradientSums<acc_t, V>& b) {
  GradientSums<acc_t, V> out;
  for (int j = 0; j < V; ++j) {
    out.g[j] = a.g[j] + b.g[j];
    out.gx[j] = a.gx[j] + b.gx[j];
  }
  return out;
}

// The state of the lane `delta` above this one in the warp (this lane's own beyond the end).
template <typename acc_t, int V>
__device__ FUSEDBN_INLINE WelfordLanes<acc_t, V> shuffle_down(const WelfordLanes<acc_t, V>& s, unsigned delta) {
  WelfordLanes<acc_t, V> out;
  for (int j = 0; j < V; ++j) {
    out.mean[j] = __shfl_down_sync(kFullMask, s.mean[j], delta);
    out.m2[j] = __shfl_down_sync(kFullMask, s.m2[j], delta);
  }
  out.count = int64_t(__shfl_down_sync(kFullMask, static_cast<long long>(s.count), delta));
  return out;
}

template <typename acc_t, int V>
__device__ FUSEDBN_INLINE GradientSums<acc_t, V> shuffle_down(const GradientSums<acc_t, V>& s, unsigned delta) {
  GradientSums<acc_t, V> out;
  for (int j = 0; j < V; ++j) {
    out.g[j] = __shfl_down_sync(kFullMask, s.g[j], delta);
    out.gx[j] = __shfl_down_sync(kFullMask, s.gx[j], delta);
  }
  return out;
}

// Merges the states of the 32 lanes of a warp in a fixed tree order; lane 0 returns the result
// (the others: partial results). Every lane must call it.
template <typename State>
__device__ FUSEDBN_INLINE State reduce_warp(State s) {
  for (unsigned delta = kWarpSize / 2; delta > 0; delta /= 2) s = merge(s, shuffle_down(s, delta));
  return s;
}

// Merges the states of all threads of the block; thread (0, 0) returns the result (the
// others: partial results). `shared` (a FUSEDBN_SHARED_ARRAY: a State* under nvcc, a checked
// handle under SIMT) holds one State per warp. Every thread must call it; it ends with a
// barrier, so the caller may call it again at once.
template <typename State, typename SharedStates>
__device__ FUSEDBN_INLINE State reduce_block(State s, SharedStates shared) {
  s = reduce_warp(s);
  const unsigned tid = threadIdx.y * blockDim.x + threadIdx.x;
  const unsigned warps = blockDim.x * blockDim.y / kWarpSize;
  if (tid % kWarpSize == 0) shared[tid / kWarpSize] = s;
  __syncthreads();
  if (tid == 0) {
    for (unsigned w = 1; w < warps; ++w) {
      const State other = shared[w];
      s = merge(s, other);
    }
  }
  __syncthreads();
  return s;
}

// Merges the states of the threads that share threadIdx.x (one column: the same channels)
// over threadIdx.y; threads with threadIdx.y == 0 return their column's result. blockDim.x
// must be a power of two <= 32, so a warp holds 32 / blockDim.x whole rows of the block;
// `shared` holds blockDim.x * (warps per block) States. Every thread must call it; it ends
// with a barrier.
template <typename State, typename SharedStates>
__device__ FUSEDBN_INLINE State reduce_block_columns(State s, SharedStates shared) {
  const unsigned columns = blockDim.x;
  for (unsigned delta = kWarpSize / 2; delta >= columns; delta /= 2) s = merge(s, shuffle_down(s, delta));
  const unsigned tid = threadIdx.y * columns + threadIdx.x;
  const unsigned lane = tid % kWarpSize, warps = columns * blockDim.y / kWarpSize;
  if (lane < columns) shared[tid / kWarpSize * columns + lane] = s;  // lane == threadIdx.x here
  __syncthreads();
  if (threadIdx.y == 0) {
    for (unsigned w = 1; w < warps; ++w) {
      const State other = shared[w * columns + threadIdx.x];
      s = merge(s, other);
    }
  }
  __syncthreads();
  return s;
}

// Channel c's total over `splits` per-block partials (partials[k * channels + c]), one warp
// per channel: lane l merges partials l, l + 32, ... in order, then the lanes merge in a fixed
// tree; lane 0 returns the total. Every lane of the warp must call it.
template <typename State>
__device__ FUSEDBN_INLINE State merge_partials(const State* partials, int64_t splits, int64_t channels, int64_t c) {
  State s{};
  for (int64_t k = threadIdx.x; k < splits; k += kWarpSize) {
    const State partial = device::load(partials + k * channels + c);
    s = merge(s, partial);
  }
  return reduce_warp(s);
}

}  // namespace fusedbn::cuda
