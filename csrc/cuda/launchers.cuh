// The launch sequences of the fusedbn ops on raw pointers: layout, block and grid sizes, the
// vector-access decision and the workspace the reductions need. Free of torch and of CUDA
// runtime calls beyond device::launch_kernel, so the SIMT build runs exactly this code on CPU
// memory. Block and grid sizes depend on the shape alone (never on the device), so a
// reduction's merge order, and hence its bits, is the same on every run and every GPU.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backward_kernels.cuh"
#include "elementwise_kernels.cuh"
#include "kernel_args.cuh"
#include "statistics_kernels.cuh"

namespace fusedbn::cuda {

// The input as the kernels see it: detail::KernelLayout (csrc/common/tensor_checks.h) without torch.
struct Shape {
  int64_t batch, channels, spatial;
  bool channels_last;  // rows of C values; planes of S values otherwise
  int64_t rows() const { return batch * spatial; }
};

namespace launch {

constexpr int64_t kMinValuesPerBlock = 4096;  // below this a reduction block is mostly overhead
constexpr int64_t kTargetBlocks = 1024;       // reduction blocks enough to fill an H100 (132 SMs x 8)
constexpr int64_t kMaxSplits = 1024;          // partials per channel, merged serially per channel
constexpr int64_t kVectorsPerThread = 4;      // elementwise: work per thread and block
constexpr int64_t kMaxGridX = int64_t(1) << 24;  // beyond this, grid-stride loops
constexpr int64_t kMaxGridY = 65535;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }
inline int pow2_at_least(int64_t n, int cap) {
  int p = 1;
  while (p < n && p < cap) p *= 2;
  return p;
}

inline std::uintptr_t phase(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % kVectorBytes; }

// Whether vector accesses fit every pointer: planes need one common offset from a 16-byte
// boundary (the kernels peel the same scalar head off each); rows need it to be zero and
// C % V == 0 so that every thread's V channels form one aligned vector.
template <typename... Ptrs>
bool plane_vectors_fit(const void* first, Ptrs... rest) {
  return ((phase(rest) == phase(first)) && ...);
}
template <typename scalar_t, typename... Ptrs>
bool row_vectors_fit(const Shape& s, Ptrs... pointers) {
  return s.channels % kVectorWidth<scalar_t> == 0 && ((phase(pointers) == 0) && ...);
}

struct PlaneLaunch {
  dim3 grid, block;
  PlaneGeometry geometry;
};
struct RowLaunch {
  dim3 grid, block;
  RowGeometry geometry;
};

// blockDim.x: enough threads for one plane's vectors, up to the whole block.
template <typename scalar_t>
dim3 plane_block(const Shape& s) {
  const int bx = pow2_at_least(ceil_div(s.spatial, kVectorWidth<scalar_t>), kThreads);
  return dim3(bx, kThreads / bx);
}

// A plane cut into spans of a multiple of V values, at most `chunks` of them, none empty.
template <typename scalar_t>
void cut_planes(const Shape& s, int64_t chunks, PlaneGeometry& g) {
  constexpr int V = kVectorWidth<scalar_t>;
  g.chunk = ceil_div(ceil_div(s.spatial, chunks), V) * V;
  g.chunks = ceil_div(s.spatial, g.chunk);
}

// Reductions over planes: about kTargetBlocks blocks in all, each with >= kMinValuesPerBlock
// values where the channel has them, split first along the batch, then along the planes.
template <typename scalar_t>
PlaneLaunch plane_reduction(const Shape& s, bool vector) {
  const dim3 block = plane_block<scalar_t>(s);
  const int64_t values = s.batch * s.spatial;
  const int64_t splits = clamp(min_of(ceil_div(kTargetBlocks, s.channels), ceil_div(values, kMinValuesPerBlock)),
                               1, kMaxSplits);
  PlaneGeometry g{s.batch, s.channels, s.spatial, 0, 0, min_of(splits, ceil_div(s.batch, block.y)), vector};
  const int64_t plane_vectors = ceil_div(s.spatial, int64_t(block.x) * kVectorWidth<scalar_t>);
  cut_planes<scalar_t>(s, min_of(ceil_div(splits, g.plane_groups), plane_vectors), g);
  return {dim3(unsigned(g.plane_groups * g.chunks), unsigned(min_of(s.channels, kMaxGridY))), block, g};
}

// Elementwise over planes: spans of about kVectorsPerThread vectors per thread.
template <typename scalar_t>
PlaneLaunch plane_elementwise(const Shape& s, bool vector) {
  const dim3 block = plane_block<scalar_t>(s);
  PlaneGeometry g{s.batch, s.channels, s.spatial, 0, 0, 1, vector};
  cut_planes<scalar_t>(
      s, clamp(ceil_div(s.spatial, int64_t(block.x) * kVectorWidth<scalar_t> * kVectorsPerThread), 1, kMaxGridY), g);
  const int64_t plane_blocks = clamp(ceil_div(s.batch * s.channels, block.y), 1, kMaxGridX);
  return {dim3(unsigned(plane_blocks), unsigned(g.chunks)), block, g};
}

// Rows: blockDim.x threads across channels (a power of two <= 32, so the column reduction
// stays within warps), the rest across rows. Reductions aim at kTargetBlocks blocks of
// >= kMinValuesPerBlock values; elementwise passes at kVectorsPerThread rows per thread.
template <typename scalar_t>
RowLaunch row_launch(const Shape& s, bool vector, bool reduction) {
  constexpr int V = kVectorWidth<scalar_t>;
  const int64_t vectors = ceil_div(s.channels, V);
  const int bx = pow2_at_least(vectors, kWarpSize), by = kThreads / bx;
  const int64_t column_blocks = ceil_div(vectors, bx), rows = s.rows();
  const int64_t wanted = reduction ? min_of(ceil_div(kTargetBlocks, column_blocks),
                                            ceil_div(rows * bx * V, kMinValuesPerBlock))
                                   : ceil_div(rows, by * kVectorsPerThread);
  const int64_t splits = clamp(min_of(wanted, ceil_div(rows, by)), 1, reduction ? kMaxSplits : kMaxGridY);
  return {dim3(unsigned(column_blocks), unsigned(splits)), dim3(bx, by), RowGeometry{rows, s.channels, vector}};
}

// Partials per channel of a reduction over `s`.
template <typename scalar_t>
int64_t reduction_splits(const Shape& s) {
  return s.channels_last ? row_launch<scalar_t>(s, false, true).grid.y : plane_reduction<scalar_t>(s, false).grid.x;
}

// The merge of a reduction's partials: a warp per channel.
inline dim3 finalize_block() { return dim3(kWarpSize, kThreads / kWarpSize); }
inline dim3 finalize_grid(int64_t channels) {
  return dim3(unsigned(clamp(ceil_div(channels, kThreads / kWarpSize), 1, kMaxGridX)));
}

}  // namespace launch

