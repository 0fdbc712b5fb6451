// The CPU implementations of the fusedbn ops (schemas and contracts: csrc/op_schemas.h), and
// the little the forward and backward files share.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

#include "../common/batch_norm_math.h"

namespace fusedbn::cpu {

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_train(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var, double momentum,
    double eps, c10::string_view activation, double negative_slope, double alpha);

at::Tensor batch_norm_act_forward(const at::Tensor& input, const at::Tensor& mean, const at::Tensor& invstd,
                                  const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
                                  c10::string_view activation, double negative_slope, double alpha);

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_backward_train(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& mean, const at::Tensor& invstd,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, c10::string_view activation,
    double negative_slope, double alpha);

std::tuple<at::Tensor, at::Tensor> batch_norm_act_backward_reduce(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& mean, const at::Tensor& invstd,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, c10::string_view activation,
    double negative_slope, double alpha);

at::Tensor batch_norm_act_backward_eval(const at::Tensor& grad_output, const at::Tensor& input,
                                        const at::Tensor& mean, const at::Tensor& invstd,
                                        const std::optional<at::Tensor>& weight,
                                        const std::optional<at::Tensor>& bias, c10::string_view activation,
                                        double negative_slope, double alpha);

// Channels per task when per-channel work is split over threads: enough to be worth a task.
constexpr int64_t kCombineGrain = 64;

// scale/shift per channel from the statistics and the affine parameters, into acc_t arrays.
template <typename acc_t>
void fill_forward_coefficients(const acc_t* mean, const acc_t* invstd, const acc_t* weight, const acc_t* bias,
                               int64_t C, acc_t* scale, acc_t* shift) {
  for (int64_t c = 0; c < C; ++c) {
    const auto f = forward_coefficients(mean[c], invstd[c], weight[c], bias[c]);
    scale[c] = f.scale;
    shift[c] = f.shift;
  }
}

}  // namespace fusedbn::cpu
