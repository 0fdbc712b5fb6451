"""Bad input gives a Python exception that names the problem; empty batches, NaN and Inf
behave as nn.BatchNorm + activation do (checked in a child process, so that a crash in a
kernel shows as a failing test rather than a dead test run)."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

import fusedbn
from fusedbn.functional import batch_norm_act

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


def x4(*shape, dtype=torch.float32, device="cpu"):
    return torch.randn(shape or (2, 3, 4, 4), device=device).to(dtype)


def stats(channels=3, dtype=torch.float32, device="cpu"):
    return torch.zeros(channels, dtype=dtype, device=device), torch.ones(channels, dtype=dtype, device=device)


def functional(x, running_mean=None, running_var=None, weight=None, bias=None, training=True, **kwargs):
    return lambda: batch_norm_act(x, running_mean, running_var, weight, bias, training, **kwargs)


def module_call(x, *args, training=True, **kwargs):
    return lambda: fusedbn.FusedBNAct(*args, **kwargs).train(training)(x)


ones = torch.ones
BAD_CALLS = {
    # input
    "wrong_channel_count": (lambda: module_call(x4(2, 5, 3, 3), 4), ValueError, "expected input with 4 channels"),
    "1d_input": (lambda: module_call(torch.randn(8), 8), ValueError, "expected 2D to 5D input"),
    "0d_input": (lambda: functional(torch.tensor(1.0)), ValueError, "expected 2D to 5D input"),
    "6d_input": (lambda: module_call(torch.randn(2, 3, 2, 2, 2, 2), 3), ValueError, "expected 2D to 5D input"),
    "int_input": (lambda: module_call(torch.ones(4, 3, dtype=torch.int64), 3), TypeError,
                  "input dtype torch.int64 is not supported"),
    "uint8_input": (lambda: functional(torch.ones(4, 3, dtype=torch.uint8)), TypeError,
                    "input dtype torch.uint8 is not supported"),
    "bool_input": (lambda: module_call(torch.ones(4, 3, dtype=torch.bool), 3), TypeError,
                   "input dtype torch.bool is not supported"),
    "complex_input": (lambda: module_call(torch.ones(4, 3, dtype=torch.complex64), 3), TypeError,
                      "input dtype torch.complex64 is not supported"),
    "not_a_tensor": (lambda: functional([[1.0, 2.0], [3.0, 4.0]]), TypeError, "input must be a torch.Tensor"),
    "one_value_per_channel_2d": (lambda: module_call(torch.randn(1, 3), 3), ValueError,
                                 "Expected more than 1 value per channel when training"),
    "one_value_per_channel_4d": (lambda: module_call(torch.randn(1, 3, 1, 1), 3), ValueError,
                                 "Expected more than 1 value per channel when training"),
    "one_value_per_channel_functional": (lambda: functional(torch.randn(1, 3, 1), *stats()), ValueError,
                                         "Expected more than 1 value per channel when training"),
    # per-channel tensors: shape
    "weight_shape": (lambda: functional(x4(), weight=ones(4)), ValueError, "weight must have shape (3,)"),
    "bias_shape": (lambda: functional(x4(), bias=ones(3, 1)), ValueError, "bias must have shape (3,)"),
    "running_mean_shape": (lambda: functional(x4(), ones(2), ones(3)), ValueError, "running_mean must have shape (3,)"),
    "running_var_shape": (lambda: functional(x4(), ones(3), ones(())), ValueError, "running_var must have shape (3,)"),
    # dtype: the input's or float32
    "weight_dtype_float64": (lambda: functional(x4(), weight=ones(3, dtype=torch.float64)), TypeError,
                             "weight dtype torch.float64 does not match"),
    "bias_dtype_float16": (lambda: functional(x4(), bias=ones(3, dtype=torch.float16)), TypeError,
                           "bias dtype torch.float16 does not match"),
    "bias_dtype_bf16_with_half_input": (lambda: functional(x4(dtype=torch.float16), bias=ones(3, dtype=torch.bfloat16)),
                                        TypeError, "bias dtype torch.bfloat16 does not match"),
    "running_mean_dtype": (lambda: functional(x4(), *stats(dtype=torch.float64)), TypeError,
                           "running_mean dtype torch.float64 does not match"),
    "running_var_dtype_int": (lambda: functional(x4(), ones(3), ones(3, dtype=torch.int64)), TypeError,
                              "running_var dtype torch.int64 does not match"),
    "module_dtype": (lambda: module_call(x4(), 3, dtype=torch.float64), TypeError,
                     "weight dtype torch.float64 does not match"),
    # device ("meta" stands for another device)
    "weight_device": (lambda: functional(x4(), weight=ones(3, device="meta")), ValueError,
                      "weight is on meta but input is on cpu"),
    "bias_device": (lambda: functional(x4(), bias=ones(3, device="meta")), ValueError,
                    "bias is on meta but input is on cpu"),
    "running_var_device": (lambda: functional(x4(), ones(3), ones(3, device="meta")), ValueError,
                           "running_var is on meta but input is on cpu"),
    "input_device": (lambda: functional(x4(device="meta"), *stats()), ValueError,
                     "running_mean is on cpu but input is on meta"),
    "module_device": (lambda: module_call(x4(device="meta"), 3), ValueError, "weight is on cpu but input is on meta"),
    # statistics
    "stats_not_paired": (lambda: functional(x4(), ones(3), None), ValueError,
                         "running_mean and running_var must be given together"),
    "eval_without_stats": (lambda: functional(x4(), training=False), ValueError,
                           "running_mean and running_var are required when training=False"),
    # hyperparameters
    "eps_zero": (lambda: functional(x4(), eps=0.0), ValueError, "eps must be a finite number > 0"),
    "eps_negative": (lambda: module_call(x4(), 3, eps=-1e-5), ValueError, "eps must be a finite number > 0"),
    "eps_nan": (lambda: functional(x4(), eps=math.nan), ValueError, "eps must be a finite number > 0"),
    "eps_inf": (lambda: module_call(x4(), 3, eps=math.inf), ValueError, "eps must be a finite number > 0"),
    "momentum_negative": (lambda: functional(x4(), momentum=-0.1), ValueError,
                          "momentum must be None or a number in [0, 1]"),
    "momentum_above_1": (lambda: module_call(x4(), 3, momentum=1.5), ValueError,
                         "momentum must be None or a number in [0, 1]"),
    "momentum_nan": (lambda: functional(x4(), momentum=math.nan), ValueError,
                     "momentum must be None or a number in [0, 1]"),
    "functional_momentum_none": (lambda: functional(x4(), momentum=None), ValueError,
                                 "momentum must be a number in [0, 1]"),
    # activations
    "unknown_activation": (lambda: functional(x4(), activation="gelu"), ValueError, "unknown activation 'gelu'"),
    "unknown_activation_module": (lambda: module_call(x4(), 3, activation="prelu6"), ValueError,
                                  "unknown activation 'prelu6'"),
    "negative_slope_nan": (lambda: functional(x4(), activation="leaky_relu", negative_slope=math.nan), ValueError,
                           "negative_slope must be a finite number"),
    "negative_slope_inf": (lambda: module_call(x4(), 3, activation="leaky_relu", negative_slope=-math.inf),
                           ValueError, "negative_slope must be a finite number"),
    "alpha_nan": (lambda: module_call(x4(), 3, activation="elu", alpha=math.nan), ValueError,
                  "alpha must be a finite number"),
    "alpha_not_a_number": (lambda: functional(x4(), activation="elu", alpha="1"), ValueError,
                           "alpha must be a finite number"),
    # module construction
    "num_features_zero": (lambda: module_call(x4(), 0), ValueError, "num_features must be a positive int"),
}


@pytest.mark.parametrize("make, error, phrase", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_input_is_a_clear_error(make, error, phrase, backend):
    with pytest.raises(error) as caught:
        make()()
    assert phrase in str(caught.value)


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="unknown fusedbn backend 'gpu'; expected one of auto, cuda, cpu"):
        fusedbn.set_backend("gpu")


def test_module_attribute_changed_after_construction_is_still_checked(backend):
    module = fusedbn.FusedBNReLU(3)
    module.eps = -1.0
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        module(x4())


# --- the ops' own checks (a direct torch.ops call never reads out of bounds) -----------------

def op_args(device, **changes):
    x = torch.randn(2, 3, 4, device=device)
    args = dict(input=x, mean=torch.zeros(3, device=device), invstd=torch.ones(3, device=device),
                weight=torch.ones(3, device=device), bias=torch.zeros(3, device=device), activation="relu",
                negative_slope=0.01, alpha=1.0)
    args.update(changes)
    return args


OP_ERRORS = {
    "weight_shape": (dict(weight=torch.ones(4)), "weight must have shape (3,)"),
    "mean_shape": (dict(mean=torch.zeros(2)), "mean must have shape (3,)"),
    "invstd_shape": (dict(invstd=torch.zeros(3, 1)), "invstd must have shape (3,)"),
    "input_rank": (dict(input=torch.randn(6)), "expected 2D to 5D input"),
    "input_dtype": (dict(input=torch.ones(2, 3, dtype=torch.int32)), "is not supported"),
    "activation": (dict(activation="swish"), "unknown activation 'swish'"),
}


@pytest.mark.parametrize("changes, phrase", OP_ERRORS.values(), ids=OP_ERRORS.keys())
def test_ops_check_their_arguments(changes, phrase, ops):
    namespace, device = ops
    changes = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in changes.items()}
    args = op_args(device, **changes)
    with pytest.raises(RuntimeError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        namespace.batch_norm_act_forward(*args.values())


# --- empty batches, NaN and Inf, against nn.BatchNorm + activation, in a child process -------

EDGE_CASES = {
    "empty_batch": dict(shape=(0, 3, 4, 4)),
    "empty_batch_channels_last": dict(shape=(0, 3, 4, 4), layout="channels_last"),
    "empty_batch_2d": dict(shape=(0, 3)),
    "empty_spatial": dict(shape=(2, 3, 0, 4)),
    "empty_spatial_3d": dict(shape=(2, 3, 0)),
    "nan": dict(shape=(4, 3, 8, 8), poison=[("nan", (1, 1, 2, 3))]),
    "nan_channels_last": dict(shape=(4, 3, 8, 8), layout="channels_last", poison=[("nan", (1, 1, 2, 3))]),
    "inf": dict(shape=(4, 3, 8, 8), poison=[("inf", (1, 1, 2, 3)), ("-inf", (2, 2, 1, 1))]),
    "inf_channels_last": dict(shape=(4, 3, 8, 8), layout="channels_last",
                              poison=[("inf", (1, 1, 2, 3)), ("-inf", (2, 2, 1, 1))]),
    "nan_and_inf_2d": dict(shape=(40, 5), poison=[("nan", (3, 1)), ("inf", (7, 2)), ("-inf", (9, 4))]),
}
EDGE_VARIANTS = [(activation, dtype) for activation in ("relu", "leaky_relu", "elu", "identity")
                 for dtype in ("float32", "float64")]


@pytest.fixture(scope="module")
def edge_results():
    """{backend: {case id: "ok" or the failure}}, each backend's cases run in one child process."""
    results = {}

    def run(backend):
        if backend not in results:
            cases = [dict(case, id=f"{name}-{activation}-{dtype}", activation=activation, dtype=dtype)
                     for name, case in EDGE_CASES.items() for activation, dtype in EDGE_VARIANTS]
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS, os.environ.get("PYTHONPATH", "")]))
            process = subprocess.run(
                [sys.executable, "-c", "import sys, edge_cases; edge_cases.main(sys.argv[1], sys.argv[2])",
                 backend, json.dumps(cases)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
            outcome = {}
            for line in process.stdout.splitlines():
                if line.startswith("{"):
                    record = json.loads(line)
                    outcome[record["id"]] = record["result"]
            died = (f"the child process ended (exit status {process.returncode}) before this case "
                    f"reported; its stderr:\n{process.stderr[-4000:]}")
            results[backend] = {case["id"]: outcome.get(case["id"], died) for case in cases}
        return results[backend]

    return run


@pytest.mark.parametrize("activation, dtype", EDGE_VARIANTS, ids=["-".join(v) for v in EDGE_VARIANTS])
@pytest.mark.parametrize("case", EDGE_CASES)
def test_empty_nan_and_inf_inputs_behave_like_batch_norm(case, activation, dtype, backend, edge_results):
    result = edge_results(backend)[f"{case}-{activation}-{dtype}"]
    if result != "ok":
        pytest.fail(result, pytrace=False)
