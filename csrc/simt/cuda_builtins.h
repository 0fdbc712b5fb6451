// The names CUDA C++ gives a kernel for free, made to mean something to the host compiler:
// qualifiers, dim3, the built-in index variables, warpSize, the stream type, fences, and the
// device math functions the host C library lacks. (__ldg is in global_memory.h.)
#pragma once

#include <cmath>
#include <cstdint>

// Qualifiers: everything runs on the host. __restrict__ is already a GCC/Clang keyword, and
// __noinline__ stays undefined: libstdc++ spells __attribute__((__noinline__)) itself.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

// The same declaration as cuda_runtime_api.h, so the two can meet in one translation unit.
struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

namespace simt::detail {
// Written by the scheduler before it resumes a fiber: only one fiber runs at a time, so one
// global per built-in is each CUDA thread's own value while that thread runs.
inline uint3 g_thread_idx{0, 0, 0};
inline uint3 g_block_idx{0, 0, 0};
inline dim3 g_block_dim{1, 1, 1};
inline dim3 g_grid_dim{1, 1, 1};
// Bytes moved by load/store in the running launch (global_memory.h).
inline std::uint64_t g_bytes_read = 0;
inline std::uint64_t g_bytes_written = 0;
}  // namespace simt::detail

// Read-only views, as in CUDA (kernels cannot assign to threadIdx).
inline const uint3& threadIdx = simt::detail::g_thread_idx;
inline const uint3& blockIdx = simt::detail::g_block_idx;
inline const dim3& blockDim = simt::detail::g_block_dim;
inline const dim3& gridDim = simt::detail::g_grid_dim;
constexpr int warpSize = 32;

// Blocks run one at a time and fibers never run in parallel: every store is already visible.
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __threadfence_system() {}

// Templates so that a C library which declares the C23 rsqrt family (extern "C") merely
// gains an overload instead of a conflicting redeclaration.
template <typename = void>
inline float rsqrtf(float x) {
  return 1.0f / std::sqrt(x);
}
template <typename = void>
inline double rsqrt(double x) {
  return 1.0 / std::sqrt(x);
}
template <typename = void>
inline float rsqrt(float x) {
  return 1.0f / std::sqrt(x);
}

// Fast-math intrinsics: the accurate host function stands in for each.
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
