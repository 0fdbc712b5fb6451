// Global-memory access for kernels (the portability contract's load/store family). Each call
// adds the bytes it moves to the running launch's traffic counters, which launch.h records
// per launch, so tests can assert how many passes over memory a kernel makes. Vector accesses
// must be aligned to the vector's size, as on a GPU.
//
// Two counts per launch: the raw bytes of every access (what the load/store units issue), and
// the distinct 32-byte sectors read and written (a perfect cache: what DRAM would see at
// least, since re-reads of per-channel values hit L1/L2 on a GPU).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "state.h"

namespace fusedbn::device {

// Defined once, in csrc/cuda/portability.h, for both builds.
template <typename T, int N>
struct Vector;

}  // namespace fusedbn::device

namespace simt::detail {

inline constexpr std::size_t kSectorBytes = 32;

// The distinct sectors one launch touched in one direction. Ids are appended behind a small
// direct-mapped filter (most repeats never reach the vector), compacted by sort + unique when
// the vector doubles, so memory stays near twice the distinct count.
class SectorSet {
 public:
  SectorSet() { recent_.fill(kEmpty); }

  void add(const void* p, std::size_t bytes) {
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
    for (std::uint64_t s = a / kSectorBytes, last = (a + bytes - 1) / kSectorBytes; s <= last; ++s) {
      std::uint64_t& slot = recent_[s % kRecent];
      if (slot == s) continue;
      slot = s;
      ids_.push_back(s);
      if (ids_.size() >= compact_at_) {
        compact();
        compact_at_ = std::max<std::size_t>(2 * ids_.size(), kFirstCompaction);
      }
    }
  }

  std::uint64_t count() {
    compact();
    return ids_.size();
  }

  void clear() {
    ids_.clear();
    if (ids_.capacity() > 4 * kFirstCompaction) {
      std::vector<std::uint64_t>().swap(ids_);  // gives a big launch's memory back
    }
    recent_.fill(kEmpty);
    compact_at_ = kFirstCompaction;
  }

 private:
  static constexpr std::size_t kRecent = 1024;
  static constexpr std::size_t kFirstCompaction = std::size_t(1) << 16;
  static constexpr std::uint64_t kEmpty = ~std::uint64_t(0);  // no address maps to this sector

  void compact() {
    std::sort(ids_.begin(), ids_.end());
    ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
  }

  std::vector<std::uint64_t> ids_;
  std::array<std::uint64_t, kRecent> recent_;
  std::size_t compact_at_ = kFirstCompaction;
};

// The running launch's sectors (launch.h clears them before and counts them after).
inline SectorSet g_sectors_read;
inline SectorSet g_sectors_written;

inline void count_read(const void* p, std::size_t bytes) {
  g_bytes_read += bytes;
  g_sectors_read.add(p, bytes);
}

inline void count_write(const void* p, std::size_t bytes) {
  g_bytes_written += bytes;
  g_sectors_written.add(p, bytes);
}

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
  simt::detail::count_read(p, sizeof(T));
  return *p;
}

template <typename T>
inline void store(T* p, T v) {
  simt::detail::check_global_address(p, 1, "store");
  simt::detail::count_write(p, sizeof(T));
  *p = v;
}

template <typename T, int N>
inline Vector<T, N> load_vector(const T* p) {
  simt::detail::check_global_address(p, alignof(Vector<T, N>), "load_vector");
  simt::detail::count_read(p, sizeof(Vector<T, N>));
  Vector<T, N> v;
  std::memcpy(static_cast<void*>(&v), p, sizeof(v));
  return v;
}

template <typename T, int N>
inline void store_vector(T* p, const Vector<T, N>& v) {
  simt::detail::check_global_address(p, alignof(Vector<T, N>), "store_vector");
  simt::detail::count_write(p, sizeof(Vector<T, N>));
  std::memcpy(static_cast<void*>(p), &v, sizeof(v));
}

}  // namespace fusedbn::device

// Read-only-cache load: a plain global read, counted like load() (here rather than in
// cuda_builtins.h so that it feeds the sector count too).
template <typename T>
inline T __ldg(const T* p) {
  simt::detail::count_read(p, sizeof(T));
  return *p;
}
