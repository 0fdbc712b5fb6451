// Correct kernels, in ordinary CUDA style: reductions through shared memory and warp
// shuffles, the last-block-done pattern, dynamic shared memory and vectorised copies. Each
// runner checks the results exactly (inputs are small integers, so float sums are exact)
// and must pass in launch order and in any shuffled block order.
#include <cstdint>
#include <cstring>
#include <vector>

#include "cases.h"

using fusedbn::device::launch_kernel;
using fusedbn::device::load;
using fusedbn::device::load_vector;
using fusedbn::device::store;
using fusedbn::device::store_vector;
using fusedbn::device::Vector;

namespace {

constexpr unsigned kFullMask = 0xffffffffu;

std::vector<float> small_integers(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) {
    v[i] = float(i % 13 - 6);
  }
  return v;
}

float host_sum(const std::vector<float>& v, std::size_t begin, std::size_t end) {
  double s = 0;
  for (std::size_t i = begin; i < end && i < v.size(); ++i) {
    s += v[i];
  }
  return float(s);
}

// Each thread's share of a grid-stride loop over `in`.
__device__ float thread_sum(const float* in, int n) {
  float v = 0.0f;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    v += load(in + i);
  }
  return v;
}

// Tree reduction in shared memory: one barrier per halving.
template <int Block>
__global__ void block_sum_shared(const float* in, float* partial, int n) {
  FUSEDBN_SHARED_ARRAY(float, sums, Block);
  const int tid = threadIdx.x;
  sums[tid] = thread_sum(in, n);
  __syncthreads();
  for (int s = Block / 2; s > 0; s >>= 1) {
    if (tid < s) {
      sums[tid] += sums[tid + s];
    }
    __syncthreads();
  }
  if (tid == 0) {
    store(partial + blockIdx.x, float(sums[0]));
  }
}

__device__ float warp_sum_down(float v) {
  for (int offset = warpSize / 2; offset > 0; offset >>= 1) {
    v += __shfl_down_sync(kFullMask, v, offset);
  }
  return v;
}

__device__ float warp_sum_xor(float v) {
  for (int mask = warpSize / 2; mask > 0; mask >>= 1) {
    v += __shfl_xor_sync(kFullMask, v, mask);
  }
  return v;
}

// Warp shuffles within each warp, one shared slot per warp, then warp 0 finishes. Returns the
// block's sum in thread 0.
__device__ float block_sum_warps(float v) {
  FUSEDBN_SHARED_ARRAY(float, warp_sums, 32);
  const int lane = threadIdx.x % warpSize;
  const int warp = threadIdx.x / warpSize;
  const int warps = (blockDim.x + warpSize - 1) / warpSize;
  v = warp_sum_down(v);
  if (lane == 0) {
    warp_sums[warp] = v;
  }
  __syncthreads();
  float total = 0.0f;
  if (warp == 0) {
    total = warp_sum_xor(lane < warps ? float(warp_sums[lane]) : 0.0f);
  }
  __syncthreads();  // warp_sums may be reused by the caller
  return total;
}

__global__ void block_sum_shuffle(const float* in, float* partial, int n) {
  const float total = block_sum_warps(thread_sum(in, n));
  if (threadIdx.x == 0) {
    store(partial + blockIdx.x, total);
  }
}

// Whole-array sum in one launch: each block stores its partial; the block that takes the
// last ticket adds the partials in index order, so the result does not depend on which
// block finishes last.
__global__ void sum_last_block_done(const float* in, float* partial, unsigned* counter,
                                    float* total, int n) {
  FUSEDBN_SHARED_ARRAY(bool, is_last, 1);
  const float block_total = block_sum_warps(thread_sum(in, n));
  if (threadIdx.x == 0) {
    store(partial + blockIdx.x, block_total);
    __threadfence();
    const unsigned ticket = atomicAdd(counter, 1u);
    is_last[0] = ticket == gridDim.x - 1;
  }
  __syncthreads();
  if (is_last[0]) {
    float v = 0.0f;
    for (unsigned b = threadIdx.x; b < gridDim.x; b += blockDim.x) {
      v += load(partial + b);
    }
    const float sum = block_sum_warps(v);
    if (threadIdx.x == 0) {
      store(total, sum);
      store(counter, 0u);  // ready for the next launch
    }
  }
}

