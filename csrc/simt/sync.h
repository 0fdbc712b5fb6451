// Block barriers and warp intrinsics: the device-side calls, which post a request and yield,
// and the scheduler-side rules that complete them or report why they never can.
//
// Rules (stricter than some GPUs tolerate, never looser than CUDA documents):
// - __syncthreads(): every thread of the block that has not exited reaches the same call
//   site; a thread that exits while others wait, or two different call sites, is an error.
// - Warp intrinsics: every lane named in the mask reaches the same call site with the same
//   mask; a named lane that has exited, waits elsewhere or does not exist is an error, and so
//   is reading a source lane outside the mask. Warp size is 32.
// - Only __syncthreads() orders shared memory (shared_memory.h); __syncwarp and shuffles
//   exchange registers but do not count as barriers for the race detector.
#pragma once

#include <cstring>
#include <type_traits>

#include "state.h"

namespace simt {

template <typename T>
class SharedRef;

namespace detail {

template <typename T>
struct is_shared_ref : std::false_type {};
template <typename T>
struct is_shared_ref<SharedRef<T>> : std::true_type {};

// Parks the calling thread at a block barrier; returns how many threads passed a nonzero
// predicate (for __syncthreads_count/and/or).
inline unsigned block_barrier(const Site& site, bool predicate) {
  Thread& t = current_thread(site.what);
  t.wait = Wait::kBarrier;
  t.site = site;
  t.warp.value = predicate ? 1 : 0;
  yield_to_scheduler(t);
  return static_cast<unsigned>(t.result);
}

// Checks what a lane can check alone: a legal width, its own bit in the mask, and that every
// lane the mask names exists in this block.
inline void check_warp_request(const Site& site, unsigned mask, int width) {
  const auto tid = static_cast<unsigned>(g_harness.current);
  const unsigned lane = tid % kWarpSize;
  if (width < 1 || width > int(kWarpSize) || (width & (width - 1)) != 0) {
    fail_in_thread(describe(site), ": width ", width, " is not a power of two in [1, 32]");
  }
  if (((mask >> lane) & 1u) == 0) {
    fail_in_thread(describe(site), ": the calling lane ", lane, " is not in its own mask ",
                   hex_mask(mask));
  }
  const unsigned lanes = g_harness.threads_per_block - (tid - lane);  // in this warp, if < 32
  if (lanes < kWarpSize && (mask >> lanes) != 0) {
    fail_in_thread(describe(site), ": mask ", hex_mask(mask), " names lane ",
                   lanes + unsigned(__builtin_ctz(mask >> lanes)),
                   ", which does not exist: the block has ",
                   g_harness.threads_per_block, " threads");
  }
}

// Posts `value` at a warp intrinsic, waits for the other lanes, returns the exchanged value.
template <typename T>
T warp_exchange(const Site& site, WarpOp op, unsigned mask, unsigned arg, int width, T value) {
  static_assert(!is_shared_ref<T>::value,
                "read the shared-memory element into a local variable before shuffling it");
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                "warp shuffles move trivially copyable values of at most 8 bytes");
  Thread& t = current_thread(site.what);
  check_warp_request(site, mask, width);
  t.warp = WarpRequest{op, mask, arg, static_cast<unsigned>(width), sizeof(T), 0};
  std::memcpy(&t.warp.value, &value, sizeof(T));
  t.wait = Wait::kWarp;
  t.site = site;
  yield_to_scheduler(t);
  T out;
  std::memcpy(&out, &t.result, sizeof(T));
  return out;
}

// Scheduler side ---------------------------------------------------------------------------

// The lane whose value `lane` receives, as PTX shfl.sync defines it for each mode and
// `width`: deltas and lane masks use their low 5 bits; a source past the end of the lane's
// segment (or before its start, for up) yields the lane's own value.
inline unsigned source_lane(const WarpRequest& r, unsigned lane) {
  const unsigned segment = lane & ~(r.width - 1);
  const unsigned position = lane & (r.width - 1);
  const unsigned b = r.arg & (kWarpSize - 1);
  switch (r.op) {
    case WarpOp::kIndex:
      return segment + (r.arg & (r.width - 1));
    case WarpOp::kUp:
      return position >= b ? lane - b : lane;
    case WarpOp::kDown:
      return position + b < r.width ? lane + b : lane;
    case WarpOp::kXor: {
      // Lanes of later segments are out of reach; those of earlier segments are not.
      const unsigned source = lane ^ b;
      return source < segment + r.width ? source : lane;
    }
    default:
      return lane;
  }
}

inline bool same_request(const Thread& a, const Thread& b) {
  return a.warp.op == b.warp.op && a.warp.mask == b.warp.mask && a.warp.width == b.warp.width &&
         a.warp.size == b.warp.size && same_site(a.site, b.site);
}

// Gives every lane named in `mask` (warp starting at thread `base`) its result.
inline void finish_warp_group(unsigned base, unsigned mask) {
  std::vector<Thread>& threads = g_harness.threads;
  std::uint64_t ballot = 0;
  for (unsigned k = 0; k < kWarpSize; ++k) {
    if (((mask >> k) & 1u) && threads[base + k].warp.value != 0) {
      ballot |= std::uint64_t(1) << k;
    }
  }
  for (unsigned k = 0; k < kWarpSize; ++k) {
    if (((mask >> k) & 1u) == 0) {
      continue;
    }
    Thread& t = threads[base + k];
    if (t.warp.op == WarpOp::kBallot) {
      t.result = ballot;
    } else if (t.warp.op != WarpOp::kSync) {
      const unsigned source = source_lane(t.warp, k);
      if (source != k && ((mask >> source) & 1u) == 0) {
        fail(describe(t.site), " in ", describe_thread(base + k), " of ", describe_block(),
             ": lane ", k, " reads lane ", source, ", which is not in the mask ", hex_mask(mask),
             " (its value is undefined on a GPU)");
      }
      t.result = threads[base + source].warp.value;
    }
    t.wait = Wait::kRunnable;
  }
}

// Completes every warp intrinsic whose named lanes have all arrived; returns whether any did.
inline bool complete_warp_ops() {
  std::vector<Thread>& threads = g_harness.threads;
  bool progressed = false;
  for (unsigned i = 0; i < g_harness.threads_per_block; ++i) {
    const Thread& t = threads[i];
    if (t.wait != Wait::kWarp) {
      continue;
    }
    const unsigned base = i - i % kWarpSize;
    bool arrived = true;
    for (unsigned k = 0; k < kWarpSize && arrived; ++k) {
      if ((t.warp.mask >> k) & 1u) {
        const Thread& other = threads[base + k];
        arrived = other.wait == Wait::kWarp && same_request(t, other);
      }
    }
    if (arrived) {
      finish_warp_group(base, t.warp.mask);
      progressed = true;
    }
  }
  return progressed;
}

// With nothing runnable and no warp op completable, a waiting warp op can never finish:
// reports the first one and the lane that keeps it waiting.
inline void fail_if_warp_op_stuck() {
  std::vector<Thread>& threads = g_harness.threads;
  for (unsigned i = 0; i < g_harness.threads_per_block; ++i) {
    const Thread& t = threads[i];
    if (t.wait != Wait::kWarp) {
      continue;
    }
    const unsigned base = i - i % kWarpSize;
    for (unsigned k = 0; k < kWarpSize; ++k) {
      const Thread& other = threads[base + k];
      if (((t.warp.mask >> k) & 1u) == 0 || (other.wait == Wait::kWarp && same_request(t, other))) {
        continue;
      }
      std::string why;
      if (other.wait == Wait::kDone) {
        why = "which has exited";
      } else if (other.wait == Wait::kWarp && same_site(t.site, other.site)) {
        why = concat("which calls it with mask ", hex_mask(other.warp.mask), " (or another width)");
      } else {
        why = "which is waiting at " + describe(other.site);
      }
      fail(describe(t.site), " in ", describe_thread(i), " of ", describe_block(), ": mask ",
           hex_mask(t.warp.mask), " names lane ", k, " (", describe_thread(base + k), "), ", why,
           ". Every lane named in the mask must reach the same warp intrinsic.");
    }
  }
}

// Releases the block barrier once every thread waits at it; returns false when every thread
// has exited instead (the block is finished); throws when the barrier can never complete.
inline bool release_barrier() {
  std::vector<Thread>& threads = g_harness.threads;
  const unsigned n = g_harness.threads_per_block;
  int first_waiting = -1;
  int first_exited = -1;
  unsigned waiting = 0;
  unsigned passed = 0;
  for (unsigned i = 0; i < n; ++i) {
    const Thread& t = threads[i];
    if (t.wait == Wait::kDone) {
      first_exited = first_exited < 0 ? int(i) : first_exited;
      continue;
    }
    ++waiting;
    passed += t.warp.value != 0;
    if (first_waiting < 0) {
      first_waiting = int(i);
    } else if (!same_site(threads[unsigned(first_waiting)].site, t.site)) {
      fail("threads of ", describe_block(), " wait at different barriers: ",
           describe_thread(unsigned(first_waiting)), " at ",
           describe(threads[unsigned(first_waiting)].site), ", ", describe_thread(i), " at ",
           describe(t.site), " (a barrier inside a divergent branch?)");
    }
  }
  if (first_waiting < 0) {
    return false;
  }
  const Site& site = threads[unsigned(first_waiting)].site;
  if (first_exited >= 0) {
    fail(describe(site), " is not reached by every thread of ", describe_block(), ": ",
         describe_thread(unsigned(first_exited)), " has exited while ", waiting, " of ", n,
         " threads wait there (a barrier inside a divergent branch?)");
  }
  g_harness.epoch_start = site;
  for (unsigned i = 0; i < n; ++i) {
    threads[i].result = passed;
    threads[i].wait = Wait::kRunnable;
  }
  return true;
}

}  // namespace detail
}  // namespace simt

