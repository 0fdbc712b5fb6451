// CUDA atomics. Fibers are cooperative and never switch inside these functions, so a plain
// read-modify-write is atomic. Each returns the old value, as in CUDA.
//
// Global memory: a raw pointer. Shared memory: a SharedPtr (from &name[i]), bounds-checked and
// exempt from the race detector. Global atomics are not counted as traffic.
#pragma once

#include <cstring>
#include <type_traits>

#include "shared_memory.h"

namespace simt::detail {

template <typename T>
struct type_identity {
  using type = T;
};
template <typename T>
using identity_t = typename type_identity<T>::type;

template <typename T, typename... Allowed>
inline constexpr bool one_of = (std::is_same_v<T, Allowed> || ...);

template <typename T, typename Op>
T atomic_update(T* p, Op op) {
  const T old = *p;
  *p = op(old);
  return old;
}

template <typename T, typename Op>
T atomic_update(SharedPtr<T> p, Op op) {
  SharedRegion& r = *p.region();
  check_shared(r, p.offset(), sizeof(T), Access::kAtomic);
  T old;
  std::memcpy(&old, r.data + p.offset(), sizeof(T));
  const T updated = op(old);
  std::memcpy(r.data + p.offset(), &updated, sizeof(T));
  return old;
}

}  // namespace simt::detail

// One template per operation, over both address kinds (T* and SharedPtr<T>), limited to the
// types CUDA provides it for. The value parameter does not take part in deduction, so
// atomicAdd(float_ptr, 1) works as in CUDA.
#define FUSEDBN_SIMT_ATOMIC(name, expr, ...)                                                \
  template <typename T>                                                                     \
  inline T name(T* address, simt::detail::identity_t<T> val) {                              \
    static_assert(simt::detail::one_of<T, __VA_ARGS__>, "CUDA has no " #name " for this type"); \
    return simt::detail::atomic_update(address, [&](T old) -> T { return expr; });          \
  }                                                                                         \
  template <typename T>                                                                     \
  inline T name(simt::SharedPtr<T> address, simt::detail::identity_t<T> val) {              \
    static_assert(simt::detail::one_of<T, __VA_ARGS__>, "CUDA has no " #name " for this type"); \
    return simt::detail::atomic_update(address, [&](T old) -> T { return expr; });          \
  }

FUSEDBN_SIMT_ATOMIC(atomicAdd, old + val, int, unsigned, unsigned long long, float, double)
FUSEDBN_SIMT_ATOMIC(atomicSub, old - val, int, unsigned)
FUSEDBN_SIMT_ATOMIC(atomicExch, val, int, unsigned, unsigned long long, float)
FUSEDBN_SIMT_ATOMIC(atomicMax, old < val ? val : old, int, unsigned, long long, unsigned long long)
FUSEDBN_SIMT_ATOMIC(atomicMin, val < old ? val : old, int, unsigned, long long, unsigned long long)
FUSEDBN_SIMT_ATOMIC(atomicAnd, old & val, int, unsigned, unsigned long long)
FUSEDBN_SIMT_ATOMIC(atomicOr, old | val, int, unsigned, unsigned long long)
FUSEDBN_SIMT_ATOMIC(atomicXor, old ^ val, int, unsigned, unsigned long long)
#undef FUSEDBN_SIMT_ATOMIC

template <typename T>
inline T atomicCAS(T* address, simt::detail::identity_t<T> compare, simt::detail::identity_t<T> val) {
  static_assert(simt::detail::one_of<T, int, unsigned, unsigned long long, unsigned short>,
                "CUDA has no atomicCAS for this type");
  return simt::detail::atomic_update(address, [&](T old) -> T { return old == compare ? val : old; });
}
template <typename T>
inline T atomicCAS(simt::SharedPtr<T> address, simt::detail::identity_t<T> compare,
                   simt::detail::identity_t<T> val) {
  static_assert(simt::detail::one_of<T, int, unsigned, unsigned long long, unsigned short>,
                "CUDA has no atomicCAS for this type");
  return simt::detail::atomic_update(address, [&](T old) -> T { return old == compare ? val : old; });
}
