// Host code of the fusedbn ops for the CUDA kernels (schemas and contracts:
// csrc/op_schemas.h): checks, layout, dtype and activation dispatch, then the launch sequences
// of launchers.cuh. Written once for both builds of the kernels: `Device` supplies what
// differs, `checked_guard(input)` (the device check and guard) and `stream()`. cuda_ops.cu
// instantiates it for CUDA tensors, register_simt.cpp for the SIMT harness on CPU tensors.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>

#include "../common/op_args.h"
#include "../common/running_stats.h"
#include "../common/tensor_checks.h"
#include "launchers.cuh"

namespace fusedbn::cuda {


template <typename scalar_t>
using acc_type = at::opmath_type<scalar_t>;  // float for half/bfloat16/float, double for double

inline Shape kernel_shape(const detail::KernelLayout& l) {
  TORCH_CHECK(l.channels_last || l.channels <= int64_t(UINT32_MAX), "fusedbn: contiguous input with ", l.channels,
              " channels is not supported by the CUDA kernels (at most 2^32 - 1)");
  return {l.batch, l.channels, l.spatial, l.channels_last};
}


template <typename acc_t>
ChannelParams<acc_t> channel_params(const at::Tensor& mean, const at::Tensor& invstd, const at::Tensor& weight,
                                    const at::Tensor& bias) {
  return {mean.const_data_ptr<acc_t>(), invstd.const_data_ptr<acc_t>(), weight.const_data_ptr<acc_t>(),
          bias.const_data_ptr<acc_t>()};
}

// Scratch for the reductions' per-block partials (the caching allocator aligns it to 512 bytes).
inline at::Tensor workspace(size_t bytes, const at::Tensor& like) {
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

// Runs f(scalar_t{}, activation tag) for the args' dtype and activation: one dispatch per op.
template <typename F>
void dispatch(const at::Tensor& input, Activation act, F&& f) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "fusedbn_kernels", [&] {
    detail::dispatch_activation(act, [&](auto a) { f(scalar_t{}, a); });
  });
}

// Σg and Σg·x̂ per channel into sum_g / sum_g_xhat (accumulation dtype, (C,)).
inline void gradient_sums(const detail::BackwardArgs& a, at::Tensor& sum_g, at::Tensor& sum_g_xhat, cudaStream_t stream) {
  const Shape shape = kernel_shape(a.layout);
  dispatch(a.input, a.activation, [&](auto scalar, auto act) {
    using scalar_t = decltype(scalar);
    using acc_t = acc_type<scalar_t>;
    const at::Tensor ws = workspace(gradient_sums_workspace_bytes<scalar_t, acc_t>(shape), a.input);
    launch_gradient_sums<scalar_t, acc_t, decltype(act)::value>(
        a.grad_output.const_data_ptr<scalar_t>(), a.input.const_data_ptr<scalar_t>(), shape,
        channel_params<acc_t>(a.mean, a.invstd, a.weight, a.bias), acc_t(a.param), sum_g.mutable_data_ptr<acc_t>(),
        sum_g_xhat.mutable_data_ptr<acc_t>(), ws.mutable_data_ptr(), stream);
  });
}

// grad_input from the args: training with sum_g / sum_g_xhat, eval when they are undefined.
inline void grad_input(const detail::BackwardArgs& a, const at::Tensor& sum_g, const at::Tensor& sum_g_xhat, at::Tensor& dx,
                cudaStream_t stream) {
  dispatch(a.input, a.activation, [&](auto scalar, auto act) {
    using scalar_t = decltype(scalar);
    using acc_t = acc_type<scalar_t>;
    const acc_t* g = sum_g.defined() ? sum_g.const_data_ptr<acc_t>() : nullptr;
    const acc_t* gx = sum_g_xhat.defined() ? sum_g_xhat.const_data_ptr<acc_t>() : nullptr;
    launch_grad_input<scalar_t, acc_t, decltype(act)::value>(
        a.grad_output.const_data_ptr<scalar_t>(), a.input.const_data_ptr<scalar_t>(), dx.mutable_data_ptr<scalar_t>(),
        kernel_shape(a.layout), channel_params<acc_t>(a.mean, a.invstd, a.weight, a.bias), g, gx, acc_t(a.param),
        stream);
  });
}

