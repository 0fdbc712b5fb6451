"""FusedBNAct against nn.Sequential(nn.BatchNormNd, activation) in float64: outputs, gradients
and running statistics over several training steps and an eval step, across input ranks,
layouts, dtypes, module options and the shape classes that break kernels."""

import pytest
import torch
import torch.nn.functional as F

import fusedbn
from helpers import (ACTIVATIONS, ACTIVATION_KWARGS, CHANNELS_LAST, activation_module, assert_matches,
                     check_against_oracle, fused, layouts_for, make_input, oracle, randomize)

SHAPES_BY_RANK = {2: (6, 5), 3: (4, 5, 7), 4: (3, 5, 4, 6), 5: (2, 5, 3, 4, 3)}


def _rank_layouts():
    for dim, shape in SHAPES_BY_RANK.items():
        for layout in layouts_for(shape) + ["sliced", "transposed"]:
            yield pytest.param(shape, layout, id=f"{dim}d-{layout}")


RANK_LAYOUTS = list(_rank_layouts())


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape, layout", RANK_LAYOUTS)
def test_matches_batch_norm_sequential_in_float64(shape, layout, activation, backend, device):
    module = randomize(fused(shape[1], activation, device=device, dtype=torch.float64))
    reference = oracle(shape[1], len(shape), activation, device=device)
    check_against_oracle(module, reference, lambda: make_input(shape, torch.float64, layout, device))


DTYPE_CASES = [
    pytest.param(torch.float64, torch.float64, id="float64"),
    pytest.param(torch.float32, torch.float32, id="float32"),
    pytest.param(torch.float16, torch.float16, id="float16"),
    pytest.param(torch.bfloat16, torch.bfloat16, id="bfloat16"),
    pytest.param(torch.float64, torch.float32, id="float64-params_float32"),
    pytest.param(torch.float16, torch.float32, id="float16-params_float32"),
    pytest.param(torch.bfloat16, torch.float32, id="bfloat16-params_float32"),
]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("input_dtype, param_dtype", DTYPE_CASES)
def test_dtypes_and_mixed_precision(input_dtype, param_dtype, layout, activation, backend, device):
    shape = (4, 6, 5, 3)
    module = randomize(fused(shape[1], activation, device=device, dtype=param_dtype))
    reference = oracle(shape[1], len(shape), activation, device=device)
    check_against_oracle(module, reference, lambda: make_input(shape, input_dtype, layout, device))


MODULE_OPTIONS = {
    "momentum_none": dict(momentum=None),
    "momentum_0": dict(momentum=0.0),
    "momentum_1": dict(momentum=1.0),
    "momentum_0.3": dict(momentum=0.3),
    "eps_0.5": dict(eps=0.5),
    "affine_false": dict(affine=False),
    "no_running_stats": dict(track_running_stats=False),
    "affine_false_no_running_stats": dict(affine=False, track_running_stats=False),
}


@pytest.mark.parametrize("activation", ["relu", "elu"])
@pytest.mark.parametrize("options", MODULE_OPTIONS.values(), ids=MODULE_OPTIONS.keys())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_module_options(options, activation, dtype, backend, device):
    shape = (4, 3, 5, 5)
    module = randomize(fused(shape[1], activation, device=device, dtype=dtype, **options))
    reference = oracle(shape[1], len(shape), activation, device=device, **options)
    # Four training steps: momentum=None averages all of them with equal weight.
    check_against_oracle(module, reference, lambda: make_input(shape, dtype, "channels_last", device),
                         train_steps=4, eval_steps=2)


SHAPE_CLASSES = {
    "C1": (4, 1, 5, 5),
    "C3": (4, 3, 5, 5),
    "C17": (2, 17, 9, 3),
    "spatial1": (6, 16, 1, 1),
    "2d_C17": (7, 17),
    "N1": (1, 8, 4, 4),
    "odd": (5, 7, 3, 5),
    "C130": (2, 130, 3, 3),
    "3d_long": (3, 33, 67),
    "5d_odd": (2, 5, 3, 4, 5),
    "many_rows": (8, 3, 48, 48),
    "large_planes": (2, 4, 61, 67),
    # Channels longer than one CPU statistics segment (2**15 values): whole-plane segments, and
    # a plane split into pieces.
    "long_channels": (40, 2, 30, 30),
    "long_plane": (2, 2, 33000),
}


def _shape_class_cases():
    for name, shape in SHAPE_CLASSES.items():
        for layout in layouts_for(shape):
            yield pytest.param(shape, layout, id=f"{name}-{layout}")


