// at::vec::Vectorized glue for the CPU kernels: the vector form of Elementwise<T> (the scalar
// form is in csrc/common/activation.h) and loads/stores of a block of lanes that convert the
// input dtype to and from the accumulation dtype.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/OpMathType.h>

#include <cstring>

#include "../common/activation.h"

namespace fusedbn {

template <typename T>
struct Elementwise<at::vec::Vectorized<T>> {
  using Vec = at::vec::Vectorized<T>;
  static Vec select(const Vec& mask, const Vec& if_true, const Vec& otherwise) {
    return Vec::blendv(otherwise, if_true, mask);
  }
  static Vec exp(const Vec& x) { return x.exp(); }
  static Vec expm1(const Vec& x) { return x.expm1(); }
};

namespace cpu {

template <typename scalar_t>
using acc_type = at::opmath_type<scalar_t>;

constexpr int64_t kCacheLine = 64;  // bytes

// Stores two vectors of acc_t lanes to p, one after the other, as scalar_t: a reduced-precision
// vector holds two of them, so they are converted together (one alone would fill half of it).
template <typename scalar_t>
inline void store_pair(scalar_t* p, const at::vec::Vectorized<acc_type<scalar_t>>& a,
                       const at::vec::Vectorized<acc_type<scalar_t>>& b) {
  using Vec = at::vec::Vectorized<acc_type<scalar_t>>;
  if constexpr (std::is_same_v<scalar_t, acc_type<scalar_t>>) {
    a.store(p);
    b.store(p + Vec::size());
  } else {
    at::vec::convert_from_float<scalar_t>(a, b).store(p);
  }
}

// A block of kBlockVecs vectors of acc_t: the unit the contiguous loops step by. Several
// independent vectors per step hide the latency of the reductions' dependent adds.
constexpr int kBlockVecs = 4;

template <typename scalar_t>
struct Block {
  using acc_t = acc_type<scalar_t>;
  using Vec = at::vec::Vectorized<acc_t>;
  static constexpr int64_t kSize = kBlockVecs * Vec::size();
  Vec v[kBlockVecs];

  // Loads kSize values from p, converted to acc_t.
  static Block load(const scalar_t* p) {
    Block b;
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      for (int i = 0; i < kBlockVecs; ++i) b.v[i] = Vec::loadu(p + i * Vec::size());
    } else {
      for (int i = 0; i < kBlockVecs; i += 2) at::vec::load_to_float(p + i * Vec::size(), b.v[i], b.v[i + 1]);
    }
    return b;
  }

  // Stores the kSize values to p, converted to scalar_t.
  void store(scalar_t* p) const {
    for (int i = 0; i < kBlockVecs; i += 2) store_pair(p + i * Vec::size(), v[i], v[i + 1]);
  }
};

// g = dy·act'(x * scale + shift): the gradient reaching z, for one vector of lanes. Every CPU
// backward loop computes it this way.
template <Activation A, typename Vec>
inline Vec gradient(const Vec& dy, const Vec& x, const Vec& scale, const Vec& shift, const Vec& param) {
  return dy * ActivationFn<A>::derivative(at::vec::fmadd(x, scale, shift), param);
}

// Asks the CPU to start loading [p, p + bytes) into cache. The loops call it for data a
// little ahead of use where the hardware prefetcher cannot guess the next address: the next
// short plane of a channel, the next rows of a block of channels.
inline void prefetch(const void* p, int64_t bytes) {
  for (int64_t offset = 0; offset < bytes; offset += kCacheLine) {
    __builtin_prefetch(static_cast<const char*>(p) + offset);
  }
}

// A running per-lane sum: kBlockVecs vectors, independent dependency chains. Summed in a
// fixed order, so its total depends on the values and their order only.
template <typename scalar_t>
struct Accumulator {
  using acc_t = acc_type<scalar_t>;
  using Vec = at::vec::Vectorized<acc_t>;
  Vec v[kBlockVecs] = {Vec(acc_t(0)), Vec(acc_t(0)), Vec(acc_t(0)), Vec(acc_t(0))};

  acc_t total() const {
    const Vec lanes = (v[0] + v[1]) + (v[2] + v[3]);
    return at::vec::vec_reduce_all([](Vec a, Vec b) { return a + b; }, lanes);
  }
};
static_assert(kBlockVecs == 4, "Accumulator initialises four vectors");

// One vector of acc_t lanes loaded from / stored to scalar_t memory: the unit of the
// channels_last loops, which step across channels. `count` < Vec::size() loads a tail.
template <typename scalar_t>
inline at::vec::Vectorized<acc_type<scalar_t>> load_lanes(const scalar_t* p, int64_t count) {
  using Vec = at::vec::Vectorized<acc_type<scalar_t>>;
  if constexpr (std::is_same_v<scalar_t, acc_type<scalar_t>>) {
    return Vec::loadu(p, count);
  } else if (count == Vec::size()) {
    Vec v;
    at::vec::load_to_float(p, v);
    return v;
  } else {
    acc_type<scalar_t> buffer[Vec::size()];
    for (int64_t i = 0; i < count; ++i) buffer[i] = static_cast<acc_type<scalar_t>>(p[i]);
    return Vec::loadu(buffer, count);
  }
}

template <typename scalar_t>
inline void store_lanes(scalar_t* p, const at::vec::Vectorized<acc_type<scalar_t>>& v, int64_t count) {
  using Vec = at::vec::Vectorized<acc_type<scalar_t>>;
  if constexpr (std::is_same_v<scalar_t, acc_type<scalar_t>>) {
    v.store(p, count);
  } else if (count == Vec::size()) {
    // A whole vector fills half of a reduced-precision vector: storing that half with
    // store(p, count) takes its slow partial path; a fixed-size copy is one move.
    __at_align__ scalar_t converted[2 * Vec::size()];
    at::vec::convert_from_float<scalar_t>(v, v).store(converted);
    std::memcpy(p, converted, sizeof(scalar_t) * Vec::size());
  } else {
    at::vec::convert_from_float<scalar_t>(v, v).store(p, count);
  }
}

}  // namespace cpu
}  // namespace fusedbn