template <typename Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_train(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var, double momentum,
    double eps, c10::string_view activation, double negative_slope, double alpha) {
  detail::check_input(input);
  const auto guard = Device::checked_guard(input);
  auto a = detail::prepare_train(input, weight, bias, running_mean, running_var, eps, activation, negative_slope,
                                 alpha);
  if (a.layout.count() == 0) return {a.output, a.mean, a.invstd};
  const Shape shape = kernel_shape(a.layout);
  const cudaStream_t stream = Device::stream();
  dispatch(a.input, a.activation, [&](auto scalar, auto act) {
    using scalar_t = decltype(scalar);
    using acc_t = acc_type<scalar_t>;
    const scalar_t* x = a.input.const_data_ptr<scalar_t>();
    const at::Tensor ws = workspace(statistics_workspace_bytes<scalar_t, acc_t>(shape), a.input);
    launch_batch_statistics<scalar_t, acc_t>(x, shape, acc_t(eps), a.mean.mutable_data_ptr<acc_t>(),
                                             a.var.mutable_data_ptr<acc_t>(), a.invstd.mutable_data_ptr<acc_t>(),
                                             ws.mutable_data_ptr(), stream);
    launch_forward<scalar_t, acc_t, decltype(act)::value>(
        x, a.output.mutable_data_ptr<scalar_t>(), shape, channel_params<acc_t>(a.mean, a.invstd, a.weight, a.bias),
        acc_t(a.param), stream);
  });
  detail::update_running_stats(running_mean, running_var, a.mean, a.var, a.layout.count(), momentum);
  return {a.output, a.mean, a.invstd};
}

template <typename Device>
at::Tensor batch_norm_act_forward(const at::Tensor& input, const at::Tensor& mean, const at::Tensor& invstd,
                                  const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
                                  c10::string_view activation, double negative_slope, double alpha) {
  detail::check_input(input);
  const auto guard = Device::checked_guard(input);
  auto a = detail::prepare_forward(input, mean, invstd, weight, bias, activation, negative_slope, alpha);
  if (a.input.numel() == 0) return a.output;
  const cudaStream_t stream = Device::stream();
  dispatch(a.input, a.activation, [&](auto scalar, auto act) {
    using scalar_t = decltype(scalar);
    using acc_t = acc_type<scalar_t>;
    launch_forward<scalar_t, acc_t, decltype(act)::value>(
        a.input.const_data_ptr<scalar_t>(), a.output.mutable_data_ptr<scalar_t>(), kernel_shape(a.layout),
        channel_params<acc_t>(a.mean, a.invstd, a.weight, a.bias), acc_t(a.param), stream);
  });
  return a.output;
}

template <typename Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_backward_train(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& mean, const at::Tensor& invstd,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, c10::string_view activation,
    double negative_slope, double alpha) {
  const auto guard = Device::checked_guard(input);
  const detail::BackwardArgs args =
      detail::prepare_backward(grad_output, input, mean, invstd, weight, bias, activation, negative_slope, alpha);
  at::Tensor dx = at::empty_like(args.input);
  at::Tensor sum_g = at::zeros_like(args.mean), sum_g_xhat = at::zeros_like(args.mean);
  if (args.input.numel() == 0) return {dx, sum_g, sum_g_xhat};
  const cudaStream_t stream = Device::stream();
  gradient_sums(args, sum_g, sum_g_xhat, stream);
  grad_input(args, sum_g, sum_g_xhat, dx, stream);
  return {dx, sum_g, sum_g_xhat};
}

template <typename Device>
std::tuple<at::Tensor, at::Tensor> batch_norm_act_backward_reduce(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& mean, const at::Tensor& invstd,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, c10::string_view activation,
    double negative_slope, double alpha) {
  const auto guard = Device::checked_guard(input);
  const detail::BackwardArgs args =
      detail::prepare_backward(grad_output, input, mean, invstd, weight, bias, activation, negative_slope, alpha);
  at::Tensor sum_g = at::zeros_like(args.mean), sum_g_xhat = at::zeros_like(args.mean);
  if (args.input.numel() == 0) return {sum_g, sum_g_xhat};
  gradient_sums(args, sum_g, sum_g_xhat, Device::stream());
  return {sum_g, sum_g_xhat};
}

template <typename Device>
at::Tensor batch_norm_act_backward_eval(const at::Tensor& grad_output, const at::Tensor& input,
                                        const at::Tensor& mean, const at::Tensor& invstd,
                                        const std::optional<at::Tensor>& weight,
                                        const std::optional<at::Tensor>& bias, c10::string_view activation,
                                        double negative_slope, double alpha) {
  const auto guard = Device::checked_guard(input);
  const detail::BackwardArgs args =
      detail::prepare_backward(grad_output, input, mean, invstd, weight, bias, activation, negative_slope, alpha);
  at::Tensor dx = at::empty_like(args.input);
  if (args.input.numel() == 0) return dx;
  grad_input(args, at::Tensor(), at::Tensor(), dx, Device::stream());
  return dx;
}

}  // namespace fusedbn::cuda
