// CPU forward: training (statistics + fused normalise-and-activate) and eval (one pass).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <vector>

#include "../common/running_stats.h"
#include "../common/op_args.h"
#include "../common/tensor_checks.h"
#include "cpu_ops.h"
#include "channel_walk.h"
#include "plane_loops.h"
#include "row_loops.h"

namespace fusedbn::cpu {
namespace {

using detail::KernelLayout;

// Biased mean and variance per channel of channels_last input: fixed-size row chunks reduced
// in parallel, then merged in row order (bitwise the same for any thread count).
template <typename scalar_t, typename acc_t = acc_type<scalar_t>>
void row_statistics(const scalar_t* x, const KernelLayout& l, acc_t* mean, acc_t* var) {
  const int64_t C = l.channels, chunk = rows_per_chunk(C), chunks = at::divup(l.rows(), chunk);
  std::vector<acc_t> part_mean(chunks * C), part_m2(chunks * C);
  const Rows<scalar_t> rows{C};
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      rows.statistics(x, k * chunk, std::min(l.rows(), (k + 1) * chunk), &part_mean[k * C], &part_m2[k * C]);
    }
  });
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      WelfordData<acc_t> total;
      for (int64_t k = 0; k < chunks; ++k) {
        const int64_t count = std::min(l.rows(), (k + 1) * chunk) - k * chunk;
        total = welford_merge(total, {part_mean[k * C + c], part_m2[k * C + c], count});
      }
      mean[c] = total.mean;
      var[c] = total.m2 / acc_t(total.count);
    }
  });
}

// y = act(x * scale[c] + shift[c]) over the whole tensor: planes or rows in parallel.
template <typename scalar_t, Activation A, typename acc_t = acc_type<scalar_t>>
void apply_coefficients(const scalar_t* x, scalar_t* y, const KernelLayout& l, const acc_t* scale,
                        const acc_t* shift, acc_t param) {
  if (l.channels_last) {
    const Rows<scalar_t> rows{l.channels};
    at::parallel_for(0, l.rows(), rows_per_chunk(l.channels), [&](int64_t begin, int64_t end) {
      rows.template activate<A>(x, y, begin, end, scale, shift, param);
    });
    return;
  }
  at::parallel_for(0, l.batch * l.channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % l.channels;
      Plane<scalar_t>::template activate<A>(x + p * l.spatial, y + p * l.spatial, l.spatial, {scale[c], shift[c]},
                                            param);
    }
  });
}

template <typename scalar_t, Activation A, typename acc_t = acc_type<scalar_t>>
void train_forward(const at::Tensor& input, const at::Tensor& output, const KernelLayout& l, const acc_t* weight,
                   const acc_t* bias, acc_t eps, acc_t param, acc_t* mean, acc_t* var, acc_t* invstd) {
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  scalar_t* y = output.mutable_data_ptr<scalar_t>();
  if (l.channels_last) {
    row_statistics(x, l, mean, var);
    std::vector<acc_t> scale(l.channels), shift(l.channels);
    for (int64_t c = 0; c < l.channels; ++c) invstd[c] = acc_t(1) / std::sqrt(var[c] + eps);
    fill_forward_coefficients(mean, invstd, weight, bias, l.channels, scale.data(), shift.data());
    apply_coefficients<scalar_t, A>(x, y, l, scale.data(), shift.data(), param);
    return;
  }
  // Contiguous: statistics per plane merged per channel, then the normalisation (channel_walk.h).
  const auto offset = [&](int64_t n, int64_t c) { return (n * l.channels + c) * l.spatial; };
  std::vector<ForwardCoefficients<acc_t>> coefficients(l.channels);
  walk_channels<WelfordData<acc_t>>(
      l, sizeof(scalar_t),
      [&](int64_t n, int64_t c) { return Plane<scalar_t>::statistics(x + offset(n, c), l.spatial); },
      [](const WelfordData<acc_t>& a, const WelfordData<acc_t>& b) { return welford_merge(a, b); },
      [&](int64_t c, const WelfordData<acc_t>& s) {
        mean[c] = s.mean;
        var[c] = s.m2 / acc_t(s.count);
        invstd[c] = acc_t(1) / std::sqrt(var[c] + eps);
        coefficients[c] = forward_coefficients(mean[c], invstd[c], weight[c], bias[c]);
      },
      [&](int64_t n, int64_t c) {
        Plane<scalar_t>::template activate<A>(x + offset(n, c), y + offset(n, c), l.spatial, coefficients[c], param);
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
                                                         scale.data(), shift.data(), acc_t(a.param));
    });
  });
  return a.output;
}

}  // namespace fusedbn::cpu
