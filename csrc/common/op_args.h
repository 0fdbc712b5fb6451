// The checked, prepared arguments of the ops, shared by every backend's host code: inputs in
// the kernels' layout, per-channel values as contiguous accumulation-dtype tensors, outputs
// allocated.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <optional>

#include "tensor_checks.h"

namespace fusedbn::detail {

// The arguments every backward op shares, checked, in the kernels' layout, the per-channel
// values as contiguous accumulation-dtype tensors.
struct BackwardArgs {
  at::Tensor grad_output, input, mean, invstd, weight, bias;
  KernelLayout layout;
  Activation activation;
  double param;
};

inline BackwardArgs prepare_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& mean,
                                     const at::Tensor& invstd, const std::optional<at::Tensor>& weight,
                                     const std::optional<at::Tensor>& bias, c10::string_view activation,
                                     double negative_slope, double alpha) {
  check_input(input);
  TORCH_CHECK(grad_output.sizes() == input.sizes(), "fusedbn: grad_output has shape ", grad_output.sizes(),
              " but input has shape ", input.sizes());
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(), "fusedbn: grad_output dtype ",
              grad_output.scalar_type(), " differs from input dtype ", input.scalar_type());
  TORCH_CHECK(grad_output.device() == input.device(), "fusedbn: grad_output and input are on different devices");
  check_per_channel(mean, "mean", input);
  check_per_channel(invstd, "invstd", input);
  check_per_channel(weight, "weight", input);
  check_per_channel(bias, "bias", input);
  const auto format = kernel_memory_format(input);
  const at::Tensor x = input.contiguous(format);
  const Activation act = parse_activation(activation);
  return {grad_output.contiguous(format),
          x,
          per_channel_acc(mean, x, 0.0),
          per_channel_acc(invstd, x, 1.0),
          per_channel_acc(weight, x, 1.0),
          per_channel_acc(bias, x, 0.0),
          kernel_layout(x),
          act,
          activation_parameter(act, negative_slope, alpha)};
}

// batch_norm_act_train. `count() == 0` (an empty batch): the outputs are already final.
struct TrainArgs {
  at::Tensor input, weight, bias;
  KernelLayout layout;
  Activation activation;
  double param;
  at::Tensor output, mean, var, invstd;  // var: biased batch variance, for the running update
};

inline TrainArgs prepare_train(const at::Tensor& input, const std::optional<at::Tensor>& weight,
                               const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
                               const std::optional<at::Tensor>& running_var, double eps, c10::string_view activation,
                               double negative_slope, double alpha) {
  check_input(input);
  check_per_channel(weight, "weight", input);
  check_per_channel(bias, "bias", input);
  check_per_channel(running_mean, "running_mean", input);
  check_per_channel(running_var, "running_var", input);
  const at::Tensor x = input.contiguous(kernel_memory_format(input));
  const Activation act = parse_activation(activation);
  const auto acc_options = x.options().dtype(accumulation_type(x.scalar_type()));
  const int64_t channels = x.size(1);
  TrainArgs a{x,
              per_channel_acc(weight, x, 1.0),
              per_channel_acc(bias, x, 0.0),
              kernel_layout(x),
              act,
              activation_parameter(act, negative_slope, alpha),
              at::empty_like(x),
              at::empty({channels}, acc_options),
              at::empty({channels}, acc_options),
              at::empty({channels}, acc_options)};
  if (a.layout.count() == 0) {
    // An empty batch normalises nothing: mean 0 and var 0, as the reference backend gives.
    a.mean.zero_();
    a.var.zero_();
    a.invstd.fill_(1.0 / std::sqrt(eps));
  }
  return a;
}

// batch_norm_act_forward (given statistics).
struct ForwardArgs {
  at::Tensor input, mean, invstd, weight, bias;
  KernelLayout layout;
  Activation activation;
  double param;
  at::Tensor output;
};

inline ForwardArgs prepare_forward(const at::Tensor& input, const at::Tensor& mean, const at::Tensor& invstd,
                                   const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
                                   c10::string_view activation, double negative_slope, double alpha) {
  check_input(input);
  check_per_channel(mean, "mean", input);
  check_per_channel(invstd, "invstd", input);
  check_per_channel(weight, "weight", input);
  check_per_channel(bias, "bias", input);
  const at::Tensor x = input.contiguous(kernel_memory_format(input));
  const Activation act = parse_activation(activation);
  return {x,
          per_channel_acc(mean, x, 0.0),
          per_channel_acc(invstd, x, 1.0),
          per_channel_acc(weight, x, 1.0),
          per_channel_acc(bias, x, 0.0),
          kernel_layout(x),
          act,
          activation_parameter(act, negative_slope, alpha),
          at::empty_like(x)};
}

}  // namespace fusedbn::detail
