// Loops over channels_last input seen as rows of C values ((N, S, C) in memory, N*S rows).
// Vectors run across channels, a ChannelBlock of them at a time. Reductions cover a fixed
// range of rows (a chunk) with their accumulators in registers, and leave one partial result
// per chunk and channel; combine_statistics / combine_sums merge the partials in chunk order,
// so the result does not depend on how the chunks were spread over threads.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>

#include "../common/activation.h"
#include "../common/batch_norm_math.h"
#include "streaming.h"
#include "vectorized.h"

namespace fusedbn::cpu {

// kVectors consecutive vectors of channels starting at channel `first`; with kPartial the last
// one holds only `last_count` channels (the channel tail).
template <typename acc_t, int kVectors_, bool kPartial>
struct ChannelBlock {
  using Vec = at::vec::Vectorized<acc_t>;
  static constexpr int kVectors = kVectors_;
  int64_t first;
  int64_t last_count;

  int64_t count(int v) const { return kPartial && v == kVectors - 1 ? last_count : Vec::size(); }
  int64_t offset(int v) const { return first + v * Vec::size(); }
  // Vector v of the block from a row of values (or a (C,) array), as acc_t.
  template <typename T>
  Vec load(const T* row, int v) const {
    return load_lanes(row + offset(v), count(v));
  }
  template <typename T>
  void store(T* row, int v, const Vec& value) const {
    store_lanes(row + offset(v), value, count(v));
  }
  // Stores all the block's vectors to a row: streamed when asked (only for rows that
  // Rows::can_stream accepts: whole vectors on whole cache lines); otherwise two vectors at a
  // time where it can (store_pair).
  template <typename T>
  void store(T* row, const Vec (&values)[kVectors], bool stream) const {
    if constexpr (kCanStream<T>) {
      if (stream) {
        for (int v = 0; v < kVectors; ++v) stream_store(row + offset(v), values[v]);
        return;
      }
    }
    if constexpr (!kPartial && kVectors % 2 == 0) {
      for (int v = 0; v < kVectors; v += 2) store_pair(row + offset(v), values[v], values[v + 1]);
    } else {
      for (int v = 0; v < kVectors; ++v) store(row, v, values[v]);
    }
  }
  // Starts loading the block's values of a row. Only an address is formed, never a read, so a
  // row past the end of the tensor is harmless.
  template <typename T>
  void prefetch(const T* row) const {
    cpu::prefetch(row + first, ((kVectors - 1) * Vec::size() + count(kVectors - 1)) * int64_t(sizeof(T)));
  }
};

template <typename scalar_t>
struct Rows {
  using acc_t = acc_type<scalar_t>;
  using Vec = at::vec::Vectorized<acc_t>;

  // A block reads a few cache lines per row, rows C values apart: the loops ask for the
  // block's values this many rows ahead.
  static constexpr int64_t kPrefetchRows = 8;

  const int64_t channels;

  // Calls f(block) for ChannelBlocks covering channels [0, C) in order.
  template <typename F>
  void for_each_block(F&& f) const {
    constexpr int64_t W = Vec::size();
    int64_t c = 0;
    for (; c + kBlockVecs * W <= channels; c += kBlockVecs * W) f(ChannelBlock<acc_t, kBlockVecs, false>{c, W});
    for (; c + W <= channels; c += W) f(ChannelBlock<acc_t, 1, false>{c, W});
    if (c < channels) f(ChannelBlock<acc_t, 1, true>{c, channels - c});
  }

  const scalar_t* row(const scalar_t* base, int64_t r) const { return base + r * channels; }

  // Whether the rows of `out` can be written by streaming stores: each starts on a cache line
  // and is a whole number of lines, so every line is written whole by one thread.
  bool can_stream(const scalar_t* out) const {
    return kCanStream<scalar_t> && channels * int64_t(sizeof(scalar_t)) % kCacheLine == 0 &&
           values_to_line_boundary(out) == 0;
  }

