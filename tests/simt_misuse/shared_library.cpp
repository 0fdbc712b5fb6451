// Built as a shared library with the extension's flags (-fPIC -shared -fvisibility=hidden,
// C++20, -O3) and loaded with ctypes: the header-only harness, context switch included, must
// link and run inside a dlopen'ed library as it will in fusedbn._simt.
#include <string>
#include <vector>

#include "cuda/portability.h"

namespace {

__global__ void block_sum(const float* in, float* out) {
  FUSEDBN_SHARED_ARRAY(float, sums, 128);
  sums[threadIdx.x] = fusedbn::device::load(in + blockIdx.x * blockDim.x + threadIdx.x);
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      sums[threadIdx.x] += sums[threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    fusedbn::device::store(out + blockIdx.x, float(sums[0]));
  }
}

__global__ void divergent_barrier() {
  if (threadIdx.x == 0) {
    __syncthreads();
  }
}

std::string g_result;

}  // namespace

// Runs a correct kernel with `threads` per block (128, or more to provoke an error) and
// returns "OK", "wrong result" or the error message.
extern "C" __attribute__((visibility("default"))) const char* simt_smoke(int threads, int divergent) {
  try {
    if (divergent) {
      fusedbn::device::launch_kernel(divergent_barrier, dim3(1), dim3(threads), 0, nullptr);
    }
    std::vector<float> in(4 * 128, 1.0f), out(4, 0.0f);
    fusedbn::device::launch_kernel(block_sum, dim3(4), dim3(threads), 0, nullptr, in.data(), out.data());
    g_result = out == std::vector<float>(4, 128.0f) ? "OK" : "wrong result";
  } catch (const std::exception& e) {
    g_result = e.what();
  }
  return g_result.c_str();
}
