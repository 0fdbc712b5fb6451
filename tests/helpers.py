"""What the tests compare fusedbn with, and how: the nn.Sequential oracle, inputs in each
layout, and per-dtype tolerances.

The oracle is always PyTorch's own ``nn.Sequential(nn.BatchNormNd(C), activation)`` run in
float64 on the same values (the input cast up, the parameters and statistics copied in), never
a copy of fusedbn's formulas.
"""

import torch
from torch import nn

import fusedbn

ACTIVATIONS = ("identity", "relu", "leaky_relu", "elu")
# Non-default parameters, so that a kernel ignoring negative_slope or alpha shows.
ACTIVATION_KWARGS = {"identity": {}, "relu": {}, "leaky_relu": {"negative_slope": 0.2}, "elu": {"alpha": 0.7}}
BATCH_NORMS = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}
CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}

# (rtol, atol) by dtype. atol is scaled by the magnitude of the expected tensor (see
# assert_matches), so that sums over a batch are held to a relative standard too.
TOLERANCES = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (5e-3, 5e-3),
    torch.bfloat16: (2e-2, 2e-2),
}


def activation_module(name):
    """The nn activation module for one of fusedbn's activation names (with ACTIVATION_KWARGS)."""
    kwargs = ACTIVATION_KWARGS[name]
    return {
        "identity": lambda: nn.Identity(),
        "relu": lambda: nn.ReLU(),
        "leaky_relu": lambda: nn.LeakyReLU(kwargs.get("negative_slope", 0.01)),
        "elu": lambda: nn.ELU(kwargs.get("alpha", 1.0)),
    }[name]()


def oracle(num_features, dim, activation, device="cpu", **bn_kwargs):
    """``nn.Sequential(nn.BatchNormNd, activation)`` in float64 for ``dim``-D input."""
    bn = BATCH_NORMS[dim](num_features, device=device, dtype=torch.float64, **bn_kwargs)
    return nn.Sequential(bn, activation_module(activation))


def fused(num_features, activation, **kwargs):
    """A FusedBNAct with ``activation`` and its ACTIVATION_KWARGS."""
    return fusedbn.FusedBNAct(num_features, activation=activation, **ACTIVATION_KWARGS[activation], **kwargs)


@torch.no_grad()
def randomize(module):
    """Random affine parameters and running statistics (whichever the module has)."""
    if getattr(module, "weight", None) is not None:
        module.weight.copy_(torch.randn(module.weight.shape, dtype=torch.float64) * 0.5 + 1.0)
        module.bias.copy_(torch.randn(module.bias.shape, dtype=torch.float64))
    if getattr(module, "running_mean", None) is not None:
        module.running_mean.copy_(torch.randn(module.running_mean.shape, dtype=torch.float64))
        module.running_var.copy_(torch.rand(module.running_var.shape, dtype=torch.float64) * 1.5 + 0.5)
    return module


def make_input(shape, dtype=torch.float64, layout="contiguous", device="cpu"):
    """A random (N, C, *) input with a different mean and scale per channel, in ``layout``:

    "contiguous"; "channels_last" (4D and 5D); "sliced", every other element of a tensor twice
    as wide in the last dim; "transposed", a view with the last two dims (the two dims for 2D
    input) swapped, dense but neither contiguous nor channels_last.
    """
    channels = shape[1]
    per_channel = (1, channels) + (1,) * (len(shape) - 2)
    scale = torch.rand(channels, dtype=torch.float64) * 1.5 + 0.5
    shift = torch.randn(channels, dtype=torch.float64) * 2
    values = torch.randn(shape, dtype=torch.float64) * scale.reshape(per_channel) + shift.reshape(per_channel)
    values = values.to(device=device, dtype=dtype)
    if layout == "contiguous":
        return values
    if layout == "channels_last":
        return values.contiguous(memory_format=CHANNELS_LAST[len(shape)])
    if layout == "sliced":
        wide = torch.zeros(shape[:-1] + (2 * shape[-1],), device=device, dtype=dtype)
        wide[..., ::2] = values
        return wide[..., ::2]
    if layout == "transposed":
        return values.transpose(-1, -2).contiguous().transpose(-1, -2)
    raise ValueError(f"unknown layout {layout!r}")