SHAPE_CLASS_CASES = list(_shape_class_cases())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape, layout", SHAPE_CLASS_CASES)
def test_shape_classes(shape, layout, dtype, backend, device):
    module = randomize(fused(shape[1], "leaky_relu", device=device, dtype=torch.float32))
    reference = oracle(shape[1], len(shape), "leaky_relu", device=device)
    check_against_oracle(module, reference, lambda: make_input(shape, dtype, layout, device), train_steps=2)


# The cpu backend writes outputs of 4 MiB and more with streaming stores: whole cache lines
# inside each plane or run of rows, normal stores at the ends (csrc/cpu/streaming.h). Too large
# for the simt harness to run quickly, and a CPU-only path, so cpu only.
STREAMED_OUTPUTS = {
    "planes_misaligned": ((100, 48, 15, 15), "contiguous", torch.float32),  # planes start mid-line
    "planes_aligned": ((8, 32, 64, 64), "contiguous", torch.float32),
    "planes_float64": ((8, 32, 64, 64), "contiguous", torch.float64),
    "rows_whole_lines": ((16, 64, 32, 32), "channels_last", torch.float32),
    "rows_partial_lines": ((16, 40, 41, 41), "channels_last", torch.float32),  # not streamed
    "rows_float64": ((8, 32, 64, 64), "channels_last", torch.float64),
}


@pytest.mark.parametrize("shape, layout, dtype", STREAMED_OUTPUTS.values(), ids=STREAMED_OUTPUTS.keys())
def test_large_outputs_on_cpu(shape, layout, dtype):
    assert torch.Size(shape).numel() * dtype.itemsize >= 4 << 20
    with fusedbn.use_backend("cpu"):
        module = randomize(fused(shape[1], "leaky_relu", dtype=torch.float32))
        reference = oracle(shape[1], len(shape), "leaky_relu")
        check_against_oracle(module, reference, lambda: make_input(shape, dtype, layout, "cpu"), train_steps=1)


@pytest.mark.parametrize("shape", [(1, 9), (1, 9, 1), (1, 6, 1, 1), (1, 4, 3, 5)])
def test_eval_with_a_batch_of_one(shape, backend, device):
    module = randomize(fused(shape[1], "elu", device=device, dtype=torch.float32))
    reference = oracle(shape[1], len(shape), "elu", device=device)
    check_against_oracle(module, reference, lambda: make_input(shape, torch.float32, "contiguous", device),
                         train_steps=0, eval_steps=2)


