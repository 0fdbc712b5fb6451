// The running-statistics update shared by every device's training forward. It is O(C) work,
// but it runs on every training call: on the CPU one plain loop (a chain of ATen ops costs
// more than the loop's work for every C a network uses), elsewhere ATen ops.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <optional>

namespace fusedbn::detail {

// running = (1 - momentum) * running + momentum * batch_scale * batch, computed in batch's
// dtype (the accumulation dtype); running keeps its own dtype.
inline void update_running_stat(const at::Tensor& running, const at::Tensor& batch, double momentum, double batch_scale) {
  if (!running.device().is_cpu() || !running.is_contiguous()) {
    running.copy_(running.to(batch.scalar_type()).mul(1.0 - momentum).add_(batch, momentum * batch_scale));
    return;
  }
  AT_DISPATCH_FLOATING_TYPES(batch.scalar_type(), "update_running_stat", [&] {
    using batch_t = scalar_t;
    const batch_t* b = batch.const_data_ptr<batch_t>();
    const batch_t keep = batch_t(1.0 - momentum), take = batch_t(momentum * batch_scale);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, running.scalar_type(), "update_running_stat", [&] {
      scalar_t* r = running.mutable_data_ptr<scalar_t>();
      for (int64_t c = 0; c < running.numel(); ++c) r[c] = scalar_t(batch_t(r[c]) * keep + b[c] * take);
    });
  });
}

// The update after one training batch, with the unbiased batch variance var * count / (count - 1),
// as nn.BatchNorm does. `mean` and `var` are the biased batch statistics.
inline void update_running_stats(const std::optional<at::Tensor>& running_mean,
                                 const std::optional<at::Tensor>& running_var, const at::Tensor& mean,
                                 const at::Tensor& var, int64_t count, double momentum) {
  if (count == 0) return;  // an empty batch leaves them alone, as in PyTorch
  const double unbias = count > 1 ? double(count) / double(count - 1) : 1.0;
  if (running_mean.has_value() && running_mean->defined()) {
    update_running_stat(*running_mean, mean, momentum, 1.0);
  }
  if (running_var.has_value() && running_var->defined()) {
    update_running_stat(*running_var, var, momentum, unbias);
  }
}

}  // namespace fusedbn::detail