def layouts_for(shape):
    """The layouts that mean something for ``shape``."""
    layouts = ["contiguous"]
    if len(shape) in CHANNELS_LAST:
        layouts.append("channels_last")
    return layouts


def assert_matches(actual, expected, dtype, what):
    """``actual`` (computed in ``dtype``) against the float64 ``expected``, within dtype's
    tolerance; atol grows with the largest expected magnitude."""
    rtol, atol = TOLERANCES[dtype]
    scale = max(1.0, expected.detach().abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.detach().to(torch.float64), expected.detach().to(torch.float64),
                               rtol=rtol, atol=atol * scale, msg=lambda message: f"{what}: {message}")


def param_dtype_of(module, input_dtype):
    tensors = [t for t in (module.weight, module.running_mean) if t is not None]
    return tensors[0].dtype if tensors else input_dtype


def check_against_oracle(module, reference, make, train_steps=3, eval_steps=1):
    """Runs ``module`` (a FusedBNAct) and ``reference`` (its float64 oracle) side by side:
    ``train_steps`` training batches, then ``eval_steps`` eval batches. At each step compares
    the output (value, dtype, shape, memory format), the gradients of the input and parameters,
    and the running statistics and batch count.

    ``reference`` starts from ``module``'s state (loaded with strict=True); after each step its
    statistics are set to ``module``'s again so that rounding in low precision cannot compound.
    """
    bn = reference[0]
    bn.load_state_dict(module.state_dict(), strict=True)
    params, ref_params = list(module.parameters()), list(reference.parameters())
    for training in [True] * train_steps + [False] * eval_steps:
        module.train(training)
        reference.train(training)
        x = make()
        dtype = x.dtype
        param_dtype = param_dtype_of(module, dtype)
        step = "train" if training else "eval"
        x.requires_grad_()
        x_ref = x.detach().to(torch.float64).requires_grad_()
        y = module(x)
        y_ref = reference(x_ref)
        assert y.dtype == dtype and y.shape == x.shape
        if x.dim() in CHANNELS_LAST and x.is_contiguous(memory_format=CHANNELS_LAST[x.dim()]):
            assert y.is_contiguous(memory_format=CHANNELS_LAST[x.dim()]), f"{step}: output lost channels_last"
        if x.is_contiguous():
            assert y.is_contiguous(), f"{step}: output of contiguous input is not contiguous"
        assert_matches(y, y_ref, dtype, f"{step} output")

        dy = torch.randn(x.shape, dtype=torch.float64, device=x.device).to(dtype)
        grads = torch.autograd.grad(y, [x] + params, dy)
        ref_grads = torch.autograd.grad(y_ref, [x_ref] + ref_params, dy.to(torch.float64))
        assert grads[0].dtype == dtype and grads[0].shape == x.shape
        assert_matches(grads[0], ref_grads[0], dtype, f"{step} grad input")
        for name, grad, ref_grad in zip(("weight", "bias"), grads[1:], ref_grads[1:]):
            assert grad.dtype == param_dtype
            assert_matches(grad, ref_grad, param_dtype, f"{step} grad {name}")

        if bn.track_running_stats:
            assert_matches(module.running_mean, bn.running_mean, param_dtype, f"{step} running_mean")
            assert_matches(module.running_var, bn.running_var, param_dtype, f"{step} running_var")
            assert module.running_mean.dtype == module.running_var.dtype == param_dtype
            assert module.num_batches_tracked.item() == bn.num_batches_tracked.item()
            with torch.no_grad():
                bn.running_mean.copy_(module.running_mean)
                bn.running_var.copy_(module.running_var)