@pytest.mark.parametrize("grad_mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_forward_that_autograd_does_not_record(grad_mode, layout, backend, device):
    """With no graph to record the op is called directly, not through autograd.Function: the
    outputs, running statistics and batch count must still be nn.BatchNorm's."""
    shape = (4, 5, 3, 6)
    module = randomize(fused(5, "elu", device=device, dtype=torch.float64))
    reference = oracle(5, 4, "elu", device=device)
    reference[0].load_state_dict(module.state_dict())
    for training in (True, True, False):
        module.train(training)
        reference.train(training)
        x = make_input(shape, torch.float64, layout, device)
        with grad_mode():
            y, y_ref = module(x), reference(x)
        assert not y.requires_grad
        assert_matches(y, y_ref, torch.float64, "output")
        for name in ("running_mean", "running_var"):
            assert_matches(getattr(module, name), getattr(reference[0], name), torch.float64, name)
        assert module.num_batches_tracked.item() == reference[0].num_batches_tracked.item()


GRAD_OUTPUTS = {
    # y.sum().backward(): a grad_output expanded from a scalar, every stride 0.
    "expanded": lambda y: torch.ones((), dtype=y.dtype, device=y.device).expand(y.shape),
    "channels_last": lambda y: torch.randn_like(y).contiguous(memory_format=torch.channels_last),
    "contiguous": lambda y: torch.randn_like(y).contiguous(),
    "sliced": lambda y: torch.randn(y.shape[:-1] + (2 * y.shape[-1],), dtype=y.dtype, device=y.device)[..., ::2],
}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("grad_output", GRAD_OUTPUTS.values(), ids=GRAD_OUTPUTS.keys())
def test_grad_output_in_any_layout(grad_output, layout, training, backend, device):
    shape = (3, 5, 4, 6)
    module = randomize(fused(5, "leaky_relu", device=device, dtype=torch.float64)).train(training)
    reference = oracle(5, 4, "leaky_relu", device=device).train(training)
    reference[0].load_state_dict(module.state_dict())
    x = make_input(shape, torch.float64, layout, device).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = module(x), reference(x_ref)
    dy = grad_output(y)
    grads = torch.autograd.grad(y, [x, module.weight, module.bias], dy)
    ref_grads = torch.autograd.grad(y_ref, [x_ref, *reference.parameters()], dy)
    for name, grad, ref_grad in zip(("input", "weight", "bias"), grads, ref_grads):
        assert_matches(grad, ref_grad, torch.float64, f"grad {name}")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("needs", ["input", "params", "weight", "bias"])
def test_partial_gradients(needs, training, backend, device):
    """Only some of input / weight / bias require grad (the backward-reduce-only paths)."""
    shape = (4, 3, 5, 5)
    module = randomize(fused(3, "elu", device=device, dtype=torch.float64)).train(training)
    reference = oracle(3, 4, "elu", device=device).train(training)
    reference[0].load_state_dict(module.state_dict())
    wants = {"input": ["input"], "params": ["weight", "bias"], "weight": ["weight"], "bias": ["bias"]}[needs]
    module.weight.requires_grad_("weight" in wants)
    module.bias.requires_grad_("bias" in wants)
    x = make_input(shape, torch.float64, "contiguous", device).requires_grad_("input" in wants)
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = module(x), reference(x_ref)
    dy = torch.randn_like(y)
    ours = dict(input=x, weight=module.weight, bias=module.bias)
    theirs = dict(input=x_ref, weight=reference[0].weight, bias=reference[0].bias)
    grads = torch.autograd.grad(y, [ours[w] for w in wants], dy)
    ref_grads = torch.autograd.grad(y_ref, [theirs[w] for w in wants], dy)
    for name, grad, ref_grad in zip(wants, grads, ref_grads):
        assert_matches(grad, ref_grad, torch.float64, f"grad {name}")


FUNCTIONAL_MODES = [
    pytest.param(True, True, id="train-stats"),
    pytest.param(True, False, id="train-no_stats"),
    pytest.param(False, True, id="eval"),  # eval without statistics is an error (test_errors)
]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("training, running_stats", FUNCTIONAL_MODES)
def test_functional_matches_torch_functional(training, running_stats, affine, activation, backend, device):
    shape, channels = (5, 4, 3, 2), 4
    x = make_input(shape, torch.float64, "contiguous", device)
    weight = torch.randn(channels, dtype=torch.float64, device=device) if affine else None
    bias = torch.randn(channels, dtype=torch.float64, device=device) if affine else None
    stats = (torch.randn(channels, dtype=torch.float64, device=device),
             torch.rand(channels, dtype=torch.float64, device=device) + 0.5) if running_stats else (None, None)
    ref_stats = tuple(None if s is None else s.clone() for s in stats)
    kwargs = ACTIVATION_KWARGS[activation]
    y = fusedbn.functional.batch_norm_act(x, *stats, weight, bias, training, 0.25, 1e-3, activation, **kwargs)
    z = F.batch_norm(x, *ref_stats, weight, bias, training, 0.25, 1e-3)
    assert_matches(y, activation_module(activation)(z), torch.float64, "output")
    for name, ours, theirs in zip(("running_mean", "running_var"), stats, ref_stats):
        if ours is not None:
            assert_matches(ours, theirs, torch.float64, name)


@pytest.mark.parametrize("dim", [4, 5])
def test_channels_last_stays_channels_last(dim, backend, device):
    shape = SHAPES_BY_RANK[dim]
    module = fused(shape[1], "relu", device=device)
    for training in (True, False):
        x = make_input(shape, torch.float32, "channels_last", device)
        y = module.train(training)(x)
        assert y.is_contiguous(memory_format=CHANNELS_LAST[dim]) and not y.is_contiguous()
        assert y.stride() == x.stride()


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_welford_statistics_are_stable_for_a_large_mean(layout, backend, device):
    """Mean 3e4, unit variance, float32: E[x²] − E[x]² would lose every digit here."""
    x = (torch.randn(64, 3, 32, 32, dtype=torch.float64) + 3e4).to(device=device, dtype=torch.float32)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    module = fusedbn.FusedBNAct(3, momentum=1.0, activation="identity", device=device)
    y = module(x)
    values = x.to(torch.float64).transpose(0, 1).reshape(3, -1)
    true_mean, true_var = values.mean(dim=1), values.var(dim=1, correction=1)
    # float32 holds 3e4 to within 0.002 (one ulp): the mean to a few ulps, the variance to 1e-3.
    torch.testing.assert_close(module.running_mean.to(torch.float64), true_mean, rtol=0, atol=1e-2)
    torch.testing.assert_close(module.running_var.to(torch.float64), true_var, rtol=1e-3, atol=0)
    # The output is normalised by the biased batch variance: mean 0, variance var / (var + eps).
    out = y.to(torch.float64).transpose(0, 1).reshape(3, -1)
    biased_var = values.var(dim=1, correction=0)
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-2)
    torch.testing.assert_close(out.var(dim=1, correction=0), biased_var / (biased_var + 1e-5), rtol=1e-3, atol=0)
