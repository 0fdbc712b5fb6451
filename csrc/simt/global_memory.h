// Global-memory access for kernels (the portability contract's load/store family). Each call
// adds the bytes it moves to the running launch's traffic counters, which launch.h records
// per launch, so tests can assert how many passes over memory a kernel makes. Vector accesses
// must be aligned to the vector's size, as on a GPU.
#pragma once

#include <cstdint>
#include <cstring>

#include "state.h"

namespace fusedbn::device {

// Defined once, in csrc/cuda/portability.h, for both builds.
template <typename T, int N>
struct Vector;

}  // namespace fusedbn::device

namespace simt::detail {

inline void check_global_address(const void* p, std::size_t alignment, const char* what) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  if (p == nullptr) {
    fail_in_thread(what, " through a null pointer");
  }
  if (address % alignment != 0) {
    fail_in_thread(what, " at a misaligned address: ", p, " is not a multiple of ", alignment,
                   " bytes, the size of the vector");
  }
}

}  // namespace simt::detail

namespace fusedbn::device {

template <typename T>
inline T load(const T* p) {
  simt::detail::check_global_address(p, 1, "load");
  simt::detail::g_bytes_read += sizeof(T);
  return *p;
}

template <typename T>
inline void store(T* p, T v) {
  simt::detail::check_global_address(p, 1, "store");
  simt::detail::g_bytes_written += sizeof(T);
  *p = v;
}

template <typename T, int N>
inline Vector<T, N> load_vector(const T* p) {
  simt::detail::check_global_address(p, alignof(Vector<T, N>), "load_vector");
  simt::detail::g_bytes_read += sizeof(Vector<T, N>);
  Vector<T, N> v;
  std::memcpy(static_cast<void*>(&v), p, sizeof(v));
  return v;
}

template <typename T, int N>
inline void store_vector(T* p, const Vector<T, N>& v) {
  simt::detail::check_global_address(p, alignof(Vector<T, N>), "store_vector");
  simt::detail::g_bytes_written += sizeof(Vector<T, N>);
  std::memcpy(static_cast<void*>(p), &v, sizeof(v));
}

}  // namespace fusedbn::device
