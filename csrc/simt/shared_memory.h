// Shared memory: per-block arrays reached only through checked handles, so that every access
// is bounds-checked and race-checked.
//
// - FUSEDBN_SHARED_ARRAY(T, name, count) and FUSEDBN_DYNAMIC_SHARED(T, name) declare `name`
//   as a SharedPtr<T>. name[i] is a SharedRef<T>: it converts to T (a read) and takes
//   assignment and compound assignment (writes). Read an element into a typed local
//   (`float v = name[i];`, not `auto`) and assign whole elements (no `name[i].member`).
// - Every region is filled with 0xFF bytes (NaN for floats, -1 for integers) when the block
//   first declares it, so reading what no thread wrote shows up in the results.
// - Race detector: between two __syncthreads() (an "epoch") a byte written by one thread may
//   not be read or written by another, and a byte read by one thread may not be written by
//   another. Shadow state per byte records the last writer and reader with their epoch, so
//   nothing is cleared between blocks: a new block simply starts a new epoch. Atomics are
//   bounds-checked but exempt.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "state.h"

namespace simt {

// Static plus dynamic shared memory per block: CUDA's limit without the sm_80/sm_90 opt-in.
inline constexpr std::size_t kMaxSharedBytesPerBlock = 48 * 1024;

namespace detail {

struct ShadowByte {
  std::uint32_t write_epoch;
  std::uint32_t read_epoch;
  std::uint16_t writer;
  std::uint16_t reader;  // kManyReaders once two threads have read in the epoch
};
inline constexpr std::uint16_t kManyReaders = 0xffff;

struct SharedRegion {
  char* data;
  std::size_t bytes;
  ShadowByte* shadow;
  const char* name;
  bool dynamic;
};

// One per declaration (a function-local static): remembers its region for the block in
// which it last ran, so that every thread of a block gets the same array.
struct SharedSite {
  const char* name;
  bool dynamic;
  std::uint64_t block;
  SharedRegion* region;
};

inline constexpr unsigned kMaxSharedRegions = 64;

struct SharedArena {
  alignas(64) char data[kMaxSharedBytesPerBlock];
  ShadowByte shadow[kMaxSharedBytesPerBlock];
  SharedRegion regions[kMaxSharedRegions];
  unsigned region_count;
  std::size_t used;  // dynamic bytes first, static arrays after them
  std::size_t dynamic_bytes;
  std::uint32_t epoch;
  std::uint64_t block_serial;
};

inline SharedArena g_shared{};

// Starts a shared-memory epoch: accesses recorded before it no longer conflict.
inline void next_epoch() {
  SharedArena& a = g_shared;
  if (++a.epoch == UINT32_MAX) {  // wrapped: forget every record rather than misread one
    std::memset(a.shadow, 0, sizeof(a.shadow));
    a.epoch = 1;
  }
}

inline void begin_block_shared(std::size_t dynamic_bytes) {
  SharedArena& a = g_shared;
  ++a.block_serial;
  a.region_count = 0;
  a.dynamic_bytes = dynamic_bytes;
  a.used = (dynamic_bytes + 15) / 16 * 16;
  std::memset(a.data, 0xff, dynamic_bytes);
  next_epoch();
}

inline SharedRegion* new_region(const SharedSite& site, std::size_t offset, std::size_t bytes) {
  SharedArena& a = g_shared;
  if (a.region_count == kMaxSharedRegions) {
    fail_in_thread("more than ", kMaxSharedRegions, " shared-memory declarations in one block");
  }
  SharedRegion& r = a.regions[a.region_count++];
  r = SharedRegion{a.data + offset, bytes, a.shadow + offset, site.name, site.dynamic};
  return &r;
}

// The region of a FUSEDBN_SHARED_ARRAY in the running block, allocated on first use.
inline SharedRegion* static_region(SharedSite& site, std::size_t bytes, std::size_t align) {
  SharedArena& a = g_shared;
  current_thread("FUSEDBN_SHARED_ARRAY");
  if (site.block != a.block_serial) {
    align = align < 16 ? 16 : align;
    const std::size_t begin = (a.used + align - 1) / align * align;
    if (begin + bytes > kMaxSharedBytesPerBlock) {
      fail_in_thread("shared array '", site.name, "' (", bytes, " bytes) does not fit: static ",
                     "arrays plus ", a.dynamic_bytes, " bytes of dynamic shared memory exceed ",
                     "the ", kMaxSharedBytesPerBlock, "-byte per-block limit");
    }
    std::memset(a.data + begin, 0xff, bytes);
    a.used = begin + bytes;
    site.region = new_region(site, begin, bytes);
    site.block = a.block_serial;
  }
  return site.region;
}

// The launch's dynamic shared memory, seen through a FUSEDBN_DYNAMIC_SHARED declaration.
inline SharedRegion* dynamic_region(SharedSite& site) {
  SharedArena& a = g_shared;
  current_thread("FUSEDBN_DYNAMIC_SHARED");
  if (site.block != a.block_serial) {
    site.region = new_region(site, 0, a.dynamic_bytes);
    site.block = a.block_serial;
  }
  return site.region;
}

enum class Access { kRead, kWrite, kAtomic };

[[noreturn]] inline void fail_race(const SharedRegion& r, std::ptrdiff_t index, const char* kind,
                                   const char* verb, const char* other_verb, unsigned other) {
  const std::string epoch = g_harness.epoch_start.line == 0
                                ? std::string("the block started")
                                : describe(g_harness.epoch_start);
  const std::string who = other == kManyReaders ? "other threads" : describe_thread(other);
  fail_in_thread("shared-memory race (", kind, ") on '", r.name, "'[", index, "]: ",
                 describe_thread(unsigned(g_harness.current)), " ", verb, " what ", who, " ",
                 other_verb, " with no __syncthreads() between them (epoch since ", epoch, ")");
}

// Bounds-checks an access of `size` bytes at byte `offset` of `r` and runs the race detector.
inline void check_shared(const SharedRegion& r, std::ptrdiff_t offset, std::size_t size,
                         Access access) {
  const auto index = offset / std::ptrdiff_t(size);
  if (offset < 0 || std::size_t(offset) + size > r.bytes) {
    fail_in_thread("shared memory out of bounds: '", r.name, "'[", index, "] touches bytes [",
                   offset, ", ", offset + std::ptrdiff_t(size), ") of a ", r.bytes, "-byte ",
                   r.dynamic ? "dynamic shared memory (the launch's shared_bytes)" : "array",
                   " (", r.bytes / size, " elements)");
  }
  if (access == Access::kAtomic) {
    return;
  }
  const int current = g_harness.current;
  if (current < 0) {
    fail("shared memory '", r.name, "' accessed outside a kernel");
  }
  const auto me = static_cast<std::uint16_t>(current);
  const std::uint32_t epoch = g_shared.epoch;
  ShadowByte* s = r.shadow + offset;
  for (std::size_t k = 0; k < size; ++k) {
    ShadowByte& b = s[k];
    if (b.write_epoch == epoch && b.writer != me) {
      if (access == Access::kRead) {
        fail_race(r, index, "read-after-write", "reads", "wrote", b.writer);
      }
      fail_race(r, index, "write-write", "writes", "wrote", b.writer);
    }
    if (access == Access::kRead) {
      if (b.read_epoch != epoch) {
        b.read_epoch = epoch;
        b.reader = me;
      } else if (b.reader != me) {
        b.reader = kManyReaders;
      }
    } else {
      if (b.read_epoch == epoch && b.reader != me) {
        fail_race(r, index, "write-after-read", "overwrites", "read", b.reader);
      }
      b.write_epoch = epoch;
      b.writer = me;
    }
  }
}

}  // namespace detail

template <typename T>
class SharedPtr;

// One element of shared memory: reading converts to T, writing assigns.
template <typename T>
class SharedRef {
 public:
  SharedRef(detail::SharedRegion* region, std::ptrdiff_t offset) : region_(region), offset_(offset) {}
  SharedRef(const SharedRef&) = default;