// Workspace bytes for launch_batch_statistics / launch_gradient_sums on `s`.
template <typename scalar_t, typename acc_t>
size_t statistics_workspace_bytes(const Shape& s) {
  return size_t(launch::reduction_splits<scalar_t>(s) * s.channels) * sizeof(WelfordPartial<acc_t>);
}
template <typename scalar_t, typename acc_t>
size_t gradient_sums_workspace_bytes(const Shape& s) {
  return size_t(launch::reduction_splits<scalar_t>(s) * s.channels) * sizeof(GradientPartial<acc_t>);
}

// Biased mean and var and invstd = 1 / sqrt(var + eps) per channel (acc_t, (C,) each) of x.
// Needs N * S > 0 and C > 0; `workspace` holds statistics_workspace_bytes(s), aligned to 16.
template <typename scalar_t, typename acc_t>
void launch_batch_statistics(const scalar_t* x, const Shape& s, acc_t eps, acc_t* mean, acc_t* var, acc_t* invstd,
                             void* workspace, cudaStream_t stream) {
  auto* partials = static_cast<WelfordPartial<acc_t>*>(workspace);
  int64_t splits;
  if (s.channels_last) {
    const launch::RowLaunch l = launch::row_launch<scalar_t>(s, launch::row_vectors_fit<scalar_t>(s, x), true);
    device::launch_kernel(row_statistics_kernel<scalar_t, acc_t>, l.grid, l.block, 0, stream, x, l.geometry, partials);
    splits = l.grid.y;
  } else {
    const launch::PlaneLaunch l = launch::plane_reduction<scalar_t>(s, true);  // one pointer: its own head
    device::launch_kernel(plane_statistics_kernel<scalar_t, acc_t>, l.grid, l.block, 0, stream, x, l.geometry,
                          partials);
    splits = l.grid.x;
  }
  const int64_t shift_stride = s.channels_last ? 1 : s.spatial;
  device::launch_kernel(finalize_statistics_kernel<scalar_t, acc_t>, launch::finalize_grid(s.channels),
                        launch::finalize_block(), 0, stream, partials, splits, s.channels, x, shift_stride, eps,
                        mean, var, invstd);
}

