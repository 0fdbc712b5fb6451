// Welford's running mean/variance and Chan's merge of two partial results.
//
// Never E[x^2] - E[x]^2: that cancels catastrophically when |mean| >> std. Every build
// (CPU, CUDA, SIMT) accumulates statistics with these functions, in `acc_t` (float for
// half/bfloat16/float input, double for double input).
#pragma once

#include <cstdint>

#include "macros.h"

namespace fusedbn {

// Mean and sum of squared deviations (m2) of `count` values. Biased variance is m2 / count.
template <typename acc_t>
struct WelfordData {
  acc_t mean = acc_t(0);
  acc_t m2 = acc_t(0);
  int64_t count = 0;
};

// Adds `x` to a running (mean, m2) whose count, after this value, is 1 / inv_count.
// `T` may be a scalar or a vector of lanes that share one count.
template <typename T>
FUSEDBN_HOST_DEVICE FUSEDBN_INLINE void welford_step(T& mean, T& m2, T x, T inv_count) {
  const T delta = x - mean;
  mean = mean + delta * inv_count;
  m2 = m2 + delta * (x - mean);
}

// Chan et al.: the statistics of the union of two disjoint sets. Returns WelfordData<acc_t>.
template <typename acc_t>
FUSEDBN_HOST_DEVICE FUSEDBN_INLINE WelfordData<acc_t> welford_merge(const WelfordData<acc_t>& a,
                                                                    const WelfordData<acc_t>& b) {
  // An empty side contributes nothing (and must not: delta² could overflow).
  if (b.count == 0) return a;
  if (a.count == 0) return b;
  const int64_t count = a.count + b.count;
  const acc_t b_share = acc_t(b.count) / acc_t(count);
  const acc_t delta = b.mean - a.mean;
  WelfordData<acc_t> out;
  out.mean = a.mean + delta * b_share;
  out.m2 = a.m2 + b.m2 + delta * delta * acc_t(a.count) * b_share;
  out.count = count;
  return out;
}

}  // namespace fusedbn