// CUDA's names -----------------------------------------------------------------------------
// The trailing file/line parameters are filled in at each call site, never by the caller.

inline void __syncthreads(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
  simt::detail::block_barrier({"__syncthreads()", file, line}, false);
}
inline int __syncthreads_count(int predicate, const char* file = __builtin_FILE(),
                               unsigned line = __builtin_LINE()) {
  return int(simt::detail::block_barrier({"__syncthreads_count()", file, line}, predicate != 0));
}
inline int __syncthreads_and(int predicate, const char* file = __builtin_FILE(),
                             unsigned line = __builtin_LINE()) {
  const unsigned passed = simt::detail::block_barrier({"__syncthreads_and()", file, line}, predicate != 0);
  return passed == simt::detail::g_harness.threads_per_block;
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(),
                            unsigned line = __builtin_LINE()) {
  return simt::detail::block_barrier({"__syncthreads_or()", file, line}, predicate != 0) != 0;
}

inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       unsigned line = __builtin_LINE()) {
  simt::detail::warp_exchange<int>({"__syncwarp()", file, line}, simt::detail::WarpOp::kSync, mask,
                                   0, warpSize, 0);
}

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
                     const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
  return simt::detail::warp_exchange({"__shfl_sync()", file, line}, simt::detail::WarpOp::kIndex,
                                     mask, unsigned(src_lane), width, var);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                        const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
  return simt::detail::warp_exchange({"__shfl_up_sync()", file, line}, simt::detail::WarpOp::kUp,
                                     mask, delta, width, var);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                          const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
  return simt::detail::warp_exchange({"__shfl_down_sync()", file, line},
                                     simt::detail::WarpOp::kDown, mask, delta, width, var);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                         const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
  return simt::detail::warp_exchange({"__shfl_xor_sync()", file, line}, simt::detail::WarpOp::kXor,
                                     mask, unsigned(lane_mask), width, var);
}

inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              unsigned line = __builtin_LINE()) {
  return unsigned(simt::detail::warp_exchange<int>({"__ballot_sync()", file, line},
                                                   simt::detail::WarpOp::kBallot, mask, 0,
                                                   warpSize, predicate != 0));
}
inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      unsigned line = __builtin_LINE()) {
  return __ballot_sync(mask, predicate, file, line) != 0;
}
inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      unsigned line = __builtin_LINE()) {
  return __ballot_sync(mask, predicate, file, line) == mask;
}
