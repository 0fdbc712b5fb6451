"""The SIMT harness (csrc/simt/) on its own, without torch.

tests/simt_misuse/ holds small CUDA kernels written against csrc/cuda/portability.h: wrong ones,
which the harness must report with a clear simt::Error, and correct ones, which must give exact
results in launch order and in shuffled block orders. They are built once per session with g++
into a driver executable (run per case in a subprocess, so a hang or crash fails one test
instead of the session), in two configurations: the x86-64 context switch at C++17 -O1, and the
ucontext fallback at C++20 with hidden visibility, as the extension is built.
"""

import ctypes
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES_DIR = ROOT / "tests" / "simt_misuse"
CXX = os.environ.get("CXX", "g++")
COMMON_FLAGS = ["-Wall", "-Wextra", "-Werror", "-DFUSEDBN_SIMT", f"-I{ROOT / 'csrc'}"]
DRIVER_SOURCES = ["main.cpp", "misuse_kernels.cpp", "correct_kernels.cpp", "warp_kernels.cpp"]
BUILDS = {
    "asm": ["-std=c++17", "-O1"],
    "ucontext": ["-std=c++20", "-O1", "-fvisibility=hidden", "-DFUSEDBN_SIMT_UCONTEXT"],
}
SEEDS = [0, 1, 0xC0FFEE]  # 0 = launch order; the others shuffle the blocks
TIMEOUT_S = 120

# Each wrong kernel and phrases its message must contain.
MISUSE = {
    "misuse_missing_barrier_left": [
        "shared-memory race (read-after-write) on 'tile'[0]",
        "thread 1 reads what thread 0 wrote with no __syncthreads()",
    ],
    "misuse_missing_barrier_right": [
        "shared-memory race (write-after-read) on 'tile'[1]",
        "thread 1 overwrites what thread 0 read",
    ],
    "misuse_broadcast_reuse": ["shared-memory race", "'value'[0]", "misuse_kernels.cpp:"],
    "misuse_divergent_barrier": [
        "__syncthreads() at ",
        "misuse_kernels.cpp:",
        "is not reached by every thread of block 0",
        "thread 16 has exited while 16 of 64 threads wait there",
    ],
    "misuse_two_barriers": ["wait at different barriers", "thread 0 at __syncthreads()"],
    "misuse_early_return": ["is not reached by every thread of block 1", "thread 44 has exited"],
    "misuse_shuffle_divergent": [
        "__shfl_down_sync() at ",
        "misuse_kernels.cpp:",
        "mask 0xffffffff names lane 16 (thread 16), which has exited",
    ],
    "misuse_shuffle_sites": ["names lane 16", "which is waiting at __shfl_xor_sync() at"],
    "misuse_shuffle_source_outside_mask": [
        "lane 15 reads lane 16, which is not in the mask 0x0000ffff"
    ],
    "misuse_shuffle_partial_warp": [
        "names lane 16, which does not exist: the block has 48 threads"
    ],
    "misuse_write_write": ["shared-memory race (write-write) on 'slot'[0]"],
    "misuse_off_by_one": [
        "shared memory out of bounds: 'tile'[256]",
        "1024-byte array (256 elements)",
        "thread 255",
    ],
    "misuse_dynamic_overrun": [
        "shared memory out of bounds: 'buffer'[128]",
        "512-byte dynamic shared memory",
    ],
    "misuse_block_too_large": ["a block of 2048 threads", "limit of 1024 threads per block"],
    "misuse_block_z_too_large": ["blockDim.z = 128 exceeds its limit of 64"],
    "misuse_dynamic_shared_too_large": [
        "dynamic shared memory of 65536 bytes exceeds the 49152-byte (48 KiB) per-block limit"
    ],
    "misuse_misaligned_vector": ["load_vector at a misaligned address", "16 bytes"],
    "misuse_nested_launch": ["launch_kernel called from inside a kernel"],
    "misuse_barrier_on_host": ["__syncthreads() called outside a kernel"],
}
# Correct kernels: each checks its own results and prints OK.
CORRECT = [
    "block_reduction_shared",
    "warp_shuffle_reduction",
    "last_block_done",
    "dynamic_shared_reverse",
    "dynamic_shared_two_views",
    "vector_traffic",
    "shuffle_semantics",
    "warp_scan",
    "shared_atomics_histogram",
    "grid_3d",
    "channel_stats_speed",
    "shared_memory_idioms",
    "block_order",
    "recovers_after_errors",
]
OTHER = ["misuse_kernel_throws"]


