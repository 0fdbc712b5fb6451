// Loops over channels_last input seen as rows of C values ((N, S, C) in memory, N*S rows).
// Vectors run across channels; per-channel coefficients are read from (C,) arrays. Reductions
// cover a fixed range of rows and are merged by the caller in row order, so results do not
// depend on how rows are spread over threads.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include "../common/activation.h"
#include "../common/batch_norm_math.h"
#include "../common/welford.h"
#include "vectorized.h"

namespace fusedbn::cpu {

template <typename scalar_t>
struct Rows {
  using acc_t = acc_type<scalar_t>;
  using Vec = at::vec::Vectorized<acc_t>;

  const int64_t channels;

  // Calls f(c, count) for each vector of channels [c, c + count).
  template <typename F>
  void for_each_vector(F&& f) const {
    for (int64_t c = 0; c < channels; c += Vec::size()) f(c, std::min<int64_t>(Vec::size(), channels - c));
  }

  // Mean and m2 of each channel over rows [begin, end) (count: end - begin), exactly, in two
  // passes over a chunk small enough to stay in cache: the sum, then the squared deviations
  // from the mean. Chunks are merged with Chan's formula by the caller. Never E[x²] - E[x]².
  void statistics(const scalar_t* x, int64_t begin, int64_t end, acc_t* mean, acc_t* m2) const {
    std::fill(mean, mean + channels, acc_t(0));
    std::fill(m2, m2 + channels, acc_t(0));
    for (int64_t r = begin; r < end; ++r) {
      for_each_vector([&](int64_t c, int64_t count) {
        (Vec::loadu(mean + c, count) + load_lanes(x + r * channels + c, count)).store(mean + c, count);
      });
    }
    const Vec inv_count(acc_t(1) / acc_t(end - begin));
    for_each_vector([&](int64_t c, int64_t count) { (Vec::loadu(mean + c, count) * inv_count).store(mean + c, count); });
    for (int64_t r = begin; r < end; ++r) {
      for_each_vector([&](int64_t c, int64_t count) {
        const Vec d = load_lanes(x + r * channels + c, count) - Vec::loadu(mean + c, count);
        at::vec::fmadd(d, d, Vec::loadu(m2 + c, count)).store(m2 + c, count);
      });
    }
  }

  // y = act(x * scale[c] + shift[c]) over rows [begin, end).
  template <Activation A>
  void activate(const scalar_t* x, scalar_t* y, int64_t begin, int64_t end, const acc_t* scale,
                const acc_t* shift, acc_t param) const {
    const Vec vparam(param);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t base = r * channels;
      for_each_vector([&](int64_t c, int64_t count) {
        const Vec z = at::vec::fmadd(load_lanes(x + base + c, count), Vec::loadu(scale + c, count),
                                     Vec::loadu(shift + c, count));
        store_lanes(y + base + c, ActivationFn<A>::forward(z, vparam), count);
      });
    }
  }

  // g = dy·act'(x * scale[c] + shift[c]) for the vector of channels [c, c + count).
  template <Activation A>
  static Vec gradient(const Vec& dy, const Vec& x, int64_t c, int64_t count, const acc_t* scale, const acc_t* shift,
                      const Vec& vparam) {
    const Vec z = at::vec::fmadd(x, Vec::loadu(scale + c, count), Vec::loadu(shift + c, count));
    return dy * ActivationFn<A>::derivative(z, vparam);
  }

  // Adds Σg and Σ g·(x - mean[c]) over rows [begin, end) to sum_g and sum_gx (C values each).
  template <Activation A>
  void gradient_sums(const scalar_t* dy, const scalar_t* x, int64_t begin, int64_t end, const acc_t* scale,
                     const acc_t* shift, const acc_t* mean, acc_t param, acc_t* sum_g, acc_t* sum_gx) const {
    const Vec vparam(param);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t base = r * channels;
      for_each_vector([&](int64_t c, int64_t count) {
        const Vec xv = load_lanes(x + base + c, count);
        const Vec g = gradient<A>(load_lanes(dy + base + c, count), xv, c, count, scale, shift, vparam);
        (Vec::loadu(sum_g + c, count) + g).store(sum_g + c, count);
        at::vec::fmadd(g, xv - Vec::loadu(mean + c, count), Vec::loadu(sum_gx + c, count)).store(sum_gx + c, count);
      });
    }
  }

  // dx over rows [begin, end) (grad_input_value), from per-channel coefficient arrays.
  template <Activation A, bool kBatchStatistics>
  void grad_input(const scalar_t* dy, const scalar_t* x, scalar_t* dx, int64_t begin, int64_t end,
                  const acc_t* scale, const acc_t* shift, const acc_t* grad_scale, const acc_t* x_scale,
                  const acc_t* dx_shift, acc_t param) const {
    const Vec vparam(param);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t base = r * channels;
      for_each_vector([&](int64_t c, int64_t count) {
        const Vec xv = load_lanes(x + base + c, count);
        const Vec g = gradient<A>(load_lanes(dy + base + c, count), xv, c, count, scale, shift, vparam);
        const Vec out = grad_input_value(g, xv, Vec::loadu(grad_scale + c, count), Vec::loadu(x_scale + c, count),
                                         Vec::loadu(dx_shift + c, count), kBatchStatistics);
        store_lanes(dx + base + c, out, count);
      });
    }
  }
};

}  // namespace fusedbn::cpu
