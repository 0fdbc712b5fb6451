"""FusedBNAct and FusedBNReLU: drop-in replacements for BatchNorm followed by an activation."""

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from . import dispatch
from .functional import batch_norm_act

# The activation modules FusedBNAct can absorb, with the name and parameter each maps to.
_ACTIVATION_MODULES = {
    nn.Identity: lambda m: ("identity", {}),
    nn.ReLU: lambda m: ("relu", {}),
    nn.LeakyReLU: lambda m: ("leaky_relu", {"negative_slope": m.negative_slope}),
    nn.ELU: lambda m: ("elu", {"alpha": m.alpha}),
}


def activation_of(module):
    """(name, kwargs) for a supported activation module (None means identity), else None."""
    if module is None:
        return "identity", {}
    describe = _ACTIVATION_MODULES.get(type(module))
    return describe(module) if describe else None


class FusedBNAct(_NormBase):
    """BatchNorm over dim 1 of an (N, C, *) input, then an activation, in one fused op.

    Parameters, buffers and their semantics are those of ``nn.BatchNorm2d``, so checkpoints
    move between the two with ``strict=True``. It covers the roles of BatchNorm1d/2d/3d.
    It derives from ``_NormBase`` rather than ``_BatchNorm`` on purpose: code that rewrites
    every ``_BatchNorm`` (``nn.SyncBatchNorm.convert_sync_batchnorm``, say) would otherwise
    drop the fused activation.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 activation="relu", negative_slope=0.01, alpha=1.0, device=None, dtype=None):
        dispatch.check_hyperparameters(eps, momentum)
        dispatch.check_activation(activation, negative_slope, alpha)
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.activation = activation
        self.negative_slope = negative_slope
        self.alpha = alpha

    @classmethod
    def from_modules(cls, bn, act=None):
        """A FusedBNAct equal to ``act(bn(x))``, sharing bn's parameters and buffers.

        ``bn`` is an ``nn.BatchNorm1d/2d/3d``; ``act`` an ``nn.ReLU``, ``nn.LeakyReLU``,
        ``nn.ELU``, ``nn.Identity`` or None. The parameters are shared, not copied, so an
        optimizer built over the original model keeps training the fused one.
        """
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or isinstance(bn, nn.SyncBatchNorm):
            raise TypeError(f"from_modules needs an nn.BatchNorm1d/2d/3d, got {type(bn).__name__}")
        described = activation_of(act)
        if described is None:
            raise TypeError(f"unsupported activation module {type(act).__name__}; expected nn.ReLU, "
                            "nn.LeakyReLU, nn.ELU, nn.Identity or None")
        name, kwargs = described
        if cls is FusedBNReLU and name != "relu":
            raise TypeError(f"FusedBNReLU.from_modules needs nn.ReLU, got {type(act).__name__}")
        fused = cls.__new__(cls)
        FusedBNAct.__init__(fused, bn.num_features, bn.eps, bn.momentum, bn.affine,
                            bn.track_running_stats, activation=name, device="meta", **kwargs)
        for attr in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            setattr(fused, attr, getattr(bn, attr))
        fused.train(bn.training)
        return fused

    def forward(self, input):
        dispatch.check_input(input, self.num_features)
        # Mirrors nn.BatchNorm's forward: momentum=None means a cumulative moving average.
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return batch_norm_act(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight, self.bias, use_batch_stats, momentum, self.eps,
            self.activation, self.negative_slope, self.alpha,
        )

    def extra_repr(self):
        described = {"leaky_relu": f", negative_slope={self.negative_slope}", "elu": f", alpha={self.alpha}"}
        return f"{super().extra_repr()}, activation={self.activation!r}{described.get(self.activation, '')}"


class FusedBNReLU(FusedBNAct):
    """``nn.Sequential(nn.BatchNorm2d(C), nn.ReLU())`` as one fused module."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, activation="relu",
                         device=device, dtype=dtype)
