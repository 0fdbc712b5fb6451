// CPU forward: training (statistics + fused normalise-and-activate) and eval (one pass).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <array>
#include <vector>

#include "../common/running_stats.h"
#include "../common/op_args.h"
#include "../common/tensor_checks.h"
#include "cpu_ops.h"
#include "channel_loops.h"
#include "plane_loops.h"
#include "row_loops.h"
#include "streaming.h"

namespace fusedbn::cpu {
namespace {

using detail::KernelLayout;

// Biased mean and variance per channel of channels_last input: fixed-size row chunks reduced
// in parallel, then combined in chunk order (bitwise the same for any thread count).
template <typename scalar_t, typename acc_t = acc_type<scalar_t>>
void row_statistics(const scalar_t* x, const KernelLayout& l, acc_t* mean, acc_t* var) {
  const ChunkLayout k(l.rows(), l.channels);
  const int64_t C = l.channels;
  std::vector<acc_t> part_mean(k.chunks * C), part_m2(k.chunks * C);
  const Rows<scalar_t> rows{C};
  at::parallel_for(0, k.chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) rows.statistics(x, k.begin(i), k.end(i), &part_mean[i * C], &part_m2[i * C]);
  });
  at::parallel_for(0, C, kCombineGrain, [&](int64_t begin, int64_t end) {
    combine_statistics(k, part_mean.data(), part_m2.data(), begin, end, mean, var);
  });
}

// y = act(x * scale[c] + shift[c]) over the whole tensor: planes or rows in parallel.
template <typename scalar_t, Activation A, typename acc_t = acc_type<scalar_t>>
void apply_coefficients(const scalar_t* x, scalar_t* y, const KernelLayout& l, const acc_t* scale,
                        const acc_t* shift, acc_t param, bool stream) {
  if (l.channels_last) {
    const Rows<scalar_t> rows{l.channels};
    at::parallel_for(0, l.rows(), rows_per_chunk(l.channels), [&](int64_t begin, int64_t end) {
      rows.template activate<A>(x, y, begin, end, scale, shift, param, stream);
      finish_streaming();
    });
    return;
  }
  at::parallel_for(0, l.batch * l.channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % l.channels;
      Plane<scalar_t>::template activate<A>(x + p * l.spatial, y + p * l.spatial, l.spatial, {scale[c], shift[c]},
                                            param, stream);
    }
    finish_streaming();
  });
}

template <typename scalar_t, Activation A, typename acc_t = acc_type<scalar_t>>
void train_forward(const at::Tensor& input, const at::Tensor& output, const KernelLayout& l, const acc_t* weight,
                   const acc_t* bias, acc_t eps, acc_t param, acc_t* mean, acc_t* var, acc_t* invstd) {
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  scalar_t* y = output.mutable_data_ptr<scalar_t>();
  const bool stream = use_streaming<scalar_t>(output);
  if (l.channels_last) {
    row_statistics(x, l, mean, var);
    std::vector<acc_t> scale(l.channels), shift(l.channels);
    for (int64_t c = 0; c < l.channels; ++c) invstd[c] = acc_t(1) / std::sqrt(var[c] + eps);
    fill_forward_coefficients(mean, invstd, weight, bias, l.channels, scale.data(), shift.data());
    apply_coefficients<scalar_t, A>(x, y, l, scale.data(), shift.data(), param, stream);
    return;
  }
  // Contiguous: a group of channels' statistics, then its normalisation while it is in cache.
  const ChannelGroups<scalar_t> groups(l, /*inputs=*/1);
  groups.for_each_group([&](int64_t first, int64_t last) {
    std::array<WelfordData<acc_t>, ChannelGroups<scalar_t>::kMaxGroup> stats;
    std::array<ForwardCoefficients<acc_t>, ChannelGroups<scalar_t>::kMaxGroup> coefficients;
    groups.statistics(x, first, last, stats.data());
    for (int64_t c = first; c < last; ++c) {
      mean[c] = stats[c - first].mean;
      var[c] = stats[c - first].m2 / acc_t(stats[c - first].count);
      invstd[c] = acc_t(1) / std::sqrt(var[c] + eps);
      coefficients[c - first] = forward_coefficients(mean[c], invstd[c], weight[c], bias[c]);
    }
    groups.template activate<A>(x, y, first, last, coefficients.data(), param, stream);
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_train(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var, double momentum,
    double eps, c10::string_view activation, double negative_slope, double alpha) {
  auto a = detail::prepare_train(input, weight, bias, running_mean, running_var, eps, activation, negative_slope,
                                 alpha);
  if (a.layout.count() == 0) return {a.output, a.mean, a.invstd};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "batch_norm_act_train_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    detail::dispatch_activation(a.activation, [&](auto act) {
      train_forward<scalar_t, decltype(act)::value>(
          a.input, a.output, a.layout, a.weight.const_data_ptr<acc_t>(), a.bias.const_data_ptr<acc_t>(), acc_t(eps),
          acc_t(a.param), a.mean.mutable_data_ptr<acc_t>(), a.var.mutable_data_ptr<acc_t>(),
          a.invstd.mutable_data_ptr<acc_t>());
    });
  });
  detail::update_running_stats(running_mean, running_var, a.mean, a.var, a.layout.count(), momentum);
  return {a.output, a.mean, a.invstd};
}

at::Tensor batch_norm_act_forward(const at::Tensor& input, const at::Tensor& mean, const at::Tensor& invstd,
                                  const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
                                  c10::string_view activation, double negative_slope, double alpha) {
  auto a = detail::prepare_forward(input, mean, invstd, weight, bias, activation, negative_slope, alpha);
  if (a.input.numel() == 0) return a.output;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "batch_norm_act_forward_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    const int64_t C = a.layout.channels;
    std::vector<acc_t> scale(C), shift(C);
    fill_forward_coefficients(a.mean.const_data_ptr<acc_t>(), a.invstd.const_data_ptr<acc_t>(),
                              a.weight.const_data_ptr<acc_t>(), a.bias.const_data_ptr<acc_t>(), C, scale.data(),
                              shift.data());
    detail::dispatch_activation(a.activation, [&](auto act) {
      apply_coefficients<scalar_t, decltype(act)::value>(a.input.const_data_ptr<scalar_t>(),
                                                         a.output.mutable_data_ptr<scalar_t>(), a.layout,
                                                         scale.data(), shift.data(), acc_t(a.param),
                                                         use_streaming<scalar_t>(a.output));
    });
  });
  return a.output;
}

}  // namespace fusedbn::cpu
