// The running-statistics update shared by every device's training forward (O(C) work, so
// plain ATen ops suffice).
#pragma once

#include <ATen/ATen.h>

namespace fusedbn::detail {

// running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance
// var * count / (count - 1), as nn.BatchNorm does. `mean` and `var` are the biased batch
// statistics in the accumulation dtype; the running tensors keep their own dtype.
inline void update_running_stats(const std::optional<at::Tensor>& running_mean,
                                 const std::optional<at::Tensor>& running_var, const at::Tensor& mean,
                                 const at::Tensor& var, int64_t count, double momentum) {
  if (count == 0) return;  // an empty batch leaves them alone, as in PyTorch
  const double unbias = count > 1 ? double(count) / double(count - 1) : 1.0;
  if (running_mean.has_value() && running_mean->defined()) {
    running_mean->copy_(running_mean->to(mean.scalar_type()).mul(1.0 - momentum).add_(mean, momentum));
  }
  if (running_var.has_value() && running_var->defined()) {
    running_var->copy_(running_var->to(var.scalar_type()).mul(1.0 - momentum).add_(var, momentum * unbias));
  }
}

}  // namespace fusedbn::detail
