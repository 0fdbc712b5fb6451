// Deliberately wrong kernels, in ordinary CUDA style: each must be reported by the harness
// with a clear simt::Error (tests/test_simt_harness.py matches the messages).
#include <stdexcept>
#include <vector>

#include "cases.h"

using fusedbn::device::launch_kernel;
using fusedbn::device::load;
using fusedbn::device::load_vector;
using fusedbn::device::store;

namespace {

constexpr int kBlock = 256;

// 1. Missing barrier: each thread reads the value its left neighbour just wrote.
__global__ void left_neighbour_no_barrier(const float* in, float* out) {
  FUSEDBN_SHARED_ARRAY(float, tile, kBlock);
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  tile[threadIdx.x] = load(in + i);
  // __syncthreads() missing here
  const float left = threadIdx.x > 0 ? tile[threadIdx.x - 1] : 0.0f;
  store(out + i, left);
}

// 1'. The same mistake towards the right: the neighbour overwrites a value already read.
__global__ void right_neighbour_no_barrier(const float* in, float* out) {
  FUSEDBN_SHARED_ARRAY(float, tile, kBlock);
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  tile[threadIdx.x] = load(in + i);
  const float right = threadIdx.x + 1 < blockDim.x ? tile[threadIdx.x + 1] : 0.0f;
  store(out + i, right);
}

// 1''. A broadcast reused in a loop without the barrier after the reads.
__global__ void broadcast_without_trailing_barrier(float* out) {
  FUSEDBN_SHARED_ARRAY(float, value, 1);
  float sum = 0.0f;
  for (int step = 0; step < 2; ++step) {
    if (threadIdx.x == 0) {
      value[0] = float(step);
    }
    __syncthreads();
    sum += value[0];
    // __syncthreads() missing: thread 0 overwrites value[0] while others may still read it
  }
  store(out + threadIdx.x, sum);
}

// 2. A barrier inside a branch that only half the block takes.
__global__ void barrier_in_divergent_branch(float* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  }
  store(out + threadIdx.x, 1.0f);
}

// 2'. Every thread reaches a barrier, but not the same one.
__global__ void two_different_barriers(float* out) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  store(out + threadIdx.x, 1.0f);
}

// 2''. The classic early exit before a barrier.
__global__ void early_return_before_barrier(const float* in, float* out, int n) {
  FUSEDBN_SHARED_ARRAY(float, tile, kBlock);
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) {
    return;
  }
  tile[threadIdx.x] = load(in + i);
  __syncthreads();
  store(out + i, float(tile[(threadIdx.x + 1) % blockDim.x]));
}

// 3. A full-mask shuffle that only the lower half of the warp executes.
__global__ void shuffle_under_divergence(float* out) {
  float v = float(threadIdx.x);
  const unsigned lane = threadIdx.x % warpSize;
  if (lane < 16) {
    v = __shfl_down_sync(0xffffffffu, v, 1);
  }
  store(out + threadIdx.x, v);
}

// 3'. The two halves of the warp reach different shuffles with the same full mask.
__global__ void shuffles_at_different_sites(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x % warpSize < 16) {
    v = __shfl_xor_sync(0xffffffffu, v, 1);
  } else {
    v = __shfl_xor_sync(0xffffffffu, v, 2);
  }
  store(out + threadIdx.x, v);
}

// 3''. A half-warp mask, but lane 15 reads lane 16, which is outside it.
__global__ void shuffle_reads_lane_outside_mask(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x % warpSize < 16) {
    v = __shfl_down_sync(0x0000ffffu, v, 1);
  }
  store(out + threadIdx.x, v);
}

// 3'''. A full mask in a 48-thread block: the second warp has no lanes 16..31.
__global__ void full_mask_in_partial_warp(float* out) {
  const float v = __shfl_xor_sync(0xffffffffu, float(threadIdx.x), 1);
  store(out + threadIdx.x, v);
}

// 4. Every thread writes the same shared slot in one epoch.
__global__ void write_write_race(float* out) {
  FUSEDBN_SHARED_ARRAY(float, slot, 1);
  slot[0] = float(threadIdx.x);
  __syncthreads();
  store(out + threadIdx.x, float(slot[0]));
}

// 5. Off by one: the last thread writes one past the end of the array.
__global__ void shared_index_off_by_one(float* out) {
  FUSEDBN_SHARED_ARRAY(float, tile, kBlock);
  tile[threadIdx.x + 1] = 1.0f;
  __syncthreads();
  store(out + threadIdx.x, 0.0f);
}

// 5'. Dynamic shared memory sized for blockDim floats, indexed as if it held one more.
__global__ void dynamic_shared_overrun(float* out) {
  FUSEDBN_DYNAMIC_SHARED(float, buffer);
  buffer[threadIdx.x + 1] = 1.0f;
  __syncthreads();
  store(out + threadIdx.x, 0.0f);
}

// Any valid kernel, for launches whose configuration is what is wrong.
__global__ void fill(float* out, float value) { store(out + threadIdx.x, value); }

