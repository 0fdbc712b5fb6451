"""Builds fusedbn._C (CPU kernels, plus the CUDA kernels where torch has CUDA and nvcc is found)
and fusedbn._simt (the CUDA kernel source compiled against the SIMT harness, run on the CPU).

Environment:
  FUSEDBN_CPU_CAPABILITY  "avx2" (x86-64 with AVX2, FMA, F16C) or "default" (portable vectors). By default
                          avx2 when the building machine has it, since the build usually runs where
                          the extension will.
  CUDA_HOME               the CUDA toolkit (default /usr/local/cuda where nvcc is there).
  TORCH_CUDA_ARCH_LIST    GPU architectures (default "8.0;9.0"; a value you set is kept).
  FUSEDBN_NO_CUDA=1       skip the CUDA kernels even where they could be built.
"""

import glob
import os
import platform
import shutil
import sysconfig

from setuptools import find_packages, setup

# torch.utils.cpp_extension reads these when imported: set the defaults first.
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"  # torch would otherwise guess /usr/local
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")

import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))


def cpu_capability():
    chosen = os.environ.get("FUSEDBN_CPU_CAPABILITY")
    if chosen:
        return chosen
    if platform.machine() in ("x86_64", "AMD64"):
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
            if " avx2" in flags and " fma" in flags and " f16c" in flags:
                return "avx2"
        except OSError:
            pass
    return "default"


def cpu_flags():
    if cpu_capability() == "avx2":
        return ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return ["-DCPU_CAPABILITY=DEFAULT"]


def sources(*patterns):
    return sorted(p for pattern in patterns for p in glob.glob(os.path.join("csrc", pattern)))


def build_cuda():
    """The CUDA kernels are built where torch has CUDA and nvcc is found (no GPU needed)."""
    if os.environ.get("FUSEDBN_NO_CUDA") == "1" or torch.version.cuda is None or CUDA_HOME is None:
        return False
    return shutil.which("nvcc") is not None or os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))


def pip_cuda_includes():
    """Headers torch includes that a bare toolkit may lack (cusparse.h, cublas): the pip
    nvidia packages next to torch carry them."""
    found = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "cu*", "include"))
    return sorted(found)


CXX_FLAGS = ["-O3", "-std=c++20", "-fvisibility=hidden"]
# -Xptxas=-v prints registers, shared memory and spills per kernel; tests/test_cuda_build.py
# reads the same figures back from the built library.
NVCC_FLAGS = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-Xptxas=-v"]

C_SOURCES = sources("register_cpu.cpp", "cpu/*.cpp")
C_ARGS = dict(
    extra_compile_args={"cxx": CXX_FLAGS + cpu_flags() + ["-fopenmp"], "nvcc": NVCC_FLAGS},
    # at::parallel_for runs serially unless the extension itself is built with OpenMP.
    extra_link_args=["-fopenmp"],
)

extensions = [
    CUDAExtension("fusedbn._C", sources=C_SOURCES + sources("cuda/*.cu"), include_dirs=pip_cuda_includes(), **C_ARGS)
    if build_cuda()
    else CppExtension("fusedbn._C", sources=C_SOURCES, **C_ARGS),
    # The CUDA kernel source run on the CPU by the SIMT harness (no OpenMP: blocks run one
    # at a time by design).
    CppExtension(
        "fusedbn._simt",
        sources=sources("register_simt.cpp"),
        extra_compile_args={"cxx": ["-O2", "-std=c++20", "-fvisibility=hidden"]},
    ),
]

setup(
    name="fusedbn",
    version="0.1.0",
    description="BatchNorm fused with its activation: hand-written CPU and CUDA kernels for PyTorch",
    packages=find_packages(include=["fusedbn", "fusedbn.*"]),
    ext_modules=extensions,
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.9",
)
