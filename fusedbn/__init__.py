"""fusedbn: BatchNorm fused with its activation, forward and backward, in hand-written kernels."""

from . import dispatch, functional, reference, _fake
from .convert import convert
from .dispatch import get_backend, set_backend, use_backend
from .modules import FusedBNAct, FusedBNReLU

if dispatch.has_extension("_C"):
    _fake.register("fusedbn")
if dispatch.has_extension("_simt"):
    _fake.register("fusedbn_simt")

__all__ = [
    "FusedBNAct",
    "FusedBNReLU",
    "convert",
    "functional",
    "get_backend",
    "set_backend",
    "use_backend",
]