// out = Op over x (and dy where the Op reads it) in either layout. Contiguous input needs
// C < 2^32 (the host checks it).
template <typename scalar_t, typename Op>
void launch_elementwise(const Op& op, const scalar_t* x, const scalar_t* dy, scalar_t* out, const Shape& s,
                        cudaStream_t stream) {
  const void* grad = Op::kReadsGrad ? static_cast<const void*>(dy) : static_cast<const void*>(x);
  if (s.channels_last) {
    const bool vector = launch::row_vectors_fit<scalar_t>(s, x, grad, out);
    const launch::RowLaunch l = launch::row_launch<scalar_t>(s, vector, false);
    device::launch_kernel(row_elementwise_kernel<scalar_t, Op>, l.grid, l.block, 0, stream, op, x, dy, out,
                          l.geometry);
    return;
  }
  // Batch slices of < 2^32 planes (the kernel takes a plane's channel as a 32-bit remainder);
  // every pointer moves by the same offset, so they keep sharing an alignment.
  const bool vector = launch::plane_vectors_fit(x, grad, out);
  const int64_t slice = launch::clamp(int64_t(UINT32_MAX) / s.channels, 1, s.batch);
  for (int64_t n = 0; n < s.batch; n += slice) {
    const Shape part{min_of(slice, s.batch - n), s.channels, s.spatial, false};
    const int64_t offset = n * s.channels * s.spatial;
    const launch::PlaneLaunch l = launch::plane_elementwise<scalar_t>(part, vector);
    device::launch_kernel(plane_elementwise_kernel<scalar_t, Op>, l.grid, l.block, 0, stream, op, x + offset,
                          Op::kReadsGrad ? dy + offset : dy, out + offset, l.geometry);
  }
}

// y = act(x * scale + shift), scale and shift from params per channel.
template <typename scalar_t, typename acc_t, Activation A>
void launch_forward(const scalar_t* x, scalar_t* y, const Shape& s, ChannelParams<acc_t> params, acc_t param,
                    cudaStream_t stream) {
  launch_elementwise(ForwardOp<acc_t, A>{params, param}, x, static_cast<const scalar_t*>(nullptr), y, s, stream);
}

// sum_g = Σg and sum_g_xhat = Σg·x̂ per channel (acc_t, (C,) each). Needs N * S > 0 and C > 0;
// `workspace` holds gradient_sums_workspace_bytes(s), aligned to 16.
template <typename scalar_t, typename acc_t, Activation A>
void launch_gradient_sums(const scalar_t* dy, const scalar_t* x, const Shape& s, ChannelParams<acc_t> params,
                          acc_t param, acc_t* sum_g, acc_t* sum_g_xhat, void* workspace, cudaStream_t stream) {
  auto* partials = static_cast<GradientPartial<acc_t>*>(workspace);
  int64_t splits;
  if (s.channels_last) {
    const launch::RowLaunch l = launch::row_launch<scalar_t>(s, launch::row_vectors_fit<scalar_t>(s, x, dy), true);
    device::launch_kernel(row_gradient_sums_kernel<scalar_t, acc_t, A>, l.grid, l.block, 0, stream, dy, x,
                          l.geometry, params, param, partials);
    splits = l.grid.y;
  } else {
    const launch::PlaneLaunch l = launch::plane_reduction<scalar_t>(s, launch::plane_vectors_fit(x, dy));
    device::launch_kernel(plane_gradient_sums_kernel<scalar_t, acc_t, A>, l.grid, l.block, 0, stream, dy, x,
                          l.geometry, params, param, partials);
    splits = l.grid.x;
  }
  device::launch_kernel(finalize_gradient_sums_kernel<acc_t>, launch::finalize_grid(s.channels),
                        launch::finalize_block(), 0, stream, partials, splits, s.channels, params.invstd, sum_g,
                        sum_g_xhat);
}

// dx from dy and x: training when sum_g / sum_g_xhat (from launch_gradient_sums) are given,
// eval (dx = weight * invstd * g) when they are null.
template <typename scalar_t, typename acc_t, Activation A>
void launch_grad_input(const scalar_t* dy, const scalar_t* x, scalar_t* dx, const Shape& s,
                       ChannelParams<acc_t> params, const acc_t* sum_g, const acc_t* sum_g_xhat, acc_t param,
                       cudaStream_t stream) {
  launch_elementwise(GradInputOp<acc_t, A>{params, sum_g, sum_g_xhat, s.batch * s.spatial, param}, x, dy, dx, s,
                     stream);
}

}  // namespace fusedbn::cuda
