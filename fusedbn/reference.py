"""Pure-PyTorch fused BatchNorm + activation: the oracle for the kernels and the fallback.

Written from the formulas (see csrc/common/batch_norm_math.h); autograd differentiates it.
Statistics and the affine transform are computed in the accumulation dtype (float64 for
float64 input, float32 otherwise) and the output is cast back to the input's dtype once.
"""

import torch
import torch.nn.functional as F

from .dispatch import accumulation_dtype


def activate(z, activation, negative_slope=0.01, alpha=1.0):
    """act(z) for one of fusedbn's activation names."""
    if activation == "identity":
        return z
    if activation == "relu":
        return F.relu(z)
    if activation == "leaky_relu":
        return F.leaky_relu(z, negative_slope)
    if activation == "elu":
        return F.elu(z, alpha)
    raise ValueError(f"unknown activation {activation!r}")


def _per_channel(t, dim, dtype):
    """Reshapes a (C,) tensor to broadcast against (N, C, *) input of ``dim`` dims."""
    return t.to(dtype).reshape((1, -1) + (1,) * (dim - 2))


@torch.no_grad()
def update_running_stats(running_mean, running_var, mean, var_biased, count, momentum):
    """running = (1 - momentum) * running + momentum * batch, with the unbiased variance."""
    if running_mean is None or count == 0:
        return
    var_unbiased = var_biased * (count / max(count - 1, 1))
    running_mean.lerp_(mean.to(running_mean.dtype), momentum)
    running_var.lerp_(var_unbiased.to(running_var.dtype), momentum)


def batch_norm_act(input, running_mean, running_var, weight, bias, training, momentum, eps,
                   activation, negative_slope, alpha):
    """y = act((x - mean) / sqrt(var + eps) * weight + bias); see fusedbn.functional."""
    acc = accumulation_dtype(input.dtype)
    x = input.to(acc)
    reduce_dims = [0] + list(range(2, input.dim()))
    if training:
        count = input.numel() // max(input.shape[1], 1)
        var, mean = torch.var_mean(x, dim=reduce_dims, correction=0)
        if count == 0:  # an empty batch normalises nothing and leaves the running stats alone
            mean, var = torch.zeros_like(mean), torch.zeros_like(var)
        update_running_stats(running_mean, running_var, mean.detach(), var.detach(), count, momentum)
    else:
        mean, var = running_mean.to(acc), running_var.to(acc)
    x_hat = (x - _per_channel(mean, input.dim(), acc)) * _per_channel(torch.rsqrt(var + eps), input.dim(), acc)
    z = x_hat
    if weight is not None:
        z = z * _per_channel(weight, input.dim(), acc)
    if bias is not None:
        z = z + _per_channel(bias, input.dim(), acc)
    # Elementwise ops keep the input's memory format (channels_last in, channels_last out).
    return activate(z, activation, negative_slope, alpha).to(input.dtype)