def compile_command(output, sources, flags, link_flags=()):
    return [CXX, *flags, *COMMON_FLAGS, *map(str, sources), "-o", str(output), *link_flags]


def run_compilers(commands):
    """Runs the compiler commands two at a time; fails with the first error output."""

    def run(command):
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for result in pool.map(run, commands):
            assert result.returncode == 0, f"{' '.join(result.args)}\n{result.stderr}"


@pytest.fixture(scope="session")
def drivers(tmp_path_factory):
    """Builds the simt_cases driver in each configuration: one object per source, then link."""
    out = tmp_path_factory.mktemp("simt_build")
    compiles, links, binaries = [], [], {}
    for build, flags in BUILDS.items():
        objects = [out / f"{build}_{Path(s).stem}.o" for s in DRIVER_SOURCES]
        for source, obj in zip(DRIVER_SOURCES, objects):
            compiles.append(compile_command(obj, [CASES_DIR / source], [*flags, "-c"]))
        binaries[build] = out / f"simt_cases_{build}"
        links.append([CXX, *map(str, objects), "-o", str(binaries[build])])
    run_compilers(compiles)
    run_compilers(links)
    return binaries


def run_case(driver, name, seed=0):
    """Runs one case; returns its output lines (the last is OK / SIMT_ERROR / EXCEPTION)."""
    result = subprocess.run(
        [str(driver), name, str(seed)], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert result.returncode == 0, f"{name} exited with {result.returncode}\n{result.stderr}"
    lines = result.stdout.strip().splitlines()
    assert lines, f"{name} printed nothing\n{result.stderr}"
    return lines


@pytest.fixture(params=list(BUILDS))
def driver(request, drivers):
    return drivers[request.param]


def test_every_case_is_tested(drivers):
    listed = subprocess.run(
        [str(drivers["asm"]), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(listed) == sorted([*MISUSE, *CORRECT, *OTHER])


@pytest.mark.parametrize("seed", [0, 0x5EED])
@pytest.mark.parametrize("name", list(MISUSE))
def test_misuse_is_reported(driver, name, seed):
    last = run_case(driver, name, seed)[-1]
    assert last.startswith("SIMT_ERROR simt: "), last
    for phrase in MISUSE[name]:
        assert phrase in last, f"{phrase!r} not in {last!r}"


def test_kernel_exception_reaches_the_caller(driver):
    assert run_case(driver, "misuse_kernel_throws")[-1] == "EXCEPTION device-side failure in thread 7"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", CORRECT)
def test_correct_kernel_passes(driver, name, seed):
    assert run_case(driver, name, seed)[-1] == "OK"


def test_traffic_is_exact(driver):
    # 10003 floats read and written: 2500 float4 vectors plus a scalar tail of 3.
    lines = run_case(driver, "vector_traffic")
    assert "traffic 40012 40012" in lines


def test_block_order(drivers):
    def orders(seed):
        lines = run_case(drivers["asm"], "block_order", seed)
        assert lines[-1] == "OK"
        return [line.split()[1:] for line in lines if line.startswith("order ")]

    in_order = [str(b) for b in [0, 1, 2, 3, 4, 5, 100, 101, 102, 103, 104, 105]]
    assert orders(0) == [in_order, in_order]
    shuffled = orders(7)
    assert all(sorted(o) == sorted(in_order) for o in shuffled)
    assert shuffled[0] != in_order and shuffled[0] != shuffled[1]  # each launch reshuffles
    assert orders(7) == shuffled  # a seed replays exactly
    assert orders(8) != shuffled


def test_speed(drivers):
    # About 8 ms here for 8 blocks x 1024 threads over 100k elements; a generous bound that
    # only catches a pathological slowdown (e.g. losing the assembly context switch).
    lines = run_case(drivers["asm"], "channel_stats_speed")
    launch_ms = float(next(line.split()[1] for line in lines if line.startswith("launch_ms")))
    assert launch_ms < 500, launch_ms


def test_in_a_shared_library(tmp_path):
    """The extension's situation: a dlopen'ed library built with -fPIC and hidden visibility."""
    library = tmp_path / "libsimt_smoke.so"
    flags = ["-std=c++20", "-O3", "-fPIC", "-shared", "-fvisibility=hidden"]
    run_compilers([compile_command(library, [CASES_DIR / "shared_library.cpp"], flags)])
    smoke = ctypes.CDLL(str(library)).simt_smoke
    smoke.restype = ctypes.c_char_p
    smoke.argtypes = [ctypes.c_int, ctypes.c_int]
    assert smoke(128, 0) == b"OK"
    assert b"limit of 1024 threads per block" in smoke(2048, 0)
    assert b"is not reached by every thread" in smoke(128, 1)
    assert smoke(128, 0) == b"OK"


# Mistakes CUDA rejects at compile time must not compile on the harness either.
COMPILE_ERRORS = {
    "shuffle_of_shared_element": (
        "FUSEDBN_SHARED_ARRAY(float, s, 32); s[threadIdx.x] = 1.0f; __syncthreads();"
        "float v = __shfl_down_sync(0xffffffffu, s[threadIdx.x], 1); (void)v;",
        "read the shared-memory element into a local variable",
    ),
    "atomic_add_on_int64": (
        "long counter = 0; atomicAdd(&counter, 1L);",
        "CUDA has no atomicAdd for this type",
    ),
}


@pytest.mark.parametrize("name", list(COMPILE_ERRORS))
def test_rejected_at_compile_time(tmp_path, name):
    body, message = COMPILE_ERRORS[name]
    source = tmp_path / f"{name}.cpp"
    source.write_text(f'#include "cuda/portability.h"\n__global__ void k() {{ {body} }}\n')
    result = subprocess.run(
        [CXX, "-std=c++17", "-fsyntax-only", *COMMON_FLAGS, str(source)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode != 0
    assert message in result.stderr


SECTOR_SOURCE = r"""
#include <cstdio>
#include <cstdlib>
#include "cuda/portability.h"
using fusedbn::device::launch_kernel;
using fusedbn::device::load;
using fusedbn::device::store;

// Every thread strides over `in` `times` times (far more repeats than the sector filter
// holds, so the id vector compacts) and copies it once; thread 0 also reads 8 bytes that
// straddle two sectors of `edge`.
__global__ void reread(const float* in, float* out, int n, int times, const char* edge) {
  for (int t = 0; t < times; ++t) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const float v = load(in + i);
      if (t == 0) store(out + i, v);
    }
  }
  if (threadIdx.x == 0) (void)load(reinterpret_cast<const unsigned long long*>(edge + 28));
}

int main() {
  const int n = 100003, times = 8;
  float* in = static_cast<float*>(std::aligned_alloc(64, 400064));
  float* out = static_cast<float*>(std::aligned_alloc(64, 400064));
  char* edge = static_cast<char*>(std::aligned_alloc(64, 64));
  for (int i = 0; i < n; ++i) in[i] = float(i);
  simt::reset_traffic();
  for (int launch = 0; launch < 2; ++launch) {  // the second starts from a cleared set
    launch_kernel(reread, dim3(1), dim3(128), 0, nullptr, in, out, n, times, edge);
  }
  for (const simt::LaunchRecord& r : simt::traffic()) {
    using ull = unsigned long long;
    std::printf("%llu %llu %llu %llu\n", ull(r.bytes_read), ull(r.bytes_written), ull(r.sectors_read),
                ull(r.sectors_written));
  }
}
"""


def test_sector_count(tmp_path):
    """Distinct 32-byte sectors per launch: each counted once however often it is touched, an
    access across a sector boundary counts both, and every launch starts from zero."""
    source, binary = tmp_path / "sectors.cpp", tmp_path / "sectors"
    source.write_text(SECTOR_SOURCE)
    run_compilers([compile_command(binary, [source], ["-std=c++17", "-O1"])])
    lines = subprocess.run([str(binary)], capture_output=True, text=True, check=True,
                           timeout=TIMEOUT_S).stdout.split("\n")
    n, times = 100003, 8
    sectors = -(-n * 4 // 32)  # 12501: the last one partly used
    expected = f"{times * n * 4 + 8} {n * 4} {sectors + 2} {sectors}"
    assert lines[:2] == [expected, expected]
