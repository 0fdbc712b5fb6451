// The activations fused after BatchNorm, each with its forward and its derivative.
//
// Written once for every build: `T` is a scalar (float, double) in the CUDA and SIMT kernels
// and in scalar CPU tails, or an at::vec::Vectorized in the vectorised CPU loops. The few
// primitives that differ between a scalar and a vector live in `Elementwise<T>`; its scalar
// form is here, its vector form in csrc/cpu/vectorized_elementwise.h.
#pragma once

#include <cmath>
#include <cstdint>

#include "macros.h"

namespace fusedbn {

enum class Activation : int32_t { Identity = 0, ReLU = 1, LeakyReLU = 2, ELU = 3 };

template <typename T>
struct Elementwise {
  // `mask ? if_true : otherwise`; the mask is a bool for a scalar, a lane mask for a vector.
  template <typename Mask>
  static FUSEDBN_HOST_DEVICE FUSEDBN_INLINE T select(const Mask& mask, T if_true, T otherwise) {
    return mask ? if_true : otherwise;
  }
  static FUSEDBN_HOST_DEVICE FUSEDBN_INLINE T exp(T x) { return ::exp(x); }
  static FUSEDBN_HOST_DEVICE FUSEDBN_INLINE T expm1(T x) { return ::expm1(x); }
};

// ActivationFn<A>::forward(z, p) is act(z); ::derivative(z, p) is act'(z). Each compares z
// the way PyTorch's own kernel does, so NaN propagates and z == 0 takes the same branch.
// `p` is negative_slope for LeakyReLU, alpha for ELU, unused otherwise. Both return T.
template <Activation A>
struct ActivationFn;

template <>
struct ActivationFn<Activation::Identity> {
  template <typename T>
  static FUSEDBN_HOST_DEVICE FUSEDBN_INLINE T forward(T z, T) { return z; }
  template <typename T>
  static FUSEDBN_HOST_DEVICE FUSEDBN_INLINE T derivative(T, T) { return T(1); }
};

template <>
struct ActivationFn<Activation::ReLU> {
  template <typename T>
  static FUSEDBN_HOST_DEVICE FUSEDBN_INLINE T forward(T z, T) {
    return Elementwise<T>::select(z <= T(0), T(0), z);
  }
  template <typename T>
  static FUSEDBN_HOST_DEVICE FUSEDBN_INLINE T derivative(T z, T) {
    return Elementwise<T>::select(z <= T(0), T(0), T(1));
  }
};

template <>
struct ActivationFn<Activation::LeakyReLU> {
  template <typename T>
  static FUSEDBN_HOST_DEVICE FUSEDBN_INLINE T forward(T z, T negative_slope) {
    return Elementwise<T>::select(z > T(0), z, z * negative_slope);
  }
  template <typename T>
  static FUSEDBN_HOST_DEVICE FUSEDBN_INLINE T derivative(T z, T negative_slope) {
    return Elementwise<T>::select(z > T(0), T(1), negative_slope);
  }
};

template <>
struct ActivationFn<Activation::ELU> {
  template <typename T>
  static FUSEDBN_HOST_DEVICE FUSEDBN_INLINE T forward(T z, T alpha) {
    return Elementwise<T>::select(z <= T(0), alpha * Elementwise<T>::expm1(z), z);
  }
  // PyTorch's vectorised elu_backward tests z > 0, so NaN takes the exponential branch.
  template <typename T>
  static FUSEDBN_HOST_DEVICE FUSEDBN_INLINE T derivative(T z, T alpha) {
    return Elementwise<T>::select(z > T(0), T(1), alpha * Elementwise<T>::exp(z));
  }
};

}  // namespace fusedbn