  operator T() const {
    detail::check_shared(*region_, offset_, sizeof(T), detail::Access::kRead);
    T value;
    std::memcpy(static_cast<void*>(&value), region_->data + offset_, sizeof(T));
    return value;
  }

  SharedRef& operator=(const T& value) {
    detail::check_shared(*region_, offset_, sizeof(T), detail::Access::kWrite);
    std::memcpy(static_cast<void*>(region_->data + offset_), &value, sizeof(T));
    return *this;
  }
  // name[i] = name[j] copies the element, not the handle.
  SharedRef& operator=(const SharedRef& other) { return *this = static_cast<T>(other); }

  template <typename U>
  SharedRef& operator+=(const U& v) { T x = *this; x += v; return *this = x; }
  template <typename U>
  SharedRef& operator-=(const U& v) { T x = *this; x -= v; return *this = x; }
  template <typename U>
  SharedRef& operator*=(const U& v) { T x = *this; x *= v; return *this = x; }
  template <typename U>
  SharedRef& operator/=(const U& v) { T x = *this; x /= v; return *this = x; }
  template <typename U>
  SharedRef& operator|=(const U& v) { T x = *this; x |= v; return *this = x; }
  template <typename U>
  SharedRef& operator&=(const U& v) { T x = *this; x &= v; return *this = x; }
  template <typename U>
  SharedRef& operator^=(const U& v) { T x = *this; x ^= v; return *this = x; }
  SharedRef& operator++() { T x = *this; ++x; return *this = x; }
  SharedRef& operator--() { T x = *this; --x; return *this = x; }
  T operator++(int) { T x = *this; T y = x; ++y; *this = y; return x; }
  T operator--(int) { T x = *this; T y = x; --y; *this = y; return x; }

