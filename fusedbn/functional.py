"""fusedbn.functional.batch_norm_act: the functional form of FusedBNAct."""

import torch

from . import dispatch, reference
from ._autograd import BatchNormActEval, BatchNormActTrain


def batch_norm_act(input, running_mean, running_var, weight=None, bias=None, training=False,
                   momentum=0.1, eps=1e-5, activation="relu", negative_slope=0.01, alpha=1.0):
    """act(batch_norm(input, ...)) in one fused operation.

    Arguments mean what they mean for ``torch.nn.functional.batch_norm``, plus the activation
    ("identity", "relu", "leaky_relu" with ``negative_slope``, "elu" with ``alpha``).
    In training, the batch statistics normalise the input and, when ``running_mean`` and
    ``running_var`` are given, update them in place (unbiased variance, weight ``momentum``).
    Otherwise the running statistics normalise it. Returns a tensor of the input's shape,
    dtype and memory format.
    """
    channels = dispatch.check_input(input)
    for name, tensor in (("weight", weight), ("bias", bias),
                         ("running_mean", running_mean), ("running_var", running_var)):
        dispatch.check_per_channel(name, tensor, input, channels)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together or both be None")
    if not training and running_mean is None:
        raise ValueError("running_mean and running_var are required when training=False")
    if momentum is None:
        raise ValueError("momentum must be a number in [0, 1]; the module form takes None")
    dispatch.check_hyperparameters(eps, momentum)
    dispatch.check_activation(activation, negative_slope, alpha)
    if training:
        dispatch.check_training_batch(input)

    backend = dispatch.resolve_backend(input.device)
    activation_args = (activation, float(negative_slope), float(alpha))
    if backend == "reference":
        return reference.batch_norm_act(input, running_mean, running_var, weight, bias, training,
                                        momentum, eps, *activation_args)
    # Without a graph to record, the op is called directly: autograd.Function costs more than
    # the op itself on small inputs.
    records_graph = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (input, weight, bias))
    ops = dispatch.ops_for(backend)
    if training:
        if records_graph:
            return BatchNormActTrain.apply(input, weight, bias, running_mean, running_var,
                                           float(momentum), float(eps), backend, *activation_args)
        return ops.batch_norm_act_train(input, weight, bias, running_mean, running_var,
                                        float(momentum), float(eps), *activation_args)[0]
    acc = dispatch.accumulation_dtype(input.dtype)
    mean = running_mean.to(acc)
    invstd = torch.rsqrt(running_var.to(acc) + eps)
    if records_graph:
        return BatchNormActEval.apply(input, weight, bias, mean, invstd, backend, *activation_args)
    return ops.batch_norm_act_forward(input, mean, invstd, weight, bias, *activation_args)
