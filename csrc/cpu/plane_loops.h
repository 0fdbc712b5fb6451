// Loops over contiguous (N, C, S) input: channel c is N planes of S values, plane n starting
// at (n * C + c) * S. The reductions handle one whole channel in a fixed order, so results do
// not depend on how channels are spread over threads; the elementwise loops take any span of
// one channel's values.
#pragma once

#include <ATen/cpu/vec/vec.h>

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

  const int64_t batch, channels, spatial;

  int64_t offset(int64_t n, int64_t c) const { return (n * channels + c) * spatial; }

  // Welford over channel c: lanes of kBlockVecs vectors for the vector body of each plane,
  // the planes' tails merged into a separate state (Chan), then everything merged in a fixed
  // order. Returns WelfordData<acc_t>.
  WelfordData<acc_t> statistics(const scalar_t* x, int64_t c) const {
    Vec mean[kBlockVecs], m2[kBlockVecs];
    for (int k = 0; k < kBlockVecs; ++k) mean[k] = m2[k] = Vec(acc_t(0));
    int64_t lane_count = 0;
    WelfordData<acc_t> tail;
    for (int64_t n = 0; n < batch; ++n) {
      const scalar_t* plane = x + offset(n, c);
      int64_t i = 0;
      for (; i + Blk::kSize <= spatial; i += Blk::kSize) {
        const Vec inv_count(acc_t(1) / acc_t(++lane_count));
        const Blk b = Blk::load(plane + i);
        for (int k = 0; k < kBlockVecs; ++k) welford_step(mean[k], m2[k], b.v[k], inv_count);
      }
      if (i < spatial) tail = welford_merge(tail, span_statistics(plane + i, spatial - i));
    }
    WelfordData<acc_t> total;
    if (lane_count > 0) {
      acc_t lane_mean[Blk::kSize], lane_m2[Blk::kSize];
      for (int k = 0; k < kBlockVecs; ++k) {
        mean[k].store(lane_mean + k * Vec::size());
        m2[k].store(lane_m2 + k * Vec::size());
      }
      for (int64_t j = 0; j < Blk::kSize; ++j) total = welford_merge(total, {lane_mean[j], lane_m2[j], lane_count});
    }
    return welford_merge(total, tail);
  }

  // Mean and m2 of a short span (a plane's tail, under one block) in two passes over values
  // still in registers or L1: one division for the span rather than one per value.
  static WelfordData<acc_t> span_statistics(const scalar_t* x, int64_t length) {
    acc_t sum = 0;
    for (int64_t i = 0; i < length; ++i) sum += acc_t(x[i]);
    const acc_t mean = sum / acc_t(length);
    acc_t m2 = 0;
    for (int64_t i = 0; i < length; ++i) m2 += (acc_t(x[i]) - mean) * (acc_t(x[i]) - mean);
    return {mean, m2, length};
  }

  // y = act(x * scale + shift) over `length` consecutive values of one channel.
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

  // (Σg, Σ g·(x - mean)) over channel c, g = dy·act'(x * scale + shift).
  template <Activation A>
  std::pair<acc_t, acc_t> gradient_sums(const scalar_t* dy, const scalar_t* x, int64_t c,
                                        ForwardCoefficients<acc_t> f, acc_t mean, acc_t param) const {
    const Vec scale(f.scale), shift(f.shift), vparam(param), vmean(mean);
    Vec sum_g[kBlockVecs], sum_gx[kBlockVecs];
    for (int k = 0; k < kBlockVecs; ++k) sum_g[k] = sum_gx[k] = Vec(acc_t(0));
    acc_t tail_g = 0, tail_gx = 0;
    for (int64_t n = 0; n < batch; ++n) {
      const int64_t base = offset(n, c);
      int64_t i = 0;
      for (; i + Blk::kSize <= spatial; i += Blk::kSize) {
        const Blk xb = Blk::load(x + base + i), gb = Blk::load(dy + base + i);
        for (int k = 0; k < kBlockVecs; ++k) {
          const Vec g = gb.v[k] * ActivationFn<A>::derivative(at::vec::fmadd(xb.v[k], scale, shift), vparam);
          sum_g[k] = sum_g[k] + g;
          sum_gx[k] = at::vec::fmadd(g, xb.v[k] - vmean, sum_gx[k]);
        }
      }
      for (; i < spatial; ++i) {
        const acc_t xv = acc_t(x[base + i]);
        const acc_t g = acc_t(dy[base + i]) * ActivationFn<A>::derivative(xv * f.scale + f.shift, param);
        tail_g += g;
        tail_gx += g * (xv - mean);
      }
    }
    for (int k = 1; k < kBlockVecs; ++k) {
      sum_g[0] = sum_g[0] + sum_g[k];
      sum_gx[0] = sum_gx[0] + sum_gx[k];
    }
    acc_t lanes_g[Vec::size()], lanes_gx[Vec::size()];
    sum_g[0].store(lanes_g);
    sum_gx[0].store(lanes_gx);
    for (int64_t j = 0; j < Vec::size(); ++j) {
      tail_g += lanes_g[j];
      tail_gx += lanes_gx[j];
    }
    return {tail_g, tail_gx};
  }

  // dx = g * b.grad_scale + x * b.x_scale + b.shift over `length` consecutive values of one
  // channel, g = dy·act'(x * scale + shift).
  template <Activation A>
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
        gb.v[k] = at::vec::fmadd(g, grad_scale, at::vec::fmadd(xb.v[k], x_scale, dx_shift));
      }
      gb.store(dx + i);
    }
    for (; i < length; ++i) {
      const acc_t xv = acc_t(x[i]);
      const acc_t g = acc_t(dy[i]) * ActivationFn<A>::derivative(xv * f.scale + f.shift, param);
      dx[i] = scalar_t(g * b.grad_scale + (xv * b.x_scale + b.shift));
    }
  }
};

}  // namespace fusedbn::cpu
