"""Fake (meta) implementations of the fusedbn ops, for torch.compile and opcheck.

They state each output's shape, dtype and memory format without computing anything.
"""

import torch

from .dispatch import accumulation_dtype


def _per_channel(input):
    return input.new_empty((input.shape[1],), dtype=accumulation_dtype(input.dtype))


def kernel_memory_format(input):
    """The layout the kernels compute in and write: channels_last where the input has it
    (and is not also plain contiguous), contiguous otherwise. csrc/common/tensor_layout.h
    applies the same rule."""
    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(input.dim())
    if channels_last is not None and not input.is_contiguous() and input.is_contiguous(memory_format=channels_last):
        return channels_last
    return torch.contiguous_format


def _like(input):
    return torch.empty(input.shape, dtype=input.dtype, device=input.device,
                       memory_format=kernel_memory_format(input))


def _train(input, weight, bias, running_mean, running_var, momentum, eps, activation, negative_slope, alpha):
    return _like(input), _per_channel(input), _per_channel(input)


def _forward(input, mean, invstd, weight, bias, activation, negative_slope, alpha):
    return _like(input)


def _backward_train(grad_output, input, mean, invstd, weight, bias, activation, negative_slope, alpha):
    return _like(input), _per_channel(input), _per_channel(input)


def _backward_reduce(grad_output, input, mean, invstd, weight, bias, activation, negative_slope, alpha):
    return _per_channel(input), _per_channel(input)


def _backward_eval(grad_output, input, mean, invstd, weight, bias, activation, negative_slope, alpha):
    return _like(input)


FAKES = {
    "batch_norm_act_train": _train,
    "batch_norm_act_forward": _forward,
    "batch_norm_act_backward_train": _backward_train,
    "batch_norm_act_backward_reduce": _backward_reduce,
    "batch_norm_act_backward_eval": _backward_eval,
}


def register(namespace):
    """Registers the fakes for the ops of ``namespace`` ("fusedbn" or "fusedbn_simt")."""
    for op, fake in FAKES.items():
        torch.library.register_fake(f"{namespace}::{op}", fake)