  // Mean and m2 of each channel over rows [begin, end) of a chunk, exactly, in two passes per
  // block of channels (the second from L1): the sum, then the squared deviations from the
  // mean. Never E[x²] - E[x]².
  void statistics(const scalar_t* x, int64_t begin, int64_t end, acc_t* mean, acc_t* m2) const {
    const Vec inv_count(acc_t(1) / acc_t(end - begin));
    for_each_block([&](auto block) {
      constexpr int V = decltype(block)::kVectors;
      Vec sum[V], center[V], squares[V];
      for (int v = 0; v < V; ++v) sum[v] = squares[v] = Vec(acc_t(0));
      for (int64_t r = begin; r < end; ++r) {
        block.prefetch(row(x, r + kPrefetchRows));
        for (int v = 0; v < V; ++v) sum[v] = sum[v] + block.load(row(x, r), v);
      }
      for (int v = 0; v < V; ++v) center[v] = sum[v] * inv_count;
      for (int64_t r = begin; r < end; ++r) {
        for (int v = 0; v < V; ++v) {
          const Vec d = block.load(row(x, r), v) - center[v];
          squares[v] = at::vec::fmadd(d, d, squares[v]);
        }
      }
      for (int v = 0; v < V; ++v) {
        block.store(mean, v, center[v]);
        block.store(m2, v, squares[v]);
      }
    });
  }

  // Σg and Σ g·(x - mean[c]) over rows [begin, end) into sum_g and sum_gx (C values each),
  // g = dy·act'(x * scale[c] + shift[c]).
  template <Activation A>
  void gradient_sums(const scalar_t* dy, const scalar_t* x, int64_t begin, int64_t end, const acc_t* scale,
                     const acc_t* shift, const acc_t* mean, acc_t param, acc_t* sum_g, acc_t* sum_gx) const {
    const Vec vparam(param);
    for_each_block([&](auto block) {
      constexpr int V = decltype(block)::kVectors;
      Vec g_total[V], gx_total[V];
      for (int v = 0; v < V; ++v) g_total[v] = gx_total[v] = Vec(acc_t(0));
      for (int64_t r = begin; r < end; ++r) {
        block.prefetch(row(x, r + kPrefetchRows));
        block.prefetch(row(dy, r + kPrefetchRows));
        for (int v = 0; v < V; ++v) {
          const Vec xv = block.load(row(x, r), v);
          const Vec g = gradient<A>(block.load(row(dy, r), v), xv, block.load(scale, v), block.load(shift, v), vparam);
          g_total[v] = g_total[v] + g;
          gx_total[v] = at::vec::fmadd(g, xv - block.load(mean, v), gx_total[v]);
        }
      }
      for (int v = 0; v < V; ++v) {
        block.store(sum_g, v, g_total[v]);
        block.store(sum_gx, v, gx_total[v]);
      }
    });
  }

  // y = act(x * scale[c] + shift[c]) over rows [begin, end); streamed if asked and possible.
  template <Activation A>
  void activate(const scalar_t* x, scalar_t* y, int64_t begin, int64_t end, const acc_t* scale,
                const acc_t* shift, acc_t param, bool stream) const {
    const Vec vparam(param);
    const bool streamed = stream && can_stream(y);
    for (int64_t r = begin; r < end; ++r) {
      for_each_block([&](auto block) {
        constexpr int V = decltype(block)::kVectors;
        Vec out[V];
        for (int v = 0; v < V; ++v) {
          const Vec z = at::vec::fmadd(block.load(row(x, r), v), block.load(scale, v), block.load(shift, v));
          out[v] = ActivationFn<A>::forward(z, vparam);
        }
        block.store(y + r * channels, out, streamed);
      });
    }
  }

