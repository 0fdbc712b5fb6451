"""The implementations measured side by side, and the timed modes each one runs.

Every contender is built from one ``nn.BatchNorm2d`` template (deep-copied, so all start from
the same parameters and running statistics) and is called like a module on an (N, C, H, W)
tensor. A contender that cannot exist here raises ``Absent`` with the reason; the suite reports
it and goes on.
"""

import copy
import dataclasses
import importlib

import torch
from torch import nn

import fusedbn

CONTENDERS = ("fusedbn", "eager", "compile", "apex", "inplace_abn")
MODES = ("train_fwd", "train_fwd_bwd", "eval_fwd")


class Absent(Exception):
    """This contender cannot run here; the message says why."""


@dataclasses.dataclass
class Contender:
    name: str
    module: nn.Module
    note: str = ""
    # The activation its output is checked against (inplace_abn has no plain ReLU).
    activation: type = nn.ReLU
    activation_kwargs: dict = dataclasses.field(default_factory=dict)

    def reference(self, bn):
        """``nn.Sequential(BatchNorm2d, activation)`` computing what this contender computes."""
        return nn.Sequential(copy.deepcopy(bn), self.activation(**self.activation_kwargs))


def fusedbn_backend(device_type):
    """The fusedbn backend for the device: its compiled kernels, else the pure-PyTorch fallback."""
    return device_type if fusedbn.dispatch.has_extension("_C") else "reference"


def probe(name):
    """None when ``name`` can be built at all on this machine, else the reason it cannot."""
    module = {"apex": "apex.contrib.groupbn", "inplace_abn": "inplace_abn"}.get(name)
    if module is None:
        return None
    try:
        importlib.import_module(module)
    except Exception as error:  # an import can fail in any way (missing CUDA build, ABI, ...)
        return f"not importable: {type(error).__name__}: {error}"
    return None


class _ChannelsLastAsNHWC(nn.Module):
    """Presents a channels_last (N, C, H, W) tensor as the (N, H, W, C) tensor apex expects:
    the same memory, no copy."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _OnACopy(nn.Module):
    """Runs an in-place module on a copy of its input, so that every timed call sees the same
    input; the copy is part of the timed work (it is what a caller must pay to keep x)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.clone())


def build(name, bn, x):
    """The Contender ``name`` for input like ``x``, from BatchNorm template ``bn``."""
    reason = probe(name)
    if reason:
        raise Absent(reason)
    if name == "fusedbn":
        backend = fusedbn_backend(x.device.type)
        note = "" if backend == x.device.type else "fusedbn._C not built: reference backend"
        return Contender(name, fusedbn.FusedBNAct.from_modules(copy.deepcopy(bn), nn.ReLU()), note)
    if name == "eager":
        return Contender(name, nn.Sequential(copy.deepcopy(bn), nn.ReLU()))
    if name == "compile":
        # dynamic=False: shapes are fixed per case, as a real model's are.
        return Contender(name, torch.compile(nn.Sequential(copy.deepcopy(bn), nn.ReLU()), dynamic=False))
    if name == "apex":
        return _apex(bn, x)
    if name == "inplace_abn":
        return _inplace_abn(bn, x)
    raise ValueError(f"unknown contender {name!r}; expected one of {', '.join(CONTENDERS)}")


def _apex(bn, x):
    from apex.contrib.groupbn.batch_norm import BatchNorm2d_NHWC

    if not (x.is_cuda and x.dtype == torch.float16 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)):
        raise Absent("apex groupbn runs channels_last float16 on CUDA only")
    inner = BatchNorm2d_NHWC(bn.num_features, fuse_relu=True).to(x.device)
    inner.load_state_dict(bn.state_dict(), strict=False)
    return Contender("apex", _ChannelsLastAsNHWC(inner), "apex.contrib.groupbn BatchNorm2d_NHWC(fuse_relu=True)")


def _inplace_abn(bn, x):
    from inplace_abn import InPlaceABN

    # InPlaceABN inverts its activation in backward, so it offers leaky_relu, not relu.
    inner = InPlaceABN(bn.num_features, eps=bn.eps, momentum=bn.momentum,
                       activation="leaky_relu", activation_param=0.01).to(x.device)
    inner.load_state_dict(bn.state_dict(), strict=False)
    return Contender("inplace_abn", _OnACopy(inner), "InPlaceABN(leaky_relu 0.01) on x.clone()",
                     nn.LeakyReLU, {"negative_slope": 0.01})


def affine_parameters(module):
    """[weight, bias] of the BatchNorm inside ``module`` (which may wrap it)."""
    for m in module.modules():
        weight, bias = getattr(m, "weight", None), getattr(m, "bias", None)
        if isinstance(weight, nn.Parameter) and isinstance(bias, nn.Parameter):
            return [weight, bias]
    raise ValueError(f"no affine BatchNorm parameters in {type(module).__name__}")


def mode_functions(module, x, dy):
    """{mode: zero-argument function} timing one call of ``module`` in each mode."""
    x_leaf = x.detach().requires_grad_()  # shares x's memory
    params = affine_parameters(module)

    def train_fwd():
        module.train()
        with torch.no_grad():
            module(x)

    def train_fwd_bwd():
        # Gradients set to None, not zeroed: the next backward then stores its gradients
        # instead of adding them to old ones, which would be an extra pass eager would not pay.
        x_leaf.grad = None
        for p in params:
            p.grad = None
        module.train()
        module(x_leaf).backward(dy)

    def eval_fwd():
        module.eval()
        with torch.no_grad():
            module(x)

    return {"train_fwd": train_fwd, "train_fwd_bwd": train_fwd_bwd, "eval_fwd": eval_fwd}
