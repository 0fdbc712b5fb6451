// Host-side helpers shared by the CPU and CUDA entry points: argument checks, the layout the
// kernels compute in, per-channel parameter preparation and the activation dispatch.
// The Python wrapper (fusedbn/dispatch.py) gives users friendlier messages first; these
// checks keep a direct torch.ops call from ever reading out of bounds.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include <type_traits>

#include "activation.h"

namespace fusedbn::detail {

// The input viewed as (batch, channels, spatial). channels_last means the kernels read rows
// of `channels` values ((N, S, C) in memory); otherwise planes of `spatial` values (N, C, S).
struct KernelLayout {
  int64_t batch;
  int64_t channels;
  int64_t spatial;
  bool channels_last;
  int64_t rows() const { return batch * spatial; }
  int64_t count() const { return batch * spatial; }  // values per channel
};

// Channels_last where the input has it and is not also plain contiguous; contiguous otherwise.
// fusedbn/_fake.py applies the same rule to the fake outputs.
inline at::MemoryFormat kernel_memory_format(const at::Tensor& input) {
  if (!input.is_contiguous()) {
    if (input.dim() == 4 && input.is_contiguous(at::MemoryFormat::ChannelsLast)) return at::MemoryFormat::ChannelsLast;
    if (input.dim() == 5 && input.is_contiguous(at::MemoryFormat::ChannelsLast3d)) return at::MemoryFormat::ChannelsLast3d;
  }
  return at::MemoryFormat::Contiguous;
}

// `input` must already be dense in kernel_memory_format(input).
inline KernelLayout kernel_layout(const at::Tensor& input) {
  const int64_t batch = input.size(0);
  const int64_t channels = input.size(1);
  const int64_t spatial = channels == 0 || batch == 0 ? 0 : input.numel() / (batch * channels);
  // With one spatial position a contiguous (N, C, 1) tensor is also an (N, 1, C) one.
  const bool channels_last = kernel_memory_format(input) != at::MemoryFormat::Contiguous || input.dim() == 2 ||
                             input.numel() == batch * channels;
  return {batch, channels, spatial, channels_last};
}

inline at::ScalarType accumulation_type(at::ScalarType input) {
  return input == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_input(const at::Tensor& input) {
  TORCH_CHECK(input.dim() >= 2 && input.dim() <= 5, "fusedbn: expected 2D to 5D input (N, C, *), got ",
              input.dim(), "D");
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
              "fusedbn: input dtype ", dtype, " is not supported; expected float16, bfloat16, float32 or float64");
}

// A per-channel tensor: (C,) on the input's device. `name` names it in the message.
inline void check_per_channel(const at::Tensor& t, const char* name, const at::Tensor& input) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == input.size(1), "fusedbn: ", name, " must have shape (", input.size(1),
              ",), got ", t.sizes());
  TORCH_CHECK(t.device() == input.device(), "fusedbn: ", name, " is on ", t.device(), " but input is on ",
              input.device());
  TORCH_CHECK(t.is_floating_point(), "fusedbn: ", name, " must be floating point, got ", t.scalar_type());
}

inline void check_per_channel(const std::optional<at::Tensor>& t, const char* name, const at::Tensor& input) {
  if (t.has_value() && t->defined()) check_per_channel(*t, name, input);
}

// A per-channel tensor as a contiguous (C,) tensor of the accumulation dtype; `fill` when absent.
inline at::Tensor per_channel_acc(const std::optional<at::Tensor>& t, const at::Tensor& input, double fill) {
  const auto acc = accumulation_type(input.scalar_type());
  if (!t.has_value() || !t->defined()) return at::full({input.size(1)}, fill, input.options().dtype(acc));
  return t->to(acc).contiguous();
}

inline Activation parse_activation(c10::string_view name) {
  if (name == "identity") return Activation::Identity;
  if (name == "relu") return Activation::ReLU;
  if (name == "leaky_relu") return Activation::LeakyReLU;
  if (name == "elu") return Activation::ELU;
  TORCH_CHECK(false, "fusedbn: unknown activation '", std::string(name), "'; expected identity, relu, leaky_relu or elu");
}

// The one parameter an activation takes (negative_slope or alpha; 0 when unused).
inline double activation_parameter(Activation a, double negative_slope, double alpha) {
  return a == Activation::LeakyReLU ? negative_slope : a == Activation::ELU ? alpha : 0.0;
}

// Calls f(std::integral_constant<Activation, A>{}) for the runtime activation `a`, so each
// entry point picks its kernel template once.
template <typename F>
void dispatch_activation(Activation a, F&& f) {
  switch (a) {
    case Activation::Identity: return f(std::integral_constant<Activation, Activation::Identity>{});
    case Activation::ReLU: return f(std::integral_constant<Activation, Activation::ReLU>{});
    case Activation::LeakyReLU: return f(std::integral_constant<Activation, Activation::LeakyReLU>{});
    case Activation::ELU: return f(std::integral_constant<Activation, Activation::ELU>{});
  }
}

}  // namespace fusedbn::detail
