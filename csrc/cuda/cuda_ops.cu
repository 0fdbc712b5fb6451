// The CUDA backend: the host code of kernel_ops.h on CUDA tensors, with a device guard and
// the current stream, registered for the CUDA dispatch key. The only CUDA translation unit
// that includes torch.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "kernel_ops.h"

namespace fusedbn::cuda {
namespace {

struct CudaDevice {
  // Checks `input` is a CUDA tensor and makes its device current for allocations and launches.
  static c10::cuda::CUDAGuard checked_guard(const at::Tensor& input) {
    TORCH_CHECK(input.is_cuda(), "fusedbn: the CUDA kernels need a CUDA input, got one on ", input.device());
    return c10::cuda::CUDAGuard(input.device());
  }
  static cudaStream_t stream() { return at::cuda::getCurrentCUDAStream(); }
};

}  // namespace
}  // namespace fusedbn::cuda

TORCH_LIBRARY_IMPL(fusedbn, CUDA, m) {
  using fusedbn::cuda::CudaDevice;
  m.impl("batch_norm_act_train", &fusedbn::cuda::batch_norm_act_train<CudaDevice>);
  m.impl("batch_norm_act_forward", &fusedbn::cuda::batch_norm_act_forward<CudaDevice>);
  m.impl("batch_norm_act_backward_train", &fusedbn::cuda::batch_norm_act_backward_train<CudaDevice>);
  m.impl("batch_norm_act_backward_reduce", &fusedbn::cuda::batch_norm_act_backward_reduce<CudaDevice>);
  m.impl("batch_norm_act_backward_eval", &fusedbn::cuda::batch_norm_act_backward_eval<CudaDevice>);
}
