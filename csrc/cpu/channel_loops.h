// Contiguous (N, C, S) input a group of consecutive channels at a time: channel c is the N
// planes of S values at (n * C + c) * S, and the planes of a group of channels lie side by
// side, so a group is read as N contiguous runs. Each thread takes whole groups, reduces a
// group and then runs its elementwise pass over the same planes while they are still in L2:
// training forward and backward then read the tensor from memory once, not twice.
// A channel's result depends only on its values and never on the grouping or thread count:
// its planes are always visited in sample order, each plane the same way.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <utility>

#include "../common/tensor_checks.h"
#include "../common/welford.h"
#include "plane_loops.h"
#include "streaming.h"

namespace fusedbn::cpu {

template <typename scalar_t>
struct ChannelGroups {
  using acc_t = acc_type<scalar_t>;
  using Sum = Accumulator<scalar_t>;
  using P = Plane<scalar_t>;

  // A group's inputs should fit in L2 with room to spare for what the pass writes.
  static constexpr int64_t kGroupBytes = 256 * 1024;
  static constexpr int64_t kMaxGroup = 16;
  // A channel of at most this many values is reduced exactly in two passes over the whole
  // channel (the second from cache); a longer one in two-pass segments of about this size,
  // merged with Chan's formula.
  static constexpr int64_t kSegmentValues = 1 << 15;

  const detail::KernelLayout& l;
  const int64_t group;  // channels per group

  // `inputs`: how many input tensors a pass reads (1 forward, 2 backward).
  ChannelGroups(const detail::KernelLayout& layout, int64_t inputs)
      : l(layout), group(std::clamp<int64_t>(kGroupBytes / std::max<int64_t>(1, inputs * channel_bytes(layout)), 1,
                                             std::min(kMaxGroup, std::max<int64_t>(layout.channels, 1)))) {}

