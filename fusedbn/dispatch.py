"""Backend choice and argument validation: every call is checked and routed here, once.

Backends (see the README): "cuda" and "cpu" run the compiled kernels of ``fusedbn._C``;
"simt" runs the CUDA kernel source on the CPU through ``fusedbn._simt``; "reference" is pure
PyTorch. "auto" picks the compiled kernels for the input's device and falls back to
"reference", with one warning, when the extension is missing.
"""

import contextlib
import importlib
import math
import os
import warnings

import torch

BACKENDS = ("auto", "cuda", "cpu", "simt", "reference")
ACTIVATIONS = ("identity", "relu", "leaky_relu", "elu")
INPUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_backend_name(name):
    if name not in BACKENDS:
        raise ValueError(f"unknown fusedbn backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


_backend = _check_backend_name(os.environ.get("FUSEDBN_BACKEND", "auto"))


def set_backend(name):
    """Selects the backend used by every fusedbn call from now on."""
    global _backend
    _backend = _check_backend_name(name)


def get_backend():
    """The name of the backend in force ("auto" unless set)."""
    return _backend


@contextlib.contextmanager
def use_backend(name):
    """Context manager: runs its body with backend ``name``, then restores the previous one."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def _load(module):
    try:
        importlib.import_module(f"fusedbn.{module}")
    except ImportError as error:
        return error
    return None


# Importing the extensions registers their ops with torch.ops; None means it loaded.
_C_ERROR = _load("_C")
_SIMT_ERROR = _load("_simt")
_warned_fallback = False


def has_extension(name="_C"):
    """True when the compiled extension ``name`` ("_C" or "_simt") imported."""
    return (_C_ERROR if name == "_C" else _SIMT_ERROR) is None


def resolve_backend(device):
    """The concrete backend to run on ``device`` under the current setting."""
    global _warned_fallback
    name = _backend
    if name == "auto":
        if _C_ERROR is not None:
            if not _warned_fallback:
                warnings.warn(
                    f"fusedbn's compiled extension is missing ({_C_ERROR}); "
                    "using the slow pure-PyTorch reference backend",
                    stacklevel=3,
                )
                _warned_fallback = True
            return "reference"
        return "cuda" if device.type == "cuda" else "cpu"
    if name == "cuda" and device.type != "cuda":
        raise ValueError(f"fusedbn backend 'cuda' needs CUDA tensors, got a tensor on {device}")
    if name in ("cpu", "simt") and device.type != "cpu":
        raise ValueError(f"fusedbn backend {name!r} needs CPU tensors, got a tensor on {device}")
    error = _SIMT_ERROR if name == "simt" else _C_ERROR
    if name != "reference" and error is not None:
        raise RuntimeError(f"fusedbn backend {name!r} is not available: {error}")
    return name


def ops_for(backend):
    """The torch.ops namespace holding ``backend``'s kernels."""
    return torch.ops.fusedbn_simt if backend == "simt" else torch.ops.fusedbn


def accumulation_dtype(dtype):
    """Statistics and reductions run in float64 for float64 input, in float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_activation(activation, negative_slope, alpha):
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
    for name, value in (("negative_slope", negative_slope), ("alpha", alpha)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")


def check_hyperparameters(eps, momentum):
    if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if momentum is not None and (not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1):
        raise ValueError(f"momentum must be None or a number in [0, 1], got {momentum!r}")


def check_input(input, num_features=None):
    """Checks the input tensor; returns its channel count."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if not 2 <= input.dim() <= 5:
        raise ValueError(f"expected 2D to 5D input (N, C, *), got {input.dim()}D input of shape {tuple(input.shape)}")
    if input.dtype not in INPUT_DTYPES:
        raise TypeError(f"input dtype {input.dtype} is not supported; expected float16, bfloat16, float32 or float64")
    channels = input.shape[1]
    if num_features is not None and channels != num_features:
        raise ValueError(f"expected input with {num_features} channels (dim 1), got {channels} channels, input shape {tuple(input.shape)}")
    return channels


def check_per_channel(name, tensor, input, channels):
    """Checks a per-channel parameter or statistic: (C,), input dtype or float32, input device."""
    if tensor is None:
        return
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(tensor).__name__}")
    if tuple(tensor.shape) != (channels,):
        raise ValueError(f"{name} must have shape ({channels},) for an input with {channels} channels, got {tuple(tensor.shape)}")
    if tensor.dtype not in (input.dtype, torch.float32):
        raise TypeError(f"{name} dtype {tensor.dtype} does not match: expected the input's dtype {input.dtype} or torch.float32")
    if tensor.device != input.device:
        raise ValueError(f"{name} is on {tensor.device} but input is on {input.device}")


def check_training_batch(input):
    """Batch statistics need more than one value per channel (as nn.BatchNorm requires)."""
    values_per_channel = input.numel() // max(input.shape[1], 1)
    if values_per_channel == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {input.size()}")
