// The fused elementwise passes, one kernel per layout for any Op:
//   ForwardOp:   y  = act(x · scale + shift)                 (training and eval forward)
//   GradInputOp: dx = g · grad_scale + x · x_scale + shift,   g = dy · act'(x · scale + shift)
//                (training backward, or eval with the statistics fixed)
// An Op gives a channel's constants (Op::channel(c), read by one thread per channel and block
// and shared: one global read per block, not per thread) and one output value from x and dy
// (Op::apply), in acc_t. The coefficients are derived in csrc/common/batch_norm_math.h.
#pragma once

// First: under FUSEDBN_SIMT it defines the CUDA qualifiers the common headers use.
#include "portability.h"

#include <cstdint>

#include "../common/activation.h"
#include "../common/batch_norm_math.h"
#include "kernel_args.cuh"
#include "memory_access.cuh"

namespace fusedbn::cuda {

template <typename acc_type, Activation A>
struct ForwardOp {
  using acc_t = acc_type;
  using Channel = ForwardCoefficients<acc_t>;
  static constexpr bool kReadsGrad = false;

  ChannelParams<acc_t> params;
  acc_t param;  // negative_slope or alpha

  __device__ FUSEDBN_INLINE Channel channel(int64_t c) const { return params.forward(c); }
  __device__ FUSEDBN_INLINE acc_t apply(const Channel& f, acc_t x, acc_t) const {
    return ActivationFn<A>::forward(x * f.scale + f.shift, param);
  }
};

template <typename acc_type, Activation A>
struct GradInputOp {
  using acc_t = acc_type;
  struct Channel {
    ForwardCoefficients<acc_t> f;
    BackwardCoefficients<acc_t> b;
  };
  static constexpr bool kReadsGrad = true;

  ChannelParams<acc_t> params;
  const acc_t* sum_g;       // Σg per channel; null in eval, where the statistics are constants
  const acc_t* sum_g_xhat;  // Σg·x̂ per channel (training)
  int64_t count;            // values per channel (training)
  acc_t param;

  __device__ FUSEDBN_INLINE Channel channel(int64_t c) const {
    const acc_t invstd = device::load(params.invstd + c), weight = device::load(params.weight + c);
    const BackwardCoefficients<acc_t> b =
        sum_g == nullptr ? backward_coefficients_eval(invstd, weight)
                         : backward_coefficients_train(device::load(params.mean + c), invstd, weight,
                                                       device::load(sum_g + c), device::load(sum_g_xhat + c), count);
    return {params.forward(c), b};
  }
  __device__ FUSEDBN_INLINE acc_t apply(const Channel& k, acc_t x, acc_t dy) const {
    const acc_t g = dy * ActivationFn<A>::derivative(x * k.f.scale + k.f.shift, param);
    return grad_input_value(g, x, k.b.grad_scale, k.b.x_scale, k.b.shift, sum_g != nullptr);
  }
};

// Contiguous input. Grid (plane blocks, chunks), block (bx, by): thread (x, y) of block (i, k)
// takes planes i * by + y, stepping by gridDim.x * by, and of each the span k. `dy` is read
// only when the Op needs it (null otherwise).
template <typename scalar_t, typename Op>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    plane_elementwise_kernel(Op op, const scalar_t* __restrict__ x, const scalar_t* __restrict__ dy,
                             scalar_t* __restrict__ out, PlaneGeometry g) {
  using acc_t = typename Op::acc_t;
  using Channel = typename Op::Channel;
  constexpr int V = kVectorWidth<scalar_t>;
  FUSEDBN_SHARED_ARRAY(Channel, shared_channels, kThreads);  // one per plane row: blockDim.y <= kThreads
  const int64_t planes = g.batch * g.channels, begin = g.begin(blockIdx.y), end = g.end(blockIdx.y);
  // The loop runs alike in every thread (the barriers need that); `p` past the end idles.
  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < planes; first += int64_t(gridDim.x) * blockDim.y) {
    const int64_t p = first + threadIdx.y;
    if (threadIdx.x == 0 && p < planes) {
      // The launcher keeps N * C < 2^32: a 32-bit remainder rather than a 64-bit division call.
      shared_channels[threadIdx.y] = op.channel(uint32_t(p) % uint32_t(g.channels));
    }
    __syncthreads();
    if (p < planes) {
      const Channel channel = shared_channels[threadIdx.y];
      const int64_t offset = p * g.spatial;
      const scalar_t* xp = x + offset;
      scalar_t* outp = out + offset;
      for_each_in_span<V>(
          xp, begin, end, threadIdx.x, blockDim.x, g.vector,
          [&](int64_t i) {
            acc_t grad = acc_t(0);
            if constexpr (Op::kReadsGrad) grad = static_cast<acc_t>(device::load(dy + offset + i));
            const acc_t value = op.apply(channel, static_cast<acc_t>(device::load(xp + i)), grad);
            device::store(outp + i, static_cast<scalar_t>(value));
          },
          [&](int64_t i) {
            acc_t v[V], grad[V] = {};
            load_lanes<V>(xp + i, V, true, v);
            if constexpr (Op::kReadsGrad) load_lanes<V>(dy + offset + i, V, true, grad);
            for (int j = 0; j < V; ++j) v[j] = op.apply(channel, v[j], grad[j]);
            store_lanes<V>(outp + i, V, true, v);
          });
    }
    __syncthreads();  // before the next planes' constants overwrite these
  }
}

// Channels_last input. Grid (ceil(C / (V * bx)), row blocks), block (bx, by): the threads of
// row 0 read their V channels' constants for their column, then every thread walks its rows.
template <typename scalar_t, typename Op>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    row_elementwise_kernel(Op op, const scalar_t* __restrict__ x, const scalar_t* __restrict__ dy,
                           scalar_t* __restrict__ out, RowGeometry g) {
  using acc_t = typename Op::acc_t;
  constexpr int V = kVectorWidth<scalar_t>;
  using Channels = Lanes<typename Op::Channel, V>;
  FUSEDBN_SHARED_ARRAY(Channels, shared_channels, kWarpSize);  // blockDim.x <= 32
  const int64_t c0 = first_channel<V>();
  const int count = int(min_of<int64_t>(V, g.channels - c0));  // <= 0: a thread past the last channel
  if (threadIdx.y == 0 && count > 0) {
    Channels constants;
    for (int j = 0; j < V; ++j) constants.lane[j] = op.channel(c0 + min_of(j, count - 1));
    shared_channels[threadIdx.x] = constants;
  }
  __syncthreads();
  if (count <= 0) return;  // no barrier follows
  const Channels channels = shared_channels[threadIdx.x];
  for (int64_t r = first_row(); r < g.rows; r += row_stride()) {
    const int64_t at = r * g.channels + c0;
    acc_t v[V], grad[V] = {};
    load_lanes<V>(x + at, count, g.vector, v);
    if constexpr (Op::kReadsGrad) load_lanes<V>(dy + at, count, g.vector, grad);
    for (int j = 0; j < V; ++j) v[j] = op.apply(channels.lane[j], v[j], grad[j]);
    store_lanes<V>(out + at, count, g.vector, v);
  }
}

}  // namespace fusedbn::cuda
