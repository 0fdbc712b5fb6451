// The SIMT harness: runs CUDA C++ kernels written against csrc/cuda/portability.h on the CPU,
// compiled by the host compiler with -DFUSEDBN_SIMT. Header-only, C++17, no torch.
//
// Model
// - Each CUDA thread of a block is a cooperative fiber with its own stack and threadIdx;
//   blocks run one at a time, in launch order or shuffled (simt::set_block_order_seed).
// - __syncthreads() is a block barrier; warp intrinsics (__shfl*_sync, __syncwarp,
//   __ballot_sync, __any_sync, __all_sync) are warp barriers that exchange values, warp size
//   32. Misuse is reported, never hung on or silently given a value (sync.h).
// - Shared memory exists only through FUSEDBN_SHARED_ARRAY / FUSEDBN_DYNAMIC_SHARED, with
//   bounds checks, 0xFF poison and a race detector in which only __syncthreads() orders
//   shared memory between threads: put one between every shared-memory write and another
//   thread's access (shared_memory.h).
// - Global memory through fusedbn::device::load/store/load_vector/store_vector (and __ldg),
//   counted per launch (simt::traffic()) two ways: bytes_read/bytes_written, every access's
//   bytes, as the load/store units issue them; sectors_read/sectors_written, the distinct
//   32-byte sectors touched, each once per launch however often: a perfect-cache model of
//   the launch's compulsory DRAM traffic, where a GPU's L1/L2 absorbs re-reads of small
//   per-channel arrays. Global atomics are not counted. Vector accesses must be aligned
//   (global_memory.h).
// - Every misuse becomes a simt::Error thrown from launch_kernel on the caller's stack (an
//   exception the kernel itself throws is rethrown as it is); the next launch starts clean.
//
// Limits: 1024 threads per block (x, y <= 1024, z <= 64); grid x < 2^31, y, z <= 65535;
// 48 KiB of shared memory per block, static plus dynamic (CUDA's limit without opt-in);
// 64 KiB of stack per CUDA thread, with a guard page (an overflow is a SIGSEGV at once).
//
// Not modelled: timing, concurrency between blocks (a block spinning on another block's
// flag never ends), warp-synchronous shared-memory tricks, __activemask, dynamic
// parallelism, infinite loops (they hang, as on a GPU).
//
// Include it through csrc/cuda/portability.h, which defines fusedbn::device::Vector first.
//
// Public API (besides CUDA's own names):
//   simt::Error                                  every detected misuse
//   simt::set_block_order_seed(uint64_t)         0 = launch order
//   simt::block_order_seed()
//   simt::traffic() -> std::vector<simt::LaunchRecord>  {kernel, grid, block, shared_bytes,
//                                                        bytes_read, bytes_written,
//                                                        sectors_read, sectors_written}
//   simt::reset_traffic()
//   fusedbn::device::launch_kernel(kernel, grid, block, shared_bytes, stream, args...)
#pragma once

#include "cuda_builtins.h"
#include "error.h"
#include "fiber.h"
#include "state.h"
#include "sync.h"
#include "shared_memory.h"
#include "atomics.h"
#include "global_memory.h"
#include "scheduler.h"
#include "launch.h"