  // f(first, last) for every group [first, last) of channels, whole groups per thread.
  template <typename F>
  void for_each_group(F&& f) const {
    const int64_t groups = (l.channels + group - 1) / group;
    at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) f(g * group, std::min(l.channels, (g + 1) * group));
      finish_streaming();
    });
  }

  // Mean and m2 of each channel of [first, last) into stats[0 .. last - first).
  void statistics(const scalar_t* x, int64_t first, int64_t last, WelfordData<acc_t>* stats) const {
    const int64_t count = l.batch * l.spatial;
    if (count <= kSegmentValues) {
      std::array<Sum, kMaxGroup> sums{}, squares{};
      for_each_plane(first, last, {x}, [&](int64_t n, int64_t c) {
        P::accumulate(plane(x, n, c), l.spatial, sums[c - first], [](auto v) { return v; });
      });
      for (int64_t c = first; c < last; ++c) stats[c - first] = {sums[c - first].total() / acc_t(count), 0, count};
      for_each_plane(first, last, {}, [&](int64_t n, int64_t c) {
        const acc_t mean = stats[c - first].mean;
        P::accumulate(plane(x, n, c), l.spatial, squares[c - first], [mean](auto v) {
          const auto d = v - decltype(v)(mean);
          return d * d;
        });
      });
      for (int64_t c = first; c < last; ++c) stats[c - first].m2 = squares[c - first].total();
      return;
    }
    for (int64_t c = first; c < last; ++c) stats[c - first] = long_channel_statistics(x, c);
  }

  // (Σg, Σ g·(x - mean)) of each channel of [first, last) into sums[0 .. last - first),
  // g = dy·act'(x * scale[c] + shift[c]).
  template <Activation A>
  void gradient_sums(const scalar_t* dy, const scalar_t* x, int64_t first, int64_t last, const acc_t* scale,
                     const acc_t* shift, const acc_t* mean, acc_t param, std::pair<acc_t, acc_t>* sums) const {
    std::array<Sum, kMaxGroup> sum_g{}, sum_gx{};
    for_each_plane(first, last, {dy, x}, [&](int64_t n, int64_t c) {
      P::template gradient_sums<A>(plane(dy, n, c), plane(x, n, c), l.spatial, {scale[c], shift[c]}, mean[c], param,
                                   sum_g[c - first], sum_gx[c - first]);
    });
    for (int64_t c = first; c < last; ++c) sums[c - first] = {sum_g[c - first].total(), sum_gx[c - first].total()};
  }

  template <Activation A>
  void activate(const scalar_t* x, scalar_t* y, int64_t first, int64_t last, const ForwardCoefficients<acc_t>* f,
                acc_t param, bool stream) const {
    for_each_plane(first, last, {}, [&](int64_t n, int64_t c) {
      P::template activate<A>(plane(x, n, c), plane(y, n, c), l.spatial, f[c - first], param, stream);
    });
  }

  template <Activation A, bool kBatchStatistics>
  void grad_input(const scalar_t* dy, const scalar_t* x, scalar_t* dx, int64_t first, int64_t last,
                  const ForwardCoefficients<acc_t>* f, const BackwardCoefficients<acc_t>* b, acc_t param,
                  bool stream) const {
    for_each_plane(first, last, {}, [&](int64_t n, int64_t c) {
      P::template grad_input<A, kBatchStatistics>(plane(dy, n, c), plane(x, n, c), plane(dx, n, c), l.spatial,
                                                  f[c - first], b[c - first], param, stream);
    });
  }

 private:
  static int64_t channel_bytes(const detail::KernelLayout& l) {
    return l.batch * l.spatial * int64_t(sizeof(scalar_t));
  }

  template <typename T>
  T* plane(T* base, int64_t n, int64_t c) const {
    return base + (n * l.channels + c) * l.spatial;
  }

  // f(n, c) for every plane of channels [first, last), in memory order. A group's run of
  // planes for one sample lies C·S values after the last: too far for the hardware prefetcher
  // to guess, so the next run of each tensor in `ahead` is asked for first.
  template <typename F>
  void for_each_plane(int64_t first, int64_t last, std::initializer_list<const scalar_t*> ahead, F&& f) const {
    const int64_t run_bytes = (last - first) * l.spatial * int64_t(sizeof(scalar_t));
    for (int64_t n = 0; n < l.batch; ++n) {
      if (n + 1 < l.batch) {
        for (const scalar_t* base : ahead) prefetch(plane(base, n + 1, first), run_bytes);
      }
      for (int64_t c = first; c < last; ++c) f(n, c);
    }
  }

  // Mean and m2 of a channel too long for one segment: two-pass segments (whole planes, or
  // pieces of one long plane) merged in order with Chan's formula.
  WelfordData<acc_t> long_channel_statistics(const scalar_t* x, int64_t c) const {
    const int64_t S = l.spatial;
    WelfordData<acc_t> total;
    const int64_t planes_per_segment = std::max<int64_t>(1, kSegmentValues / S);
    const int64_t piece = std::min(S, kSegmentValues);
    for (int64_t n0 = 0; n0 < l.batch; n0 += planes_per_segment) {
      const int64_t n1 = std::min(l.batch, n0 + planes_per_segment);
      for (int64_t start = 0; start < S; start += piece) {
        const int64_t length = std::min(piece, S - start);
        const auto runs = [&](auto&& run) {
          for (int64_t n = n0; n < n1; ++n) run(plane(x, n, c) + start, length);
        };
        total = welford_merge(total, two_pass(runs, (n1 - n0) * length));
      }
    }
    return total;
  }

  // Exact mean and m2 of the values in `runs` (called as runs(run) with run(pointer, length)
  // for each contiguous run): their sum, then their squared deviations from the mean.
  template <typename Runs>
  static WelfordData<acc_t> two_pass(Runs&& runs, int64_t count) {
    Sum sum;
    runs([&](const scalar_t* p, int64_t length) { P::accumulate(p, length, sum, [](auto v) { return v; }); });
    const acc_t mean = sum.total() / acc_t(count);
    Sum squares;
    runs([&](const scalar_t* p, int64_t length) {
      P::accumulate(p, length, squares, [mean](auto v) {
        const auto d = v - decltype(v)(mean);
        return d * d;
      });
    });
    return {mean, squares.total(), count};
  }
};

}  // namespace fusedbn::cpu
