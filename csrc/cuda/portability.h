// The thin layer the CUDA kernels are written against, so one source builds twice:
// by nvcc for the GPU, and by the host compiler against the SIMT harness (csrc/simt/) for
// the `simt` backend, which runs the very same kernels on the CPU.
//
// What a kernel may use, in both builds:
// - CUDA's own names: threadIdx, blockIdx, blockDim, gridDim, warpSize, __global__, __device__,
//   __host__, __forceinline__, __restrict__, __syncthreads, __syncwarp, __shfl_sync,
//   __shfl_down_sync, __shfl_xor_sync, atomicAdd (float, double, int, unsigned), __threadfence.
// - Shared memory only through FUSEDBN_SHARED_ARRAY(T, name, count) and
//   FUSEDBN_DYNAMIC_SHARED(T, name): the harness checks bounds and races on them. There
//   `name` is a checked handle, not a T*: read an element into a typed local (not `auto`),
//   assign whole elements, and pass arrays to helpers through a template parameter.
// - Global memory only through load / store (and load_vector / store_vector): free under
//   nvcc; under the harness they count the bytes each launch moves.
// - Launch only through launch_kernel(kernel, grid, block, shared_bytes, stream, args...).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "../common/macros.h"

namespace fusedbn::device {

// N consecutive values moved as one aligned access (128 bits when sizeof(T) * N == 16).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vector {
  T value[N];
};

}  // namespace fusedbn::device

#if defined(FUSEDBN_SIMT)
#include "../simt/simt.h"
#else
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#define FUSEDBN_SHARED_ARRAY(T, name, count) __shared__ T name[count]
#define FUSEDBN_DYNAMIC_SHARED(T, name) extern __shared__ T name[]

namespace fusedbn::device {

template <typename T>
__device__ __forceinline__ T load(const T* p) { return *p; }

template <typename T>
__device__ __forceinline__ void store(T* p, T v) { *p = v; }

template <typename T, int N>
__device__ __forceinline__ Vector<T, N> load_vector(const T* p) {
  return *reinterpret_cast<const Vector<T, N>*>(p);
}

template <typename T, int N>
__device__ __forceinline__ void store_vector(T* p, const Vector<T, N>& v) {
  *reinterpret_cast<Vector<T, N>*>(p) = v;
}

// Launches `kernel` on `stream` and checks the launch.
template <typename... KernelArgs, typename... Args>
inline void launch_kernel(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t shared_bytes,
                          cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace fusedbn::device
#endif
