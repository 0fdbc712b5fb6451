// The schema of every fusedbn op, declared once. The cpu/cuda kernels register under the
// `fusedbn` namespace and the SIMT build of the CUDA kernels under `fusedbn_simt`; both call
// define_ops so the two can never disagree.
//
// Conventions for every op:
// - `input` is (N, C, *): contiguous or channels_last; `activation` is "identity", "relu",
//   "leaky_relu" or "elu"; `negative_slope` / `alpha` parametrise the last two.
// - mean, invstd, sum_g, sum_g_xhat are per-channel tensors of the accumulation dtype:
//   float64 for float64 input, float32 otherwise.
// - weight, bias, running_mean, running_var are (C,), of the input's dtype or float32.
#pragma once

#include <torch/library.h>

namespace fusedbn::detail {

inline void define_ops(torch::Library& m) {
  // Training forward: batch statistics (Welford), running-statistics update in place
  // (skipped when undefined; `momentum` is the weight of the new batch), then the fused
  // normalise-and-activate pass. Returns (output, mean, invstd).
  m.def(
      "batch_norm_act_train(Tensor input, Tensor? weight, Tensor? bias, "
      "Tensor(a!)? running_mean, Tensor(b!)? running_var, float momentum, float eps, "
      "str activation, float negative_slope, float alpha) -> (Tensor, Tensor, Tensor)");
  // Forward with given statistics (eval): one pass, y = act(x * scale + shift).
  m.def(
      "batch_norm_act_forward(Tensor input, Tensor mean, Tensor invstd, Tensor? weight, "
      "Tensor? bias, str activation, float negative_slope, float alpha) -> Tensor");
  // Training backward: Σg and Σ(g * x̂) per channel, then grad_input.
  // Returns (grad_input, sum_g, sum_g_xhat); sum_g is grad_bias and sum_g_xhat grad_weight.
  m.def(
      "batch_norm_act_backward_train(Tensor grad_output, Tensor input, Tensor mean, "
      "Tensor invstd, Tensor? weight, Tensor? bias, str activation, float negative_slope, "
      "float alpha) -> (Tensor, Tensor, Tensor)");
  // The reduction half of a backward alone: returns (sum_g, sum_g_xhat). Used for parameter
  // gradients when the input needs none, and in eval.
  m.def(
      "batch_norm_act_backward_reduce(Tensor grad_output, Tensor input, Tensor mean, "
      "Tensor invstd, Tensor? weight, Tensor? bias, str activation, float negative_slope, "
      "float alpha) -> (Tensor, Tensor)");
  // Eval backward: grad_input = weight * invstd * dy * act'(z), one elementwise pass.
  m.def(
      "batch_norm_act_backward_eval(Tensor grad_output, Tensor input, Tensor mean, "
      "Tensor invstd, Tensor? weight, Tensor? bias, str activation, float negative_slope, "
      "float alpha) -> Tensor");
}

}  // namespace fusedbn::detail
