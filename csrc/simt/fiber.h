// Fibers: a stack per CUDA thread and a context switch between them and the scheduler.
//
// On x86-64 the switch is 15 instructions of assembly saving the callee-saved registers, which
// avoids the sigprocmask system call swapcontext makes on every switch. It leaves MXCSR and
// the x87 control word alone (restoring them costs more than the rest of the switch): every
// fiber runs in the caller's floating-point environment, as CUDA threads cannot change
// theirs. ucontext does the job elsewhere, with -DFUSEDBN_SIMT_UCONTEXT, and in a process
// running with a CET shadow stack, which the assembly does not maintain.
#pragma once

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

#if defined(__x86_64__) && !defined(FUSEDBN_SIMT_UCONTEXT)
#define FUSEDBN_SIMT_ASM_SWITCH 1
#else
#define FUSEDBN_SIMT_ASM_SWITCH 0
#endif

namespace simt {

// Usable stack per fiber. Kernels keep a few hundred bytes of locals; this leaves room for
// -O0 builds and printf. Pages are committed only when touched.
inline constexpr std::size_t kFiberStackBytes = 64 * 1024;

namespace detail {

// [base, base + bytes) is usable; the page below base is PROT_NONE, so an overflow faults
// at once instead of silently corrupting the neighbouring fiber's stack.
struct Stack {
  char* base = nullptr;
  std::size_t bytes = 0;
};

inline Stack allocate_stack(std::size_t bytes) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  bytes = (bytes + page - 1) / page * page;
  void* p = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    throw std::bad_alloc();
  }
  mprotect(p, page, PROT_NONE);
  return Stack{static_cast<char*>(p) + page, bytes};
}

#if FUSEDBN_SIMT_ASM_SWITCH

extern "C" {
// Saves the running context's stack pointer to *save_sp and resumes the one at load_sp.
__attribute__((visibility("hidden"))) void fusedbn_simt_switch(void** save_sp, void* load_sp);
// First "return address" of a new fiber: calls the entry function held in r12.
__attribute__((visibility("hidden"))) void fusedbn_simt_fiber_start();
}

// A COMDAT group, so that every translation unit may carry the code and the linker keeps one.
asm(R"(
  .pushsection .text.fusedbn_simt_switch,"axG",@progbits,fusedbn_simt_switch,comdat
  .weak fusedbn_simt_switch
  .hidden fusedbn_simt_switch
  .type fusedbn_simt_switch, @function
  .p2align 4
fusedbn_simt_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size fusedbn_simt_switch, .-fusedbn_simt_switch

  .weak fusedbn_simt_fiber_start
  .hidden fusedbn_simt_fiber_start
  .type fusedbn_simt_fiber_start, @function
  .p2align 4
fusedbn_simt_fiber_start:
  .cfi_startproc
  .cfi_undefined rip
  callq *%r12
  ud2
  .cfi_endproc
  .size fusedbn_simt_fiber_start, .-fusedbn_simt_fiber_start
  .popsection
)");

// rdssp reads the shadow-stack pointer; it is a no-op (leaving 0) where shadow stacks are
// off or unsupported.
inline bool shadow_stack_active() {
  std::uint64_t ssp = 0;
  asm volatile("rdsspq %0" : "+r"(ssp));
  return ssp != 0;
}
inline const bool g_use_ucontext = shadow_stack_active();

#else
inline constexpr bool g_use_ucontext = true;
#endif

struct Context {
  void* sp = nullptr;                  // the assembly switch's saved stack pointer
  std::unique_ptr<ucontext_t> uc;      // allocated only where ucontext is used
};

// Prepares `c` so that the first switch to it calls entry() on `stack`. entry must never
// return: it ends by switching away for good.
inline void context_start(Context& c, const Stack& stack, void (*entry)()) {
  if (g_use_ucontext) {
    if (!c.uc) {
      c.uc = std::make_unique<ucontext_t>();
    }
    getcontext(c.uc.get());
    c.uc->uc_stack.ss_sp = stack.base;
    c.uc->uc_stack.ss_size = stack.bytes;
    c.uc->uc_link = nullptr;
    makecontext(c.uc.get(), entry, 0);
    return;
  }
#if FUSEDBN_SIMT_ASM_SWITCH
  const auto top = (reinterpret_cast<std::uintptr_t>(stack.base) + stack.bytes) & ~std::uintptr_t(15);
  // The frame fusedbn_simt_switch pops (r15..r12, rbx, rbp, return address), placed so that
  // rsp is 16-byte aligned at the call into entry(), as the ABI requires.
  auto** sp = reinterpret_cast<void**>(top - 72);
  for (int i = 0; i < 9; ++i) {
    sp[i] = nullptr;
  }
  sp[3] = reinterpret_cast<void*>(entry);  // r12
  sp[6] = reinterpret_cast<void*>(&fusedbn_simt_fiber_start);
  c.sp = sp;
#endif
}

inline void context_switch(Context& from, Context& to) {
#if FUSEDBN_SIMT_ASM_SWITCH
  if (!g_use_ucontext) {
    fusedbn_simt_switch(&from.sp, to.sp);
    return;
  }
#endif
  if (!from.uc) {
    from.uc = std::make_unique<ucontext_t>();  // the scheduler's, saved on first use
  }
  swapcontext(from.uc.get(), to.uc.get());
}

}  // namespace detail
}  // namespace simt
