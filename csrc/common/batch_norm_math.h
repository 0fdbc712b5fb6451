// Per-channel coefficients of the fused BatchNorm + activation, derived once here.
//
// Notation, per channel c over its M = N * spatial values:
//   x̂ = (x - mean) * invstd                    invstd = 1 / sqrt(var_biased + eps)
//   z = weight * x̂ + bias = scale * x + shift  (scale = weight * invstd, shift = bias - mean * scale)
//   y = act(z)
// Backward, with g = dy * act'(z) the gradient reaching z:
//   dbias   = Σg
//   dweight = Σ(g * x̂)
//   dx      = weight * invstd * (g - Σg / M - x̂ * Σ(g * x̂) / M)      (training)
//   dx      = weight * invstd * g                                      (eval: statistics fixed)
// The training dx follows because mean and invstd depend on x: d mean/dx = 1/M and
// d invstd/dx = -invstd^3 (x - mean) / M. Expanding x̂ makes dx affine in g and x, so the
// elementwise pass needs three numbers per channel: dx = g * grad_scale + x * x_scale + shift.
#pragma once

#include "macros.h"

namespace fusedbn {

// z = x * scale + shift. Returns the pair in acc_t.
template <typename acc_t>
struct ForwardCoefficients {
  acc_t scale;
  acc_t shift;
};

template <typename acc_t>
FUSEDBN_HOST_DEVICE FUSEDBN_INLINE ForwardCoefficients<acc_t> forward_coefficients(
    acc_t mean, acc_t invstd, acc_t weight, acc_t bias) {
  const acc_t scale = weight * invstd;
  return {scale, bias - mean * scale};
}

// dx = g * grad_scale + x * x_scale + shift. Returns the triple in acc_t.
template <typename acc_t>
struct BackwardCoefficients {
  acc_t grad_scale;
  acc_t x_scale;
  acc_t shift;
};

// Training: sum_g = Σg, sum_g_xhat = Σ(g * x̂), count = M.
template <typename acc_t>
FUSEDBN_HOST_DEVICE FUSEDBN_INLINE BackwardCoefficients<acc_t> backward_coefficients_train(
    acc_t mean, acc_t invstd, acc_t weight, acc_t sum_g, acc_t sum_g_xhat, int64_t count) {
  const acc_t grad_scale = weight * invstd;
  const acc_t inv_count = acc_t(1) / acc_t(count);
  const acc_t x_scale = -grad_scale * invstd * sum_g_xhat * inv_count;
  const acc_t shift = -grad_scale * sum_g * inv_count - x_scale * mean;
  return {grad_scale, x_scale, shift};
}

// Eval: the statistics are constants, so dx = weight * invstd * g.
template <typename acc_t>
FUSEDBN_HOST_DEVICE FUSEDBN_INLINE BackwardCoefficients<acc_t> backward_coefficients_eval(
    acc_t invstd, acc_t weight) {
  return {weight * invstd, acc_t(0), acc_t(0)};
}

// dx = g * grad_scale + x * x_scale + shift for one value (T: a scalar or a vector). Without batch statistics (eval) the x term is
// left out rather than multiplied by zero, so an infinite x gets PyTorch's finite gradient.
template <typename T>
FUSEDBN_HOST_DEVICE FUSEDBN_INLINE T grad_input_value(T g, T x, T grad_scale, T x_scale, T shift,
                                                      bool batch_statistics) {
  return batch_statistics ? g * grad_scale + (x * x_scale + shift) : g * grad_scale;
}

}  // namespace fusedbn
