"""Autograd for the compiled backends: forward and backward are fusedbn ops.

Each Function saves the input, the per-channel mean and invstd and the parameters for
backward: never an activation-sized intermediate. The non-tensor arguments are the backend
name and the activation (name, negative_slope, alpha).
"""

import torch
from torch.autograd.function import once_differentiable

from .dispatch import ops_for


def _parameter_grads(ctx, weight, bias, sum_g, sum_g_xhat):
    """dweight = Σ(g·x̂) and dbias = Σg, in each parameter's own dtype."""
    grad_weight = sum_g_xhat.to(weight.dtype) if ctx.needs_input_grad[1] else None
    grad_bias = sum_g.to(bias.dtype) if ctx.needs_input_grad[2] else None
    return grad_weight, grad_bias


class BatchNormActTrain(torch.autograd.Function):
    """Batch statistics; updates running_mean / running_var in place when given."""

    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, momentum, eps, backend, *activation):
        ops = ops_for(backend)
        output, mean, invstd = ops.batch_norm_act_train(
            input, weight, bias, running_mean, running_var, momentum, eps, *activation)
        ctx.save_for_backward(input, mean, invstd, weight, bias)
        ctx.backend, ctx.activation = backend, activation
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        input, mean, invstd, weight, bias = ctx.saved_tensors
        ops = ops_for(ctx.backend)
        args = (grad_output, input, mean, invstd, weight, bias, *ctx.activation)
        grad_input = None
        if ctx.needs_input_grad[0]:
            grad_input, sum_g, sum_g_xhat = ops.batch_norm_act_backward_train(*args)
        else:
            sum_g, sum_g_xhat = ops.batch_norm_act_backward_reduce(*args)
        return (grad_input, *_parameter_grads(ctx, weight, bias, sum_g, sum_g_xhat)) + (None,) * 8


class BatchNormActEval(torch.autograd.Function):
    """Fixed statistics (mean, invstd given): one elementwise pass each way."""

    @staticmethod
    def forward(ctx, input, weight, bias, mean, invstd, backend, *activation):
        output = ops_for(backend).batch_norm_act_forward(input, mean, invstd, weight, bias, *activation)
        ctx.save_for_backward(input, mean, invstd, weight, bias)
        ctx.backend, ctx.activation = backend, activation
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        input, mean, invstd, weight, bias = ctx.saved_tensors
        ops = ops_for(ctx.backend)
        args = (grad_output, input, mean, invstd, weight, bias, *ctx.activation)
        grad_input = ops.batch_norm_act_backward_eval(*args) if ctx.needs_input_grad[0] else None
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            sum_g, sum_g_xhat = ops.batch_norm_act_backward_reduce(*args)
            grad_weight, grad_bias = _parameter_grads(ctx, weight, bias, sum_g, sum_g_xhat)
        return (grad_input, grad_weight, grad_bias) + (None,) * 6
