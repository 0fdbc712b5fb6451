// Runs one block: a fiber per CUDA thread, resumed in thread order until each blocks (at a
// barrier or warp intrinsic) or exits; then completes what can complete and repeats. When
// nothing can move, the block is either finished or deadlocked, and a deadlock becomes a
// simt::Error naming the threads involved, never a hang.
//
// A kernel exception is caught inside its fiber (unwinding never crosses stacks) and
// rethrown here on the scheduler's stack. The block's other fibers are abandoned; they get a
// fresh context at the start of the next block. A fiber that finishes parks at the top of
// its loop and is reused as is, which spares ucontext a getcontext system call per thread.
#pragma once

#include <exception>

#include "shared_memory.h"
#include "state.h"
#include "sync.h"

namespace simt::detail {

// Where every fiber starts: runs the kernel once per block, parking in between.
inline void fiber_entry() {
  Harness& h = g_harness;
  for (;;) {
    Thread& t = h.threads[static_cast<unsigned>(h.current)];
    try {
      h.body(h.body_arg);
    } catch (...) {
      h.error = std::current_exception();
    }
    t.wait = Wait::kDone;
    t.parked = true;
    yield_to_scheduler(t);
  }
}

// Makes sure `count` fibers with stacks exist; stacks are allocated once and reused.
inline void ensure_fibers(unsigned count) {
  Harness& h = g_harness;
  if (h.threads.size() < count) {
    h.threads.resize(count);
    for (Thread& t : h.threads) {
      t.parked = false;  // start every fiber afresh after a reallocation
    }
  }
  while (h.stacks.size() < count) {
    h.stacks.push_back(allocate_stack(kFiberStackBytes));
  }
}

// Runs thread `i` until it blocks or exits; rethrows what it threw.
inline void resume(unsigned i) {
  Harness& h = g_harness;
  g_thread_idx = h.threads[i].index;
  h.current = static_cast<int>(i);
  context_switch(h.scheduler, h.threads[i].context);
  h.current = -1;
  if (h.error) {
    std::exception_ptr error = h.error;
    h.error = nullptr;
    std::rethrow_exception(error);
  }
}

// Runs the block whose index is in g_block_idx, with the launch set up in g_harness.
inline void run_block() {
  Harness& h = g_harness;
  const unsigned n = h.threads_per_block;
  begin_block_shared(h.dynamic_shared_bytes);
  h.epoch_start = Site{};
  for (unsigned i = 0; i < n; ++i) {
    Thread& t = h.threads[i];
    if (!t.parked) {
      context_start(t.context, h.stacks[i], &fiber_entry);
    }
    t.parked = false;  // stays false if the block is abandoned before this fiber finishes
    t.wait = Wait::kRunnable;
  }
  for (;;) {
    for (unsigned i = 0; i < n; ++i) {
      if (h.threads[i].wait == Wait::kRunnable) {
        resume(i);
      }
    }
    if (complete_warp_ops()) {
      continue;
    }
    fail_if_warp_op_stuck();
    if (!release_barrier()) {
      return;  // every thread has exited
    }
    next_epoch();
  }
}

}  // namespace simt::detail
