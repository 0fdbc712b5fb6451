// CPU backward: the reduction (Σg, Σg·x̂), the grad_input pass, and both fused for training.
// The math is derived in csrc/common/batch_norm_math.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <array>
#include <utility>
#include <vector>

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

using detail::BackwardArgs;

template <typename scalar_t, typename acc_t = acc_type<scalar_t>>
struct Backward {
  using scalar_type = scalar_t;
  const BackwardArgs& a;
  const KernelLayout& l = a.layout;
  const scalar_t* dy = a.grad_output.const_data_ptr<scalar_t>();
  const scalar_t* x = a.input.const_data_ptr<scalar_t>();
  const acc_t* mean = a.mean.const_data_ptr<acc_t>();
  const acc_t* invstd = a.invstd.const_data_ptr<acc_t>();
  const acc_t* weight = a.weight.const_data_ptr<acc_t>();
  const acc_t param = acc_t(a.param);
  std::vector<acc_t> scale = std::vector<acc_t>(l.channels), shift = std::vector<acc_t>(l.channels);

  explicit Backward(const BackwardArgs& args) : a(args) {
    fill_forward_coefficients(mean, invstd, weight, a.bias.const_data_ptr<acc_t>(), l.channels, scale.data(),
                              shift.data());
  }

  using GradientSums = std::pair<acc_t, acc_t>;  // (Σg, Σg·(x - mean))

  // Σg and Σg·(x - mean) per channel into sum_g / sum_gx.
  template <Activation A>
  void reduce(acc_t* sum_g, acc_t* sum_gx) const {
    if (!l.channels_last) {
      const ChannelGroups<scalar_t> groups(l, /*inputs=*/2);
      groups.for_each_group([&](int64_t first, int64_t last) {
        std::array<GradientSums, ChannelGroups<scalar_t>::kMaxGroup> sums;
        groups.template gradient_sums<A>(dy, x, first, last, scale.data(), shift.data(), mean, param, sums.data());
        for (int64_t c = first; c < last; ++c) std::tie(sum_g[c], sum_gx[c]) = sums[c - first];
      });
      return;
    }
    const int64_t C = l.channels;
    const ChunkLayout k(l.rows(), C);
    std::vector<acc_t> part_g(k.chunks * C), part_gx(k.chunks * C);
    const Rows<scalar_t> rows{C};
    at::parallel_for(0, k.chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        rows.template gradient_sums<A>(dy, x, k.begin(i), k.end(i), scale.data(), shift.data(), mean, param,
                                       &part_g[i * C], &part_gx[i * C]);
      }
    });
    at::parallel_for(0, C, kCombineGrain, [&](int64_t begin, int64_t end) {
      combine_sums(k, part_g.data(), begin, end, sum_g);
      combine_sums(k, part_gx.data(), begin, end, sum_gx);
    });
  }

  // dx = g * grad_scale[c] + x * x_scale[c] + dx_shift[c] over the whole tensor.
  template <Activation A, bool kBatchStatistics>
  void grad_input(scalar_t* dx, const std::vector<BackwardCoefficients<acc_t>>& b, bool stream) const {
    if (l.channels_last) {
      std::vector<acc_t> grad_scale(l.channels), x_scale(l.channels), dx_shift(l.channels);
      for (int64_t c = 0; c < l.channels; ++c) {  // vectors across channels want one array per coefficient
        grad_scale[c] = b[c].grad_scale;
        x_scale[c] = b[c].x_scale;
        dx_shift[c] = b[c].shift;
      }
      const Rows<scalar_t> rows{l.channels};
      at::parallel_for(0, l.rows(), rows_per_chunk(l.channels), [&](int64_t begin, int64_t end) {
        rows.template grad_input<A, kBatchStatistics>(dy, x, dx, begin, end, scale.data(), shift.data(),
                                                      grad_scale.data(), x_scale.data(), dx_shift.data(), param,
                                                      stream);
        finish_streaming();
      });
      return;
    }
    at::parallel_for(0, l.batch * l.channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t c = p % l.channels, offset = p * l.spatial;
        Plane<scalar_t>::template grad_input<A, kBatchStatistics>(dy + offset, x + offset, dx + offset, l.spatial,
                                                                  {scale[c], shift[c]}, b[c], param, stream);
      }
      finish_streaming();
    });
  }

  // The training coefficients of channel c; turns sum_gx into Σg·x̂ on the way.
  BackwardCoefficients<acc_t> train_coefficients(int64_t c, acc_t sum_g, acc_t& sum_gx) const {
    sum_gx *= invstd[c];
    return backward_coefficients_train(mean[c], invstd[c], weight[c], sum_g, sum_gx, l.count());
  }

  // Training: per channel Σg, Σg·x̂, then dx (contiguous input: a channel at a time, so the
  // dx pass reads dy and x from cache).
  template <Activation A>
  void train(scalar_t* dx, acc_t* sum_g, acc_t* sum_g_xhat, bool stream) const {
    if (l.channels_last) {
      reduce<A>(sum_g, sum_g_xhat);
      std::vector<BackwardCoefficients<acc_t>> b(l.channels);
      for (int64_t c = 0; c < l.channels; ++c) b[c] = train_coefficients(c, sum_g[c], sum_g_xhat[c]);
      grad_input<A, true>(dx, b, stream);
      return;
    }
    const ChannelGroups<scalar_t> groups(l, /*inputs=*/2);
    groups.for_each_group([&](int64_t first, int64_t last) {
      constexpr int64_t kMax = ChannelGroups<scalar_t>::kMaxGroup;
      std::array<GradientSums, kMax> sums;
      std::array<ForwardCoefficients<acc_t>, kMax> f;
      std::array<BackwardCoefficients<acc_t>, kMax> b;
      groups.template gradient_sums<A>(dy, x, first, last, scale.data(), shift.data(), mean, param, sums.data());
      for (int64_t c = first; c < last; ++c) {
        std::tie(sum_g[c], sum_g_xhat[c]) = sums[c - first];
        f[c - first] = {scale[c], shift[c]};
        b[c - first] = train_coefficients(c, sum_g[c], sum_g_xhat[c]);
      }
      groups.template grad_input<A, true>(dy, x, dx, first, last, f.data(), b.data(), param, stream);
    });
  }
};