// Reverses each block's slice through dynamic shared memory (blockDim floats).
__global__ void reverse_within_blocks(const float* in, float* out, int n) {
  FUSEDBN_DYNAMIC_SHARED(float, tile);
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  tile[threadIdx.x] = i < n ? load(in + i) : 0.0f;
  __syncthreads();
  const int j = blockIdx.x * blockDim.x + (blockDim.x - 1 - threadIdx.x);
  if (j < n) {
    store(out + j, float(tile[threadIdx.x]));
  }
}

// Two views of the same dynamic shared memory: written as float, read back as int bits.
__global__ void dynamic_two_views(const float* in, int* bits) {
  FUSEDBN_DYNAMIC_SHARED(float, as_float);
  FUSEDBN_DYNAMIC_SHARED(int, as_int);
  as_float[threadIdx.x] = load(in + threadIdx.x);
  __syncthreads();
  store(bits + threadIdx.x, int(as_int[blockDim.x - 1 - threadIdx.x]));
}

// out = scale * in: 16-byte vectors for the body, scalars for the tail.
__global__ void scale_vectorized(const float* in, float* out, float scale, int n) {
  const int vectors = n / 4;
  const int stride = blockDim.x * gridDim.x;
  for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < vectors; v += stride) {
    Vector<float, 4> x = load_vector<float, 4>(in + 4 * v);
    for (float& e : x.value) {
      e *= scale;
    }
    store_vector<float, 4>(out + 4 * v, x);
  }
  for (int i = 4 * vectors + blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    store(out + i, load(in + i) * scale);
  }
}

struct Partial {
  float sum;
  int count;
};

// Sums `count` elements of a shared array reached through any pointer-like handle.
template <typename SharedFloats>
__device__ float sum_of(SharedFloats values, int count) {
  float s = 0.0f;
  for (int i = 0; i < count; ++i) {
    s += values[i];
  }
  return s;
}

// Shared-memory idioms kernels rely on: struct elements, element-to-element copies, pointer
// arithmetic and passing an array to a helper.
__global__ void shared_idioms(const float* in, float* out) {
  FUSEDBN_SHARED_ARRAY(Partial, partials, 2);
  FUSEDBN_SHARED_ARRAY(float, values, 64);
  const int tid = threadIdx.x;
  values[tid] = load(in + tid);
  if (tid % 32 == 0) {
    partials[tid / 32] = Partial{0.0f, 0};
  }
  __syncthreads();
  if (tid % 32 == 0) {
    Partial p = partials[tid / 32];
    p.sum = sum_of(values + tid, 32);
    p.count = 32;
    partials[tid / 32] = p;
  }
  __syncthreads();
  if (tid == 0) {
    values[0] = values[63];  // element copy, not handle copy
    const Partial a = partials[0], b = partials[1];
    store(out, a.sum + b.sum);
    store(out + 1, float(a.count + b.count));
    store(out + 2, float(values[0]));
  }
}

// Thread 0 of each block appends the block's index: the order in which blocks ran.
__global__ void record_block_order(unsigned* counter, unsigned* order) {
  if (threadIdx.x == 0) {
    store(order + atomicAdd(counter, 1u), blockIdx.x + 100 * blockIdx.y);
  }
}

void check_partials(const std::vector<float>& in, const std::vector<float>& partial, int block) {
  // Grid-stride: block b sums elements i with (i / block) % grid == b.
  const int grid = int(partial.size());
  std::vector<double> expect(grid, 0.0);
  for (std::size_t i = 0; i < in.size(); ++i) {
    expect[(i / block) % grid] += in[i];
  }
  for (int b = 0; b < grid; ++b) {
    cases::expect(partial[b] == float(expect[b]), "partial ", b, " = ", partial[b], ", expected ", expect[b]);
  }
}

}  // namespace

SIMT_CASE(block_reduction_shared) {
  const int n = 20000;
  const auto in = small_integers(n);
  std::vector<float> partial(24, -1.0f);
  launch_kernel(block_sum_shared<256>, dim3(24), dim3(256), 0, nullptr, in.data(), partial.data(), n);
  check_partials(in, partial, 256);
}

SIMT_CASE(warp_shuffle_reduction) {
  const int n = 50000;
  const auto in = small_integers(n);
  for (int block : {1024, 96, 32}) {
    std::vector<float> partial(7, -1.0f);
    launch_kernel(block_sum_shuffle, dim3(7), dim3(block), 0, nullptr, in.data(), partial.data(), n);
    check_partials(in, partial, block);
  }
}

