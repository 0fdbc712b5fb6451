// Loops over one contiguous run of values of a single channel: a plane of contiguous
// (N, C, S) input (the S values of sample n, channel c, at (n * C + c) * S) or a piece of one.
// Reductions add into an Accumulator the caller carries from run to run, so a channel's many
// short planes cost one horizontal sum, not one each.
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <c10/macros/Macros.h>

#include <algorithm>

#include "../common/activation.h"
#include "../common/batch_norm_math.h"
#include "streaming.h"
#include "vectorized.h"

namespace fusedbn::cpu {

template <typename scalar_t>
struct Plane {
  using acc_t = acc_type<scalar_t>;
  using Vec = at::vec::Vectorized<acc_t>;
  using Blk = Block<scalar_t>;
  using Sum = Accumulator<scalar_t>;

  // Calls block(i) for each whole Block at offset i, then vector(i, count) for the vectors
  // left, the last one possibly partial (count < Vec::size()): the order every reduction
  // below adds in, on which its bits depend. Partial vectors are loaded with zeros in the
  // missing lanes.
  template <typename BlockF, typename VectorF>
  static void traverse(int64_t length, BlockF&& block, VectorF&& vector) {
    int64_t i = 0;
    for (; i + Blk::kSize <= length; i += Blk::kSize) block(i);
    for (; i < length; i += Vec::size()) vector(i, std::min<int64_t>(Vec::size(), length - i));
  }

  // v with the lanes from `count` on set to zero, so that they add nothing to a sum.
  static Vec first_lanes(const Vec& v, int64_t count) { return Vec::set(Vec(acc_t(0)), v, count); }

  // sum += Σ f(x) over the run; `f` maps a Vec.
  template <typename F>
  static void accumulate(const scalar_t* x, int64_t length, Sum& sum, F&& f) {
    traverse(
        length,
        [&](int64_t i) {
          const Blk b = Blk::load(x + i);
          for (int k = 0; k < kBlockVecs; ++k) sum.v[k] = sum.v[k] + f(b.v[k]);
        },
        [&](int64_t i, int64_t count) { sum.v[0] = sum.v[0] + first_lanes(f(load_lanes(x + i, count)), count); });
  }

  // sum_g += Σg and sum_gx += Σ g·(x - mean) over the run, g = dy·act'(x * scale + shift).
  template <Activation A>
  static void gradient_sums(const scalar_t* dy, const scalar_t* x, int64_t length, ForwardCoefficients<acc_t> f,
                            acc_t mean, acc_t param, Sum& sum_g, Sum& sum_gx) {
    const Vec scale(f.scale), shift(f.shift), vparam(param), vmean(mean);
    const auto add = [&](const Vec& dyv, const Vec& xv, int k, int64_t count = Vec::size()) {
      const Vec g = first_lanes(gradient<A>(dyv, xv, scale, shift, vparam), count);
      sum_g.v[k] = sum_g.v[k] + g;
      sum_gx.v[k] = at::vec::fmadd(g, xv - vmean, sum_gx.v[k]);
    };
    traverse(
        length,
        [&](int64_t i) {
          const Blk xb = Blk::load(x + i), gb = Blk::load(dy + i);
          for (int k = 0; k < kBlockVecs; ++k) add(gb.v[k], xb.v[k], k);
        },
        [&](int64_t i, int64_t count) { add(load_lanes(dy + i, count), load_lanes(x + i, count), 0, count); });
  }

  // out[i, i + count) = value(i, count) over the run, a Vec at a time (count < Vec::size()
  // only for the last). With `stream`, the whole cache lines inside the run are written by
  // streaming stores and the partial lines at its ends by normal ones (neighbouring runs
  // share those lines). Always inlined, like store_range: called through a pointer to
  // `value`, a loop reloads the coefficients for every vector (a store to `out` might have
  // changed them).
  template <typename ValueF>
  C10_ALWAYS_INLINE static void write(scalar_t* out, int64_t length, bool stream, ValueF&& value) {
    if constexpr (kCanStream<scalar_t>) {
      constexpr int64_t W = Vec::size(), kLine = kCacheLine / int64_t(sizeof(scalar_t));
      const int64_t head = std::min(length, values_to_line_boundary(out));
      const int64_t body_end = head + (length - head) / kLine * kLine;
      if (stream && body_end > head) {
        store_range(out, 0, head, value);
        for (int64_t i = head; i < body_end; i += kLine) {
          Vec line[kLine / W];
          for (int64_t k = 0; k < kLine / W; ++k) line[k] = value(i + k * W, W);
          for (int64_t k = 0; k < kLine / W; ++k) stream_store(out + i + k * W, line[k]);
        }
        store_range(out, body_end, length, value);
        return;
      }
    }
    store_range(out, 0, length, value);
  }

  // write()'s normal stores over [begin, end): a Block at a time, then a Vec at a time.
  template <typename ValueF>
  C10_ALWAYS_INLINE static void store_range(scalar_t* out, int64_t begin, int64_t end, ValueF& value) {
    constexpr int64_t W = Vec::size();
    int64_t i = begin;
    for (; i + Blk::kSize <= end; i += Blk::kSize) {
      Blk b;
      for (int k = 0; k < kBlockVecs; ++k) b.v[k] = value(i + k * W, W);
      b.store(out + i);
    }
    for (; i < end; i += W) {
      const int64_t count = std::min<int64_t>(W, end - i);
      store_lanes(out + i, value(i, count), count);
    }
  }

  // y = act(x * scale + shift) over the run.
  template <Activation A>
  static void activate(const scalar_t* x, scalar_t* y, int64_t length, ForwardCoefficients<acc_t> f, acc_t param,
                       bool stream) {
    const Vec scale(f.scale), shift(f.shift), vparam(param);
    write(y, length, stream, [&](int64_t i, int64_t count) {
      return ActivationFn<A>::forward(at::vec::fmadd(load_lanes(x + i, count), scale, shift), vparam);
    });
  }

  // dx over the run (grad_input_value), g = dy·act'(x * scale + shift).
  template <Activation A, bool kBatchStatistics>
  static void grad_input(const scalar_t* dy, const scalar_t* x, scalar_t* dx, int64_t length,
                         ForwardCoefficients<acc_t> f, BackwardCoefficients<acc_t> b, acc_t param, bool stream) {
    const Vec scale(f.scale), shift(f.shift), vparam(param);
    const Vec grad_scale(b.grad_scale), x_scale(b.x_scale), dx_shift(b.shift);
    write(dx, length, stream, [&](int64_t i, int64_t count) {
      const Vec xv = load_lanes(x + i, count);
      const Vec g = gradient<A>(load_lanes(dy + i, count), xv, scale, shift, vparam);
      return grad_input_value(g, xv, grad_scale, x_scale, dx_shift, kBatchStatistics);
    });
  }
};

}  // namespace fusedbn::cpu
