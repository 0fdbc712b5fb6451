"""Fixtures shared by the suite: the backends every computing test runs on, and a fixed seed.

"reference" and "cpu" always run: "cpu" is fusedbn._C, which `make test` builds, so its
absence is a failure, not a skip. "simt" is collected only where fusedbn._simt is built, and
"cuda" runs only where a GPU is.
"""

import pytest
import torch

import fusedbn
from fusedbn import dispatch

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BACKENDS = [
    "reference",
    "cpu",
    *(["simt"] if dispatch.has_extension("_simt") else []),
    pytest.param("cuda", marks=CUDA),
]
COMPILED_BACKENDS = BACKENDS[1:]

# The op namespaces: fusedbn (cpu and cuda kernels, from _C) and fusedbn_simt (from _simt).
OP_NAMESPACES = [
    pytest.param(("fusedbn", "cpu"), id="cpu"),
    *([pytest.param(("fusedbn_simt", "cpu"), id="simt")] if dispatch.has_extension("_simt") else []),
    pytest.param(("fusedbn", "cuda"), id="cuda", marks=CUDA),
]


def _selected(name):
    with fusedbn.use_backend(name):
        yield name


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The backend name, in force for the test's duration."""
    yield from _selected(request.param)


@pytest.fixture(params=COMPILED_BACKENDS)
def compiled_backend(request):
    """Like ``backend``, without "reference"."""
    yield from _selected(request.param)


def device_of(backend):
    return "cuda" if backend == "cuda" else "cpu"


@pytest.fixture
def device(request):
    """The device the test's backend computes on."""
    for name in ("backend", "compiled_backend"):
        if name in request.fixturenames:
            return device_of(request.getfixturevalue(name))
    return "cpu"


@pytest.fixture(params=OP_NAMESPACES)
def ops(request):
    """(torch.ops namespace, device) of the compiled kernels; fails when they are not built."""
    namespace, device = request.param
    module = "_simt" if namespace == "fusedbn_simt" else "_C"
    error = dispatch._SIMT_ERROR if module == "_simt" else dispatch._C_ERROR
    if error is not None:
        pytest.fail(f"fusedbn.{module} is not built ({error}); run `make build`")
    return getattr(torch.ops, namespace), device


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_make_parametrize_id(config, val, argname):
    """Test ids say "float32", not "dtype0"."""
    if isinstance(val, torch.dtype):
        return str(val).removeprefix("torch.")
    return None
