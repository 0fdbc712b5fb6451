// Kernel launch: validates the configuration against CUDA's limits, runs every block one at a
// time (in launch order, or shuffled by a seed), and records each launch's global-memory
// traffic (raw bytes and distinct sectors, global_memory.h). One launch runs at a time per
// process; launches from other host threads wait.
#pragma once

#include <cstdint>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "global_memory.h"
#include "scheduler.h"

namespace simt {

inline constexpr unsigned kMaxThreadsPerBlock = 1024;
inline constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
inline constexpr unsigned kMaxGridDim[3] = {2147483647u, 65535, 65535};

// One successful launch: its configuration, the bytes its loads and stores moved, and the
// distinct 32-byte sectors they touched (each counted once per launch: a perfect cache).
struct LaunchRecord {
  const void* kernel;
  dim3 grid;
  dim3 block;
  std::size_t shared_bytes;
  std::uint64_t bytes_read;
  std::uint64_t bytes_written;
  std::uint64_t sectors_read;
  std::uint64_t sectors_written;
};

namespace detail {
inline std::vector<LaunchRecord> g_traffic;
inline thread_local bool t_launching = false;
}  // namespace detail

// The successful launches since the last reset_traffic(), oldest first (a launch that throws
// leaves no record).
inline std::vector<LaunchRecord> traffic() {
  std::lock_guard<std::mutex> lock(detail::g_harness.mutex);
  return detail::g_traffic;
}

inline void reset_traffic() {
  std::lock_guard<std::mutex> lock(detail::g_harness.mutex);
  detail::g_traffic.clear();
}

// 0: blocks run in launch order (x fastest, then y, then z). Otherwise each launch runs its
// blocks in a pseudo-random order drawn from the seed and the number of launches since the
// seed was set, so a sequence of launches replays exactly after setting the same seed.
inline void set_block_order_seed(std::uint64_t seed) {
  std::lock_guard<std::mutex> lock(detail::g_harness.mutex);
  detail::g_harness.block_order_seed = seed;
  detail::g_harness.launches_since_seed = 0;
}

inline std::uint64_t block_order_seed() {
  std::lock_guard<std::mutex> lock(detail::g_harness.mutex);
  return detail::g_harness.block_order_seed;
}

namespace detail {

inline void validate_launch(dim3 grid, dim3 block, std::size_t shared_bytes) {
  const unsigned b[3] = {block.x, block.y, block.z};
  const unsigned g[3] = {grid.x, grid.y, grid.z};
  const char* axis[3] = {"x", "y", "z"};
  const std::uint64_t threads = std::uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || std::uint64_t(grid.x) * grid.y * grid.z == 0) {
    fail("launch_kernel: grid (", grid.x, ",", grid.y, ",", grid.z, ") and block (", block.x,
         ",", block.y, ",", block.z, ") dimensions must all be at least 1");
  }
  if (threads > kMaxThreadsPerBlock) {
    fail("launch_kernel: a block of ", threads, " threads (", block.x, "x", block.y, "x", block.z,
         ") exceeds the limit of ", kMaxThreadsPerBlock, " threads per block");
  }
  for (int i = 0; i < 3; ++i) {
    if (b[i] > kMaxBlockDim[i]) {
      fail("launch_kernel: blockDim.", axis[i], " = ", b[i], " exceeds its limit of ", kMaxBlockDim[i]);
    }
    if (g[i] > kMaxGridDim[i]) {
      fail("launch_kernel: gridDim.", axis[i], " = ", g[i], " exceeds its limit of ", kMaxGridDim[i]);
    }
  }
  if (shared_bytes > kMaxSharedBytesPerBlock) {
    fail("launch_kernel: dynamic shared memory of ", shared_bytes, " bytes exceeds the ",
         kMaxSharedBytesPerBlock, "-byte (48 KiB) per-block limit");
  }
}

inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Linear block ids in the order to run them (Fisher-Yates over the seeded generator).
inline std::vector<std::uint64_t> shuffled_blocks(std::uint64_t count, std::uint64_t seed,
                                                  std::uint64_t launch) {
  std::vector<std::uint64_t> order(count);
  for (std::uint64_t i = 0; i < count; ++i) {
    order[i] = i;
  }
  std::uint64_t state = seed ^ (launch * 0xd1b54a32d192ed03ull);
  for (std::uint64_t i = count; i > 1; --i) {
    std::swap(order[i - 1], order[splitmix64(state) % i]);
  }
  return order;
}

// Runs `body(body_arg)` as the kernel of every thread of every block; throws simt::Error
// (or what the kernel threw) from this, the caller's, stack.
inline void run_launch(const void* kernel, dim3 grid, dim3 block, std::size_t shared_bytes,
                       void (*body)(const void*), const void* body_arg) {
  if (t_launching) {
    fail("launch_kernel called from inside a kernel (dynamic parallelism is not supported)");
  }
  validate_launch(grid, block, shared_bytes);
  Harness& h = g_harness;
  std::lock_guard<std::mutex> lock(h.mutex);
  struct Reset {  // leaves the harness ready for the next launch, however this one ends
    ~Reset() {
      g_harness.current = -1;
      g_harness.body = nullptr;
      g_harness.error = nullptr;
      t_launching = false;
    }
  } reset;
  t_launching = true;
  const unsigned threads = block.x * block.y * block.z;
  ensure_fibers(threads);
  h.threads_per_block = threads;
  h.dynamic_shared_bytes = shared_bytes;
  h.body = body;
  h.body_arg = body_arg;
  g_grid_dim = grid;
  g_block_dim = block;
  for (unsigned i = 0; i < threads; ++i) {
    h.threads[i].index = thread_coords(i);
  }
  g_bytes_read = 0;
  g_bytes_written = 0;
  g_sectors_read.clear();
  g_sectors_written.clear();
  const std::uint64_t blocks = std::uint64_t(grid.x) * grid.y * grid.z;
  const std::uint64_t launch = ++h.launches_since_seed;
  std::vector<std::uint64_t> order;
  if (h.block_order_seed != 0) {
    order = shuffled_blocks(blocks, h.block_order_seed, launch);
  }
  for (std::uint64_t i = 0; i < blocks; ++i) {
    const std::uint64_t b = order.empty() ? i : order[i];
    g_block_idx = uint3{unsigned(b % grid.x), unsigned(b / grid.x % grid.y),
                        unsigned(b / (std::uint64_t(grid.x) * grid.y))};
    run_block();
  }
  g_traffic.push_back(LaunchRecord{kernel, grid, block, shared_bytes, g_bytes_read, g_bytes_written,
                                   g_sectors_read.count(), g_sectors_written.count()});
}

// Calls the kernel with the launch's arguments: one copy per CUDA thread, by value, as CUDA
// passes kernel parameters.
template <typename Kernel, typename Params>
void call_kernel(const void* launch) {
  const auto& [kernel, params] = *static_cast<const std::pair<Kernel, const Params*>*>(launch);
  std::apply(kernel, *params);
}

}  // namespace detail
}  // namespace simt

namespace fusedbn::device {

// Same shape as the nvcc version in portability.h; the stream is accepted and ignored.
template <typename... KernelArgs, typename... Args>
inline void launch_kernel(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t shared_bytes,
                          cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(KernelArgs) == sizeof...(Args),
                "launch_kernel: the number of arguments does not match the kernel's parameters");
  (void)stream;
  using Kernel = void (*)(KernelArgs...);
  using Params = std::tuple<std::decay_t<KernelArgs>...>;
  const Params params{std::forward<Args>(args)...};
  const std::pair<Kernel, const Params*> launch{kernel, &params};
  simt::detail::run_launch(reinterpret_cast<const void*>(kernel), grid, block, shared_bytes,
                           &simt::detail::call_kernel<Kernel, Params>, &launch);
}

}  // namespace fusedbn::device