// A vector load from an address that is not 16-byte aligned.
__global__ void misaligned_vector_load(const float* in, float* out) {
  const auto v = load_vector<float, 4>(in + 1);
  store(out, v.value[0]);
}

// A kernel that throws (as a failed check in device code would).
__global__ void throws_in_thread_7(float* out) {
  if (threadIdx.x == 7) {
    throw std::runtime_error("device-side failure in thread 7");
  }
  __syncthreads();
  store(out + threadIdx.x, 1.0f);
}

// A launch from device code (dynamic parallelism), which the harness does not model.
__global__ void launches_from_device(float* out) {
  launch_kernel(fill, dim3(1), dim3(1), 0, nullptr, out, 3.0f);
}

std::vector<float> buffer(std::size_t n) { return std::vector<float>(n, 1.0f); }

}  // namespace

SIMT_CASE(misuse_missing_barrier_left) {
  auto in = buffer(1024), out = buffer(1024);
  launch_kernel(left_neighbour_no_barrier, dim3(4), dim3(kBlock), 0, nullptr, in.data(), out.data());
}

SIMT_CASE(misuse_missing_barrier_right) {
  auto in = buffer(1024), out = buffer(1024);
  launch_kernel(right_neighbour_no_barrier, dim3(4), dim3(kBlock), 0, nullptr, in.data(), out.data());
}

SIMT_CASE(misuse_broadcast_reuse) {
  auto out = buffer(64);
  launch_kernel(broadcast_without_trailing_barrier, dim3(1), dim3(64), 0, nullptr, out.data());
}

SIMT_CASE(misuse_divergent_barrier) {
  auto out = buffer(64);
  launch_kernel(barrier_in_divergent_branch, dim3(1), dim3(64), 0, nullptr, out.data());
}

SIMT_CASE(misuse_two_barriers) {
  auto out = buffer(64);
  launch_kernel(two_different_barriers, dim3(1), dim3(64), 0, nullptr, out.data());
}

SIMT_CASE(misuse_early_return) {
  auto in = buffer(512), out = buffer(512);
  launch_kernel(early_return_before_barrier, dim3(2), dim3(kBlock), 0, nullptr, in.data(), out.data(), 300);
}

SIMT_CASE(misuse_shuffle_divergent) {
  auto out = buffer(64);
  launch_kernel(shuffle_under_divergence, dim3(1), dim3(64), 0, nullptr, out.data());
}

SIMT_CASE(misuse_shuffle_sites) {
  auto out = buffer(64);
  launch_kernel(shuffles_at_different_sites, dim3(1), dim3(64), 0, nullptr, out.data());
}

SIMT_CASE(misuse_shuffle_source_outside_mask) {
  auto out = buffer(32);
  launch_kernel(shuffle_reads_lane_outside_mask, dim3(1), dim3(32), 0, nullptr, out.data());
}

SIMT_CASE(misuse_shuffle_partial_warp) {
  auto out = buffer(48);
  launch_kernel(full_mask_in_partial_warp, dim3(1), dim3(48), 0, nullptr, out.data());
}

SIMT_CASE(misuse_write_write) {
  auto out = buffer(64);
  launch_kernel(write_write_race, dim3(1), dim3(64), 0, nullptr, out.data());
}

SIMT_CASE(misuse_off_by_one) {
  auto out = buffer(kBlock);
  launch_kernel(shared_index_off_by_one, dim3(1), dim3(kBlock), 0, nullptr, out.data());
}

SIMT_CASE(misuse_dynamic_overrun) {
  auto out = buffer(128);
  launch_kernel(dynamic_shared_overrun, dim3(1), dim3(128), 128 * sizeof(float), nullptr, out.data());
}

SIMT_CASE(misuse_block_too_large) {
  auto out = buffer(2048);
  launch_kernel(fill, dim3(1), dim3(2048), 0, nullptr, out.data(), 2.0f);
}

SIMT_CASE(misuse_block_z_too_large) {
  auto out = buffer(128);
  launch_kernel(fill, dim3(1), dim3(1, 1, 128), 0, nullptr, out.data(), 2.0f);
}

SIMT_CASE(misuse_dynamic_shared_too_large) {
  auto out = buffer(32);
  launch_kernel(fill, dim3(1), dim3(32), 64 * 1024, nullptr, out.data(), 2.0f);
}

SIMT_CASE(misuse_misaligned_vector) {
  auto in = buffer(64), out = buffer(1);
  launch_kernel(misaligned_vector_load, dim3(1), dim3(1), 0, nullptr, in.data(), out.data());
}

SIMT_CASE(misuse_kernel_throws) {
  auto out = buffer(64);
  launch_kernel(throws_in_thread_7, dim3(1), dim3(64), 0, nullptr, out.data());
}

SIMT_CASE(misuse_nested_launch) {
  auto out = buffer(4);
  launch_kernel(launches_from_device, dim3(1), dim3(4), 0, nullptr, out.data());
}

SIMT_CASE(misuse_barrier_on_host) { __syncthreads(); }
