"""torch.autograd.gradcheck in float64 through fusedbn.functional.batch_norm_act: every
activation, training and eval, contiguous and channels_last.

gradcheck compares with finite differences, which are wrong across the kink of relu,
leaky_relu and elu at z = 0: inputs are drawn until every z stays clear of it.
"""

import pytest
import torch
import torch.nn.functional as F

import fusedbn
from helpers import ACTIVATIONS, ACTIVATION_KWARGS, CHANNELS_LAST

MOMENTUM, EPS = 0.1, 1e-5
KINK_MARGIN = 1e-2  # finite differences move z by about 1e-6


def draw(shape, layout, training, device):
    """(x, weight, bias, running_mean, running_var) in float64 with every z clear of 0."""
    generator = torch.Generator().manual_seed(1234)
    channels = shape[1]
    while True:
        x = torch.randn(shape, dtype=torch.float64, generator=generator)
        weight = torch.randn(channels, dtype=torch.float64, generator=generator) + 1.0
        bias = torch.randn(channels, dtype=torch.float64, generator=generator) * 0.5
        running_mean = torch.randn(channels, dtype=torch.float64, generator=generator) * 0.1
        running_var = torch.rand(channels, dtype=torch.float64, generator=generator) + 0.5
        z = F.batch_norm(x, running_mean.clone(), running_var.clone(), weight, bias, training, MOMENTUM, EPS)
        if z.abs().min() > KINK_MARGIN:
            break
    if layout == "channels_last":
        x = x.contiguous(memory_format=CHANNELS_LAST[len(shape)])
    return [t.to(device) for t in (x, weight, bias, running_mean, running_var)]


CASES = [
    pytest.param((3, 4, 3, 2), "contiguous", id="4d-contiguous"),
    pytest.param((3, 4, 3, 2), "channels_last", id="4d-channels_last"),
]
EXTRA_CASES = [
    pytest.param((5, 3), "contiguous", id="2d"),
    pytest.param((3, 2, 5), "contiguous", id="3d"),
    pytest.param((2, 3, 2, 2, 2), "channels_last", id="5d-channels_last_3d"),
]


def run_gradcheck(shape, layout, training, activation, device, needs=("input", "weight", "bias")):
    x, weight, bias, running_mean, running_var = draw(shape, layout, training, device)
    for name, tensor in zip(("input", "weight", "bias"), (x, weight, bias)):
        tensor.requires_grad_(name in needs)

    def f(x, weight, bias):
        return fusedbn.functional.batch_norm_act(
            x, running_mean, running_var, weight, bias, training, MOMENTUM, EPS, activation,
            **ACTIVATION_KWARGS[activation])

    assert torch.autograd.gradcheck(f, (x, weight, bias))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape, layout", CASES)
def test_gradcheck(shape, layout, training, activation, backend, device):
    run_gradcheck(shape, layout, training, activation, device)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape, layout", EXTRA_CASES)
def test_gradcheck_other_ranks(shape, layout, training, backend, device):
    run_gradcheck(shape, layout, training, "leaky_relu", device)


@pytest.mark.parametrize("needs", [("input",), ("weight", "bias"), ("weight",), ("bias",)], ids="+".join)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_gradcheck_with_some_inputs_constant(needs, training, backend, device):
    run_gradcheck((3, 4, 3, 2), "channels_last", training, "elu", device, needs)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_gradcheck_without_affine_parameters(training, backend, device):
    x, _, _, running_mean, running_var = draw((3, 4, 3, 2), "contiguous", training, device)
    x.requires_grad_()

    def f(x):
        return fusedbn.functional.batch_norm_act(x, running_mean, running_var, None, None, training,
                                                 MOMENTUM, EPS, "identity")

    assert torch.autograd.gradcheck(f, (x,))