  // dx over rows [begin, end) (grad_input_value), from per-channel coefficient arrays;
  // streamed if asked and possible.
  template <Activation A, bool kBatchStatistics>
  void grad_input(const scalar_t* dy, const scalar_t* x, scalar_t* dx, int64_t begin, int64_t end,
                  const acc_t* scale, const acc_t* shift, const acc_t* grad_scale, const acc_t* x_scale,
                  const acc_t* dx_shift, acc_t param, bool stream) const {
    const Vec vparam(param);
    const bool streamed = stream && can_stream(dx);
    for (int64_t r = begin; r < end; ++r) {
      for_each_block([&](auto block) {
        constexpr int V = decltype(block)::kVectors;
        Vec out[V];
        for (int v = 0; v < V; ++v) {
          const Vec xv = block.load(row(x, r), v);
          const Vec g = gradient<A>(block.load(row(dy, r), v), xv, block.load(scale, v), block.load(shift, v), vparam);
          out[v] = grad_input_value(g, xv, block.load(grad_scale, v), block.load(x_scale, v), block.load(dx_shift, v),
                                    kBatchStatistics);
        }
        block.store(dx + r * channels, out, streamed);
      });
    }
  }
};

// Rows per reduction chunk of channels_last input. It depends on C alone, never on the thread
// count, so that reductions are bitwise reproducible. A chunk's block of channels (kBlockVecs
// vectors wide) stays in L1 between the two statistics passes; at least 16K values per chunk
// keeps the per-chunk partial results small next to the tensor when C is small.
inline int64_t rows_per_chunk(int64_t channels) {
  constexpr int64_t kChunkValues = 1 << 14, kMinRows = 128;
  return std::max<int64_t>(kMinRows, kChunkValues / std::max<int64_t>(channels, 1));
}

// Per-chunk partial results of a channels_last reduction: `chunks` rows of C values each.
struct ChunkLayout {
  int64_t rows, channels, chunk_rows, chunks;
  explicit ChunkLayout(int64_t rows_, int64_t channels_)
      : rows(rows_), channels(channels_), chunk_rows(rows_per_chunk(channels_)),
        chunks((rows_ + chunk_rows - 1) / chunk_rows) {}
  int64_t begin(int64_t k) const { return k * chunk_rows; }
  int64_t end(int64_t k) const { return std::min(rows, (k + 1) * chunk_rows); }
};

// Mean and biased variance per channel from per-chunk means and m2s, all chunks at once by
// Chan's formula: mean = Σ n_k·mean_k / n, m2 = Σ m2_k + n_k·(mean_k - mean)². In double, in
// chunk order; channels [begin, end).
template <typename acc_t>
void combine_statistics(const ChunkLayout& k, const acc_t* part_mean, const acc_t* part_m2, int64_t begin,
                        int64_t end, acc_t* mean, acc_t* var) {
  const int64_t C = k.channels;
  for (int64_t c = begin; c < end; ++c) {
    double total = 0;
    for (int64_t i = 0; i < k.chunks; ++i) total += double(k.end(i) - k.begin(i)) * double(part_mean[i * C + c]);
    const double m = total / double(k.rows);
    double m2 = 0;
    for (int64_t i = 0; i < k.chunks; ++i) {
      const double d = double(part_mean[i * C + c]) - m;
      m2 += double(part_m2[i * C + c]) + double(k.end(i) - k.begin(i)) * d * d;
    }
    mean[c] = acc_t(m);
    var[c] = acc_t(m2 / double(k.rows));
  }
}

// total[c] = Σ_k part[k][c] in chunk order, for channels [begin, end).
template <typename acc_t>
void combine_sums(const ChunkLayout& k, const acc_t* part, int64_t begin, int64_t end, acc_t* total) {
  for (int64_t c = begin; c < end; ++c) {
    double sum = 0;
    for (int64_t i = 0; i < k.chunks; ++i) sum += double(part[i * k.channels + c]);
    total[c] = acc_t(sum);
  }
}

}  // namespace fusedbn::cpu