  // &name[i], e.g. for atomicAdd: still a checked handle, never a raw pointer.
  SharedPtr<T> operator&() const { return SharedPtr<T>(region_, offset_); }

  detail::SharedRegion* region() const { return region_; }
  std::ptrdiff_t offset() const { return offset_; }

 private:
  detail::SharedRegion* region_;
  std::ptrdiff_t offset_;  // in bytes
};

// A pointer into one shared region: indexing and pointer arithmetic as on a T*; bounds are
// checked when an element is touched, so one-past-the-end may be formed as in C++.
template <typename T>
class SharedPtr {
 public:
  SharedPtr() = default;
  SharedPtr(detail::SharedRegion* region, std::ptrdiff_t offset) : region_(region), offset_(offset) {}

  SharedRef<T> operator[](std::ptrdiff_t i) const {
    return SharedRef<T>(region_, offset_ + i * std::ptrdiff_t(sizeof(T)));
  }
  SharedRef<T> operator*() const { return (*this)[0]; }

  SharedPtr operator+(std::ptrdiff_t n) const { return SharedPtr(region_, offset_ + n * Size); }
  SharedPtr operator-(std::ptrdiff_t n) const { return SharedPtr(region_, offset_ - n * Size); }
  friend SharedPtr operator+(std::ptrdiff_t n, const SharedPtr& p) { return p + n; }
  std::ptrdiff_t operator-(const SharedPtr& o) const { return (offset_ - o.offset_) / Size; }
  SharedPtr& operator+=(std::ptrdiff_t n) { offset_ += n * Size; return *this; }
  SharedPtr& operator-=(std::ptrdiff_t n) { offset_ -= n * Size; return *this; }
  SharedPtr& operator++() { offset_ += Size; return *this; }
  SharedPtr& operator--() { offset_ -= Size; return *this; }
  bool operator==(const SharedPtr& o) const { return region_ == o.region_ && offset_ == o.offset_; }
  bool operator!=(const SharedPtr& o) const { return !(*this == o); }
  bool operator<(const SharedPtr& o) const { return offset_ < o.offset_; }

  detail::SharedRegion* region() const { return region_; }
  std::ptrdiff_t offset() const { return offset_; }

 private:
  static constexpr std::ptrdiff_t Size = sizeof(T);
  detail::SharedRegion* region_ = nullptr;
  std::ptrdiff_t offset_ = 0;  // in bytes
};

namespace detail {

template <typename T, std::size_t Count>
SharedPtr<T> static_shared(SharedSite& site) {
  static_assert(Count > 0, "a shared array needs at least one element");
  static_assert(sizeof(T) * Count <= kMaxSharedBytesPerBlock,
                "a shared array may not exceed 48 KiB (the per-block limit)");
  return SharedPtr<T>(static_region(site, sizeof(T) * Count, alignof(T)), 0);
}

template <typename T>
SharedPtr<T> dynamic_shared(SharedSite& site) {
  static_assert(alignof(T) <= 16, "dynamic shared memory is 16-byte aligned");
  return SharedPtr<T>(dynamic_region(site), 0);
}

}  // namespace detail
}  // namespace simt

// `count` must be a constant expression, as for a __shared__ array.
#define FUSEDBN_SHARED_ARRAY(T, name, count)                                    \
  static ::simt::detail::SharedSite fusedbn_simt_site_##name{#name, false, 0, nullptr}; \
  const ::simt::SharedPtr<T> name = ::simt::detail::static_shared<T, (count)>(fusedbn_simt_site_##name)

#define FUSEDBN_DYNAMIC_SHARED(T, name)                                         \
  static ::simt::detail::SharedSite fusedbn_simt_site_##name{#name, true, 0, nullptr}; \
  const ::simt::SharedPtr<T> name = ::simt::detail::dynamic_shared<T>(fusedbn_simt_site_##name)
