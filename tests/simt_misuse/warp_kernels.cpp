// Correct kernels exercising warp intrinsics (every shuffle mode and width, ballot, partial
// masks), shared-memory atomics, multi-dimensional indexing and barrier predicates, plus a
// BatchNorm-statistics-sized workload that reports its speed.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cases.h"

using fusedbn::device::launch_kernel;
using fusedbn::device::load;
using fusedbn::device::store;

namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kResults = 10;

// Thread t writes result k to out[k * blockDim.x + t]; the host recomputes each from CUDA's
// definition of the intrinsic.
__global__ void shuffle_modes(int* out) {
  const int tid = threadIdx.x;
  const int lane = tid % warpSize;
  const int v = 1000 + tid;
  const int n = blockDim.x;
  store(out + 0 * n + tid, __shfl_sync(kFullMask, v, 3));
  store(out + 1 * n + tid, __shfl_sync(kFullMask, v, lane + 5, 16));
  store(out + 2 * n + tid, __shfl_up_sync(kFullMask, v, 2, 8));
  store(out + 3 * n + tid, __shfl_down_sync(kFullMask, v, 3));
  store(out + 4 * n + tid, __shfl_xor_sync(kFullMask, v, 16, 16));
  store(out + 5 * n + tid, int(__ballot_sync(kFullMask, lane % 3 == 0)));
  store(out + 6 * n + tid, __any_sync(kFullMask, lane == 7) + 2 * __all_sync(kFullMask, lane < 31));
  // Each half-warp on its own, through the same call site with different masks.
  const unsigned half = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  __syncwarp(half);
  store(out + 7 * n + tid, __shfl_xor_sync(half, v, 1, 16));
  const double d = __shfl_down_sync(kFullMask, 0.5 * v, 1);
  store(out + 8 * n + tid, int(4.0 * d));
  const long long wide = __shfl_sync(kFullMask, (long long)v << 33, 0);
  store(out + 9 * n + tid, int(wide >> 33));
}

// Inclusive prefix sum over each warp with __shfl_up_sync.
__global__ void warp_inclusive_scan(const int* in, int* out) {
  const int lane = threadIdx.x % warpSize;
  int v = load(in + threadIdx.x);
  for (int offset = 1; offset < warpSize; offset *= 2) {
    const int up = __shfl_up_sync(kFullMask, v, offset);
    if (lane >= offset) {
      v += up;
    }
  }
  store(out + threadIdx.x, v);
}

// Block-local histogram with shared-memory atomics, merged with global atomics.
__global__ void histogram16(const int* in, unsigned* hist, int n) {
  FUSEDBN_SHARED_ARRAY(unsigned, bins, 16);
  if (threadIdx.x < 16) {
    bins[threadIdx.x] = 0u;
  }
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    atomicAdd(&bins[load(in + i) & 15], 1u);
  }
  __syncthreads();
  if (threadIdx.x < 16) {
    atomicAdd(hist + threadIdx.x, unsigned(bins[threadIdx.x]));
  }
}

// 3-D blocks in a 3-D grid: every thread writes its own global coordinates once.
__global__ void coordinates_3d(int* out, int* predicates) {
  const unsigned x = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned y = blockIdx.y * blockDim.y + threadIdx.y;
  const unsigned z = blockIdx.z * blockDim.z + threadIdx.z;
  const unsigned width = gridDim.x * blockDim.x, height = gridDim.y * blockDim.y;
  const unsigned i = (z * height + y) * width + x;
  store(out + i, int(x + 100 * y + 10000 * z));
  const int count = __syncthreads_count(threadIdx.x == 0);
  const int all = __syncthreads_and(threadIdx.z < blockDim.z);
  const int any = __syncthreads_or(threadIdx.y == 1 && threadIdx.z == 1);
  const unsigned block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
    store(predicates + block, count * 100 + all * 10 + any);
  }
}

// Per-channel mean and variance of an (N, C, S) tensor, one block per channel: the shape of
// the real statistics kernels (grid-stride loads, warp shuffles, shared memory per warp).
__global__ void channel_stats(const float* in, float* mean, float* var, int N, int C, int S) {
  FUSEDBN_SHARED_ARRAY(float, warp_sum, 32);
  FUSEDBN_SHARED_ARRAY(float, warp_sq, 32);
  const int c = blockIdx.x;
  float sum = 0.0f, sq = 0.0f;
  for (int i = threadIdx.x; i < N * S; i += blockDim.x) {
    const float x = load(in + (std::int64_t(i / S) * C + c) * S + i % S);
    sum += x;
    sq += x * x;
  }
  for (int offset = warpSize / 2; offset > 0; offset >>= 1) {
    sum += __shfl_down_sync(kFullMask, sum, offset);
    sq += __shfl_down_sync(kFullMask, sq, offset);
  }
  const int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
  if (lane == 0) {
    warp_sum[warp] = sum;
    warp_sq[warp] = sq;
  }
  __syncthreads();
  if (warp == 0) {
    const bool live = lane < int(blockDim.x) / warpSize;
    sum = live ? float(warp_sum[lane]) : 0.0f;
    sq = live ? float(warp_sq[lane]) : 0.0f;
    for (int offset = warpSize / 2; offset > 0; offset >>= 1) {
      sum += __shfl_xor_sync(kFullMask, sum, offset);
      sq += __shfl_xor_sync(kFullMask, sq, offset);
    }
    if (lane == 0) {
      const float m = sum / float(N * S);
      store(mean + c, m);
      store(var + c, sq / float(N * S) - m * m);
    }
  }
}

}  // namespace

