// Loops over one plane of contiguous (N, C, S) input: the S consecutive values of sample n,
// channel c, starting at (n * C + c) * S.
//
// Per-channel reductions are defined as: each plane reduced on its own (below), then the
// planes merged in sample order. forward.cpp and backward.cpp follow that order whether they
// walk a channel's planes back to back or all planes in memory order, so the bits never
// depend on the path taken or on the thread count.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <utility>

#include "../common/activation.h"
#include "../common/batch_norm_math.h"
#include "../common/welford.h"
#include "vectorized.h"

namespace fusedbn::cpu {

template <typename scalar_t>
struct Plane {
  using acc_t = acc_type<scalar_t>;
  using Vec = at::vec::Vectorized<acc_t>;
  using Blk = Block<scalar_t>;

  // A span short enough that its second pass reads from L1.
  static constexpr int64_t kSpan = 4096;

  // Sum of the span's values in acc_t: kBlockVecs vector accumulators, then the lanes and the
  // scalar tail in a fixed order. `f` maps each value (a Vec or an acc_t) before summing.
  template <typename F>
  static acc_t sum(const scalar_t* x, int64_t length, F&& f) {
    Vec partial[kBlockVecs];
    for (int k = 0; k < kBlockVecs; ++k) partial[k] = Vec(acc_t(0));
    int64_t i = 0;
    for (; i + Blk::kSize <= length; i += Blk::kSize) {
      const Blk b = Blk::load(x + i);
      for (int k = 0; k < kBlockVecs; ++k) partial[k] = partial[k] + f(b.v[k]);
    }
    for (int k = 1; k < kBlockVecs; ++k) partial[0] = partial[0] + partial[k];
    acc_t total = at::vec::vec_reduce_all([](Vec a, Vec b) { return a + b; }, partial[0]);
    for (; i < length; ++i) total += f(acc_t(x[i]));
    return total;
  }

  // Mean and m2 of the plane: each span exactly in two passes (mean, then squared deviations
  // from it, the second pass from L1), spans merged with Chan's formula. Never E[x²] - E[x]².
  static WelfordData<acc_t> statistics(const scalar_t* x, int64_t length) {
    WelfordData<acc_t> total;
    for (int64_t start = 0; start < length; start += kSpan) {
      const int64_t n = std::min(kSpan, length - start);
      const acc_t mean = sum(x + start, n, [](auto v) { return v; }) / acc_t(n);
      const acc_t m2 = sum(x + start, n, [mean](auto v) {
        const auto d = v - decltype(v)(mean);
        return d * d;
      });
      total = welford_merge(total, {mean, m2, n});
    }
    return total;
  }

  // (Σg, Σ g·(x - mean)) over the plane, g = dy·act'(x * scale + shift).
  template <Activation A>
  static std::pair<acc_t, acc_t> gradient_sums(const scalar_t* dy, const scalar_t* x, int64_t length,
                                               ForwardCoefficients<acc_t> f, acc_t mean, acc_t param) {
    const Vec scale(f.scale), shift(f.shift), vparam(param), vmean(mean);
    Vec sum_g[kBlockVecs], sum_gx[kBlockVecs];
    for (int k = 0; k < kBlockVecs; ++k) sum_g[k] = sum_gx[k] = Vec(acc_t(0));
    int64_t i = 0;
    for (; i + Blk::kSize <= length; i += Blk::kSize) {
      const Blk xb = Blk::load(x + i), gb = Blk::load(dy + i);
      for (int k = 0; k < kBlockVecs; ++k) {
        const Vec g = gb.v[k] * ActivationFn<A>::derivative(at::vec::fmadd(xb.v[k], scale, shift), vparam);
        sum_g[k] = sum_g[k] + g;
        sum_gx[k] = at::vec::fmadd(g, xb.v[k] - vmean, sum_gx[k]);
      }
    }
    for (int k = 1; k < kBlockVecs; ++k) {
      sum_g[0] = sum_g[0] + sum_g[k];
      sum_gx[0] = sum_gx[0] + sum_gx[k];
    }
    const auto add = [](Vec a, Vec b) { return a + b; };
    acc_t total_g = at::vec::vec_reduce_all(add, sum_g[0]), total_gx = at::vec::vec_reduce_all(add, sum_gx[0]);
    for (; i < length; ++i) {
      const acc_t xv = acc_t(x[i]);
      const acc_t g = acc_t(dy[i]) * ActivationFn<A>::derivative(xv * f.scale + f.shift, param);
      total_g += g;
      total_gx += g * (xv - mean);
    }
    return {total_g, total_gx};
  }

  // y = act(x * scale + shift) over the plane.
  template <Activation A>
  static void activate(const scalar_t* x, scalar_t* y, int64_t length, ForwardCoefficients<acc_t> f, acc_t param) {
    const Vec scale(f.scale), shift(f.shift), vparam(param);
    int64_t i = 0;
    for (; i + Blk::kSize <= length; i += Blk::kSize) {
      Blk b = Blk::load(x + i);
      for (int k = 0; k < kBlockVecs; ++k) b.v[k] = ActivationFn<A>::forward(at::vec::fmadd(b.v[k], scale, shift), vparam);
      b.store(y + i);
    }
    for (; i < length; ++i) y[i] = scalar_t(ActivationFn<A>::forward(acc_t(x[i]) * f.scale + f.shift, param));
  }

  // dx over the plane (grad_input_value), g = dy·act'(x * scale + shift).
  template <Activation A, bool kBatchStatistics>
  static void grad_input(const scalar_t* dy, const scalar_t* x, scalar_t* dx, int64_t length,
                         ForwardCoefficients<acc_t> f, BackwardCoefficients<acc_t> b, acc_t param) {
    const Vec scale(f.scale), shift(f.shift), vparam(param);
    const Vec grad_scale(b.grad_scale), x_scale(b.x_scale), dx_shift(b.shift);
    int64_t i = 0;
    for (; i + Blk::kSize <= length; i += Blk::kSize) {
      const Blk xb = Blk::load(x + i);
      Blk gb = Blk::load(dy + i);
      for (int k = 0; k < kBlockVecs; ++k) {
        const Vec g = gb.v[k] * ActivationFn<A>::derivative(at::vec::fmadd(xb.v[k], scale, shift), vparam);
        gb.v[k] = grad_input_value(g, xb.v[k], grad_scale, x_scale, dx_shift, kBatchStatistics);
      }
      gb.store(dx + i);
    }
    for (; i < length; ++i) {
      const acc_t xv = acc_t(x[i]);
      const acc_t g = acc_t(dy[i]) * ActivationFn<A>::derivative(xv * f.scale + f.shift, param);
      dx[i] = scalar_t(grad_input_value(g, xv, b.grad_scale, b.x_scale, b.shift, kBatchStatistics));
    }
  }
};

}  // namespace fusedbn::cpu
