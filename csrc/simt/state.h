// The harness's state: the running launch and block, one record per CUDA thread, and the
// helpers every part uses to name a thread in a message and to give control back to the
// scheduler. One launch runs at a time per process (launch.h holds a mutex).
#pragma once

#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_builtins.h"
#include "error.h"
#include "fiber.h"

namespace simt {

inline constexpr unsigned kWarpSize = 32;

namespace detail {

// Where a thread waits: the intrinsic and its call site (from __builtin_FILE/LINE default
// arguments), so that two different __syncthreads() calls are told apart.
struct Site {
  const char* what = "";
  const char* file = "";
  unsigned line = 0;
};

inline bool same_site(const Site& a, const Site& b) {
  return a.line == b.line && (a.file == b.file || std::strcmp(a.file, b.file) == 0) &&
         (a.what == b.what || std::strcmp(a.what, b.what) == 0);
}

inline std::string describe(const Site& s) { return concat(s.what, " at ", s.file, ":", s.line); }

enum class Wait : std::uint8_t { kRunnable, kBarrier, kWarp, kDone };
enum class WarpOp : std::uint8_t { kSync, kIndex, kUp, kDown, kXor, kBallot };

// What a lane posts at a warp intrinsic; `arg` is srcLane, delta or laneMask.
struct WarpRequest {
  WarpOp op = WarpOp::kSync;
  std::uint32_t mask = 0;
  std::uint32_t arg = 0;
  unsigned width = kWarpSize;
  unsigned size = 0;
  std::uint64_t value = 0;
};

struct Thread {
  Context context;
  uint3 index{0, 0, 0};  // threadIdx, computed once per launch
  Wait wait = Wait::kDone;
  bool parked = false;  // the fiber waits at the top of its loop, ready for the next block
  Site site;
  WarpRequest warp;
  std::uint64_t result = 0;  // filled in by the scheduler when a barrier or warp op completes
};

struct Harness {
  std::mutex mutex;
  // The running launch.
  unsigned threads_per_block = 0;
  std::size_t dynamic_shared_bytes = 0;
  void (*body)(const void*) = nullptr;  // runs the kernel with the launch's arguments
  const void* body_arg = nullptr;
  // The running block.
  std::vector<Thread> threads;
  std::vector<Stack> stacks;
  Context scheduler;
  int current = -1;  // linear id of the running CUDA thread; -1 while the scheduler runs
  std::exception_ptr error;
  Site epoch_start;  // the barrier that began the current shared-memory epoch
  // Block order (launch.h).
  std::uint64_t block_order_seed = 0;
  std::uint64_t launches_since_seed = 0;
};

inline Harness g_harness;

inline uint3 thread_coords(unsigned linear) {
  const dim3 b = g_block_dim;
  return uint3{linear % b.x, (linear / b.x) % b.y, linear / (b.x * b.y)};
}

// "thread 5" for one-dimensional blocks, "thread (5,1,0)" otherwise; likewise for blocks.
inline std::string describe_thread(unsigned linear) {
  if (g_block_dim.y == 1 && g_block_dim.z == 1) {
    return concat("thread ", linear);
  }
  const uint3 t = thread_coords(linear);
  return concat("thread (", t.x, ",", t.y, ",", t.z, ")");
}

inline std::string describe_block() {
  const uint3 b = g_block_idx;
  if (g_grid_dim.y == 1 && g_grid_dim.z == 1) {
    return concat("block ", b.x);
  }
  return concat("block (", b.x, ",", b.y, ",", b.z, ")");
}

// Throws simt::Error naming the running block and thread: the message a kernel bug gets.
template <typename... Parts>
[[noreturn]] void fail_in_thread(const Parts&... parts) {
  const int t = g_harness.current;
  fail(parts..., " [", describe_block(), t >= 0 ? ", " + describe_thread(unsigned(t)) : "", "]");
}

// The running CUDA thread; `what` names the intrinsic that host code must not call.
inline Thread& current_thread(const char* what) {
  Harness& h = g_harness;
  if (h.current < 0) {
    fail(what, " called outside a kernel launched through launch_kernel");
  }
  return h.threads[static_cast<unsigned>(h.current)];
}

// Parks the running thread (its `wait` already says why) and resumes the scheduler.
inline void yield_to_scheduler(Thread& t) { context_switch(t.context, g_harness.scheduler); }

}  // namespace detail
}  // namespace simt
