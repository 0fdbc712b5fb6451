// What every fusedbn kernel takes besides its tensors: the launch constants, the geometry of
// the two layouts, and the per-channel parameters. Torch-free: the SIMT build includes it too.
#pragma once

// First: under FUSEDBN_SIMT it defines the CUDA qualifiers the common headers use.
#include "portability.h"

#include <cstdint>

#include "../common/batch_norm_math.h"

namespace fusedbn::cuda {

constexpr int kThreads = 256;  // every block: 8 warps
// Every kernel's __launch_bounds__(kThreads, kMinBlocksPerSm): a register cap of 128. With no
// minimum, ptxas caps 256-thread kernels at 64 registers and the float64 ones spill.
constexpr int kMinBlocksPerSm = 2;
constexpr int kWarpSize = 32;
constexpr int kVectorBytes = 16;  // one 128-bit access

// Values of T in one 128-bit access: 2 double, 4 float, 8 half or bfloat16.
template <typename T>
constexpr int kVectorWidth = int(kVectorBytes / sizeof(T));

template <typename T>
FUSEDBN_HOST_DEVICE FUSEDBN_INLINE constexpr T min_of(T a, T b) {
  return b < a ? b : a;
}

// Contiguous input (N, C, S): channel c is N planes of S values, plane n at (n * C + c) * S.
// Blocks are 2D: blockDim.y planes at a time, blockDim.x threads along each plane. A plane is
// cut into `chunks` spans of `chunk` values, one per block along the grid.
struct PlaneGeometry {
  int64_t batch, channels, spatial;
  int64_t chunk;         // a multiple of the vector width, so spans of aligned planes stay aligned
  int64_t chunks;        // spans per plane
  int64_t plane_groups;  // reductions: blocks per channel along the batch
  bool vector;           // every pointer has the same offset from a 16-byte boundary

  FUSEDBN_HOST_DEVICE FUSEDBN_INLINE int64_t begin(int64_t span) const { return span * chunk; }
  FUSEDBN_HOST_DEVICE FUSEDBN_INLINE int64_t end(int64_t span) const {
    return min_of(spatial, (span + 1) * chunk);
  }
};

// Channels_last input: N * S rows of C values. Blocks are 2D: thread x owns V consecutive
// channels (V = kVectorWidth) and walks every blockDim.y * gridDim.y-th row.
struct RowGeometry {
  int64_t rows, channels;
  bool vector;  // C % V == 0 and every pointer 16-byte aligned: a thread's channels are one vector
};

// The first of the V channels this thread owns in a row kernel.
template <int V>
__device__ FUSEDBN_INLINE int64_t first_channel() {
  return (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * V;
}

// The first row this thread visits and its stride, in a row kernel.
__device__ FUSEDBN_INLINE int64_t first_row() { return int64_t(blockIdx.y) * blockDim.y + threadIdx.y; }
__device__ FUSEDBN_INLINE int64_t row_stride() { return int64_t(gridDim.y) * blockDim.y; }

// V values of T as one element, e.g. one shared-memory slot holding a thread's V channels.
template <typename T, int V>
struct Lanes {
  T lane[V];
};

// Per-channel statistics and affine parameters: (C,) acc_t arrays; the host fills absent
// ones (weight 1, bias 0).
template <typename acc_t>
struct ChannelParams {
  const acc_t* mean;
  const acc_t* invstd;
  const acc_t* weight;
  const acc_t* bias;

  // z = x * scale + shift for channel c. Returns acc_t coefficients.
  __device__ FUSEDBN_INLINE ForwardCoefficients<acc_t> forward(int64_t c) const {
    return forward_coefficients(device::load(mean + c), device::load(invstd + c), device::load(weight + c),
                                device::load(bias + c));
  }
};

}  // namespace fusedbn::cuda
