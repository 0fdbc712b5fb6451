"""The GPU code in the built fusedbn._C: both architectures present, no kernel spilling.

Needs no GPU, only the CUDA toolchain the build used: where torch has no CUDA or nvcc is
missing, setup.py builds the CPU kernels alone and there is no GPU code to check.
"""

import os
import shutil
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import kernel_resources  # noqa: E402

NO_TOOLCHAIN = torch.version.cuda is None or not (
    shutil.which("nvcc") or os.path.exists(os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")))
pytestmark = pytest.mark.skipif(NO_TOOLCHAIN or os.environ.get("FUSEDBN_NO_CUDA") == "1",
                                reason="no CUDA toolchain: the extension holds no GPU code")
KERNELS = {"plane_statistics_kernel", "row_statistics_kernel", "finalize_statistics_kernel",
           "plane_gradient_sums_kernel", "row_gradient_sums_kernel", "finalize_gradient_sums_kernel",
           "plane_elementwise_kernel", "row_elementwise_kernel"}


@pytest.fixture(scope="module")
def usage():
    assert kernel_resources.cuobjdump() is not None, "cuobjdump missing: requirements.txt installs it"
    return kernel_resources.resource_usage(kernel_resources.extension_path())


def test_library_holds_code_for_the_requested_architectures():
    requested = os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0").replace(" ", ";").split(";")
    expected = {f"sm_{arch.replace('.', '').removesuffix('+PTX')}" for arch in requested if arch}
    assert expected <= set(kernel_resources.cubin_architectures(kernel_resources.extension_path()))


def test_every_kernel_is_built_for_every_architecture(usage):
    for arch in {row[0] for row in usage}:
        assert {row[1] for row in usage if row[0] == arch} == KERNELS, arch


def test_no_kernel_spills_registers_or_uses_a_stack(usage):
    spilling = [row for row in usage if row[3] or row[5]]  # STACK, LOCAL bytes
    assert not spilling, f"kernels with stack or local (spill) memory: {spilling}"


def test_kernels_fit_their_launch_bounds(usage):
    # __launch_bounds__(256, 2): 2 blocks of 256 threads per SM leave 128 registers a thread.
    assert max(row[2] for row in usage) <= 128