SIMT_CASE(shuffle_semantics) {
  const int n = 64;
  std::vector<int> out(kResults * n, -1);
  launch_kernel(shuffle_modes, dim3(1), dim3(n), 0, nullptr, out.data());
  for (int t = 0; t < n; ++t) {
    const int lane = t % 32, base = t - lane, v = 1000 + t;
    const int seg16 = lane & ~15, seg8 = lane & ~7;
    const int expect[kResults] = {
        1000 + base + 3,
        1000 + base + seg16 + (lane + 5) % 16,
        lane - seg8 >= 2 ? v - 2 : v,
        lane + 3 < 32 ? v + 3 : v,
        lane >= 16 ? v - 16 : v,  // xor 16 within width 16: earlier segment only
        int(0x49249249u),
        1,  // any(lane == 7) + 2 * all(lane < 31)
        1000 + base + (lane ^ 1),
        lane + 1 < 32 ? 2 * (v + 1) : 2 * v,
        1000 + base,
    };
    for (int k = 0; k < kResults; ++k) {
      cases::expect(out[k * n + t] == expect[k], "result ", k, " of thread ", t, ": ", out[k * n + t],
                    ", expected ", expect[k]);
    }
  }
}

SIMT_CASE(warp_scan) {
  const int n = 128;
  std::vector<int> in(n), out(n, 0);
  for (int i = 0; i < n; ++i) {
    in[i] = i % 5 + 1;
  }
  launch_kernel(warp_inclusive_scan, dim3(1), dim3(n), 0, nullptr, in.data(), out.data());
  int running = 0;
  for (int i = 0; i < n; ++i) {
    running = (i % 32 == 0 ? 0 : running) + in[i];
    cases::expect(out[i] == running, "scan[", i, "] = ", out[i], ", expected ", running);
  }
}

SIMT_CASE(shared_atomics_histogram) {
  const int n = 30000;
  std::vector<int> in(n);
  std::vector<unsigned> expect(16, 0u), hist(16, 0u);
  for (int i = 0; i < n; ++i) {
    in[i] = (i * 7919) % 1000;
    ++expect[in[i] & 15];
  }
  launch_kernel(histogram16, dim3(9), dim3(256), 0, nullptr, in.data(), hist.data(), n);
  for (int b = 0; b < 16; ++b) {
    cases::expect(hist[b] == expect[b], "bin ", b, ": ", hist[b], ", expected ", expect[b]);
  }
}

SIMT_CASE(grid_3d) {
  const dim3 grid(3, 2, 2), block(8, 4, 2);
  const int width = 24, height = 8, depth = 4;
  std::vector<int> out(width * height * depth, -1), predicates(12, -1);
  launch_kernel(coordinates_3d, grid, block, 0, nullptr, out.data(), predicates.data());
  for (int z = 0; z < depth; ++z) {
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        const int got = out[(z * height + y) * width + x];
        cases::expect(got == x + 100 * y + 10000 * z, "element (", x, ",", y, ",", z, ") = ", got);
      }
    }
  }
  for (int b = 0; b < 12; ++b) {
    cases::expect(predicates[b] == 8 * 100 + 10 + 1, "predicates of block ", b, ": ", predicates[b]);
  }
}

SIMT_CASE(channel_stats_speed) {
  const int N = 16, C = 8, S = 784;  // 100,352 elements
  std::vector<float> in(std::size_t(N) * C * S);
  for (std::size_t i = 0; i < in.size(); ++i) {
    in[i] = float(int(i % 17) - 8);
  }
  std::vector<float> mean(C), var(C);
  const int repeats = 10;
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < repeats; ++r) {
    launch_kernel(channel_stats, dim3(C), dim3(1024), 0, nullptr, in.data(), mean.data(), var.data(), N, C, S);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (int c = 0; c < C; ++c) {
    double s = 0, q = 0;
    for (int n = 0; n < N; ++n) {
      for (int i = 0; i < S; ++i) {
        const double x = in[(std::size_t(n) * C + c) * S + i];
        s += x;
        q += x * x;
      }
    }
    const double m = s / (N * S);
    cases::expect(std::fabs(mean[c] - m) < 1e-4, "mean ", c, ": ", mean[c], " vs ", m);
    cases::expect(std::fabs(var[c] - (q / (N * S) - m * m)) < 1e-3, "var ", c);
  }
  std::printf("launch_ms %.3f\n", 1000.0 * seconds / repeats);
}