SIMT_CASE(last_block_done) {
  const int n = 100000;
  const auto in = small_integers(n);
  std::vector<float> partial(64, -1.0f);
  unsigned counter = 0;
  for (int repeat = 0; repeat < 3; ++repeat) {
    float total = -1.0f;
    launch_kernel(sum_last_block_done, dim3(64), dim3(256), 0, nullptr, in.data(), partial.data(),
                  &counter, &total, n);
    cases::expect(total == host_sum(in, 0, n), "total ", total, ", expected ", host_sum(in, 0, n));
    cases::expect(counter == 0u, "counter not reset: ", counter);
  }
}

SIMT_CASE(dynamic_shared_reverse) {
  const int n = 1000;
  const auto in = small_integers(n);
  std::vector<float> out(n, -100.0f);
  const int block = 128;
  launch_kernel(reverse_within_blocks, dim3((n + block - 1) / block), dim3(block), block * sizeof(float),
                nullptr, in.data(), out.data(), n);
  for (int i = 0; i < n; ++i) {
    const int b = i / block, t = i % block;
    const int src = b * block + (block - 1 - t);
    cases::expect(out[i] == (src < n ? in[src] : 0.0f), "out[", i, "] = ", out[i]);
  }
}

SIMT_CASE(dynamic_shared_two_views) {
  const int block = 64;
  std::vector<float> in(block);
  for (int i = 0; i < block; ++i) {
    in[i] = 0.5f * float(i) - 3.0f;
  }
  std::vector<int> bits(block, 0);
  launch_kernel(dynamic_two_views, dim3(1), dim3(block), block * sizeof(float), nullptr, in.data(), bits.data());
  for (int i = 0; i < block; ++i) {
    int expect;
    std::memcpy(&expect, &in[block - 1 - i], sizeof(int));
    cases::expect(bits[i] == expect, "bits[", i, "]");
  }
}

SIMT_CASE(vector_traffic) {
  const int n = 10003;  // not a multiple of 4: a scalar tail of 3
  const auto in = small_integers(n);
  std::vector<float> out(n, 0.0f);
  simt::reset_traffic();
  launch_kernel(scale_vectorized, dim3(5), dim3(128), 0, nullptr, in.data(), out.data(), 2.0f, n);
  for (int i = 0; i < n; ++i) {
    cases::expect(out[i] == 2.0f * in[i], "out[", i, "]");
  }
  const auto records = simt::traffic();
  cases::expect(records.size() == 1, records.size(), " launches recorded");
  const simt::LaunchRecord& r = records[0];
  cases::expect(r.kernel == reinterpret_cast<const void*>(&scale_vectorized), "kernel label");
  cases::expect(r.grid.x == 5 && r.block.x == 128 && r.shared_bytes == 0, "launch configuration");
  std::printf("traffic %llu %llu\n", (unsigned long long)r.bytes_read, (unsigned long long)r.bytes_written);
  simt::reset_traffic();
  cases::expect(simt::traffic().empty(), "reset_traffic");
}

SIMT_CASE(shared_memory_idioms) {
  const auto in = small_integers(64);
  std::vector<float> out(3, 0.0f);
  launch_kernel(shared_idioms, dim3(1), dim3(64), 0, nullptr, in.data(), out.data());
  cases::expect(out[0] == host_sum(in, 0, 64), "sum ", out[0]);
  cases::expect(out[1] == 64.0f && out[2] == in[63], "count ", out[1], ", copy ", out[2]);
}

SIMT_CASE(block_order) {
  // Prints the order of two launches of a 6x2 grid; the test compares seeds and reruns.
  for (int launch = 0; launch < 2; ++launch) {
    unsigned counter = 0;
    std::vector<unsigned> order(12, 0u);
    launch_kernel(record_block_order, dim3(6, 2), dim3(64), 0, nullptr, &counter, order.data());
    std::printf("order");
    for (unsigned b : order) {
      std::printf(" %u", b);
    }
    std::printf("\n");
  }
}

SIMT_CASE(recovers_after_errors) {
  // Every misuse case, then correct kernels in the same process: no state may leak.
  int misuses = 0, errors = 0;
  for (const auto& [name, run] : cases::registry()) {
    if (name.rfind("misuse_", 0) == 0) {
      ++misuses;
      try {
        run();
      } catch (const std::exception&) {
        ++errors;
      }
    }
  }
  cases::expect(errors == misuses, misuses - errors, " misuse cases did not fail");
  cases::registry().at("last_block_done")();
  cases::registry().at("warp_shuffle_reduction")();
  cases::registry().at("dynamic_shared_reverse")();
}