// Runs f(Backward<scalar_t>, activation tag) for the args' dtype and activation.
template <typename F>
void dispatch(const BackwardArgs& args, F&& f) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, args.input.scalar_type(), "batch_norm_act_backward_cpu", [&] {
    const Backward<scalar_t> backward(args);
    detail::dispatch_activation(args.activation, [&](auto a) { f(backward, a); });
  });
}

template <typename acc_t>
acc_t* data(at::Tensor& t) {
  return t.mutable_data_ptr<acc_t>();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_backward_train(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& mean, const at::Tensor& invstd,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, c10::string_view activation,
    double negative_slope, double alpha) {
  const BackwardArgs args = detail::prepare_backward(grad_output, input, mean, invstd, weight, bias, activation, negative_slope, alpha);
  at::Tensor grad_input = at::empty_like(args.input);
  at::Tensor sum_g = at::zeros_like(args.mean), sum_g_xhat = at::zeros_like(args.mean);
  if (args.input.numel() == 0) return {grad_input, sum_g, sum_g_xhat};
  dispatch(args, [&](const auto& backward, auto a) {
    using scalar_t = typename std::decay_t<decltype(backward)>::scalar_type;
    using acc_t = acc_type<scalar_t>;
    backward.template train<decltype(a)::value>(grad_input.mutable_data_ptr<scalar_t>(), data<acc_t>(sum_g),
                                                data<acc_t>(sum_g_xhat), use_streaming<scalar_t>(grad_input));
  });
  return {grad_input, sum_g, sum_g_xhat};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_act_backward_reduce(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& mean, const at::Tensor& invstd,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, c10::string_view activation,
    double negative_slope, double alpha) {
  const BackwardArgs args = detail::prepare_backward(grad_output, input, mean, invstd, weight, bias, activation, negative_slope, alpha);
  at::Tensor sum_g = at::zeros_like(args.mean), sum_g_xhat = at::zeros_like(args.mean);
  if (args.input.numel() == 0) return {sum_g, sum_g_xhat};
  dispatch(args, [&](const auto& backward, auto a) {
    using acc_t = acc_type<typename std::decay_t<decltype(backward)>::scalar_type>;
    backward.template reduce<decltype(a)::value>(data<acc_t>(sum_g), data<acc_t>(sum_g_xhat));
  });
  sum_g_xhat.mul_(args.invstd);  // Σg·(x - mean) · invstd = Σg·x̂
  return {sum_g, sum_g_xhat};
}

at::Tensor batch_norm_act_backward_eval(const at::Tensor& grad_output, const at::Tensor& input,
                                        const at::Tensor& mean, const at::Tensor& invstd,
                                        const std::optional<at::Tensor>& weight,
                                        const std::optional<at::Tensor>& bias, c10::string_view activation,
                                        double negative_slope, double alpha) {
  const BackwardArgs args = detail::prepare_backward(grad_output, input, mean, invstd, weight, bias, activation, negative_slope, alpha);
  at::Tensor grad_input = at::empty_like(args.input);
  if (args.input.numel() == 0) return grad_input;
  dispatch(args, [&](const auto& backward, auto a) {
    using scalar_t = typename std::decay_t<decltype(backward)>::scalar_type;
    using acc_t = acc_type<scalar_t>;
    std::vector<BackwardCoefficients<acc_t>> b(backward.l.channels);
    for (int64_t c = 0; c < backward.l.channels; ++c) {
      b[c] = backward_coefficients_eval(backward.invstd[c], backward.weight[c]);
    }
    backward.template grad_input<decltype(a)::value, false>(grad_input.mutable_data_ptr<scalar_t>(), b,
                                                            use_streaming<scalar_t>(grad_input));
  });
  return grad_input;
}

}  // namespace fusedbn::cpu
