// Streaming (non-temporal) stores for the output passes. A normal store to a line that is not
// in cache first reads the line from memory, so an output pass moves the output's bytes twice;
// a streaming store writes whole cache lines straight to memory. It pays when the output is
// too large to be in cache for its reader anyway; smaller outputs keep normal stores, so the
// next layer reads them from cache. A line is only ever written whole by streaming stores or
// whole by normal ones: a line written both ways is evicted and refetched, slower than either.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cpu/vec/vec.h>

#include <cstdint>
#include <type_traits>

#if defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

#include "vectorized.h"

namespace fusedbn::cpu {

// Outputs from this size on are streamed: more than the per-core share of a server's last
// level cache, where the reader would find most of a normally stored output evicted.
constexpr int64_t kStreamingMinBytes = 4 << 20;

// Vectors of T can be streamed in this build (float and double, AVX2 builds).
template <typename T>
constexpr bool kCanStream =
#if defined(CPU_CAPABILITY_AVX2)
    std::is_same_v<T, float> || std::is_same_v<T, double>;
#else
    false;
#endif

// Whether the passes writing `output` should stream it.
template <typename T>
bool use_streaming(const at::Tensor& output) {
  return kCanStream<T> && int64_t(output.nbytes()) >= kStreamingMinBytes;
}

// Stores v to p (aligned to the vector's size) without reading its line into cache.
template <typename T>
inline void stream_store(T* p, const at::vec::Vectorized<T>& v) {
  static_assert(kCanStream<T>, "only float and double vectors are streamed, in AVX2 builds");
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    _mm256_stream_ps(p, v);
  } else {
    _mm256_stream_pd(p, v);
  }
#endif
}

// Orders a thread's streaming stores before what follows (they bypass the usual store
// ordering); called at the end of each task that streamed, before other threads read.
inline void finish_streaming() {
#if defined(CPU_CAPABILITY_AVX2)
  _mm_sfence();
#endif
}

// Values of T from p up to the next cache line boundary (0 when p is on one).
template <typename T>
int64_t values_to_line_boundary(const T* p) {
  const auto misalignment = int64_t(reinterpret_cast<std::uintptr_t>(p) % kCacheLine);
  return misalignment == 0 ? 0 : (kCacheLine - misalignment) / int64_t(sizeof(T));
}

}  // namespace fusedbn::cpu
