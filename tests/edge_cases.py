"""Run by test_errors.py in a child process: empty batches, NaN and Inf inputs through
FusedBNAct and through nn.BatchNorm + activation, in training and eval.

    python -c "import edge_cases; edge_cases.main(BACKEND, CASES_JSON)"

Prints one JSON line per case, {"id": ..., "result": "ok" or what differed}, flushed at once:
a case that crashes the process leaves the cases after it unreported, and the parent says so.
"""

import json
import math
import traceback

import torch

import fusedbn
from helpers import CHANNELS_LAST, TOLERANCES, fused, oracle, randomize

POISON = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def make(case, device):
    dtype = getattr(torch, case["dtype"])
    x = torch.randn(case["shape"], dtype=torch.float64) * 1.5 + 0.5
    for value, index in case.get("poison", []):
        x[tuple(index)] = POISON[value]
    x = x.to(device=device, dtype=dtype)
    if case.get("layout") == "channels_last":
        x = x.contiguous(memory_format=CHANNELS_LAST[x.dim()])
    return x


def same(actual, expected, dtype, what):
    """Close within dtype's tolerance; NaN where expected is NaN; infinities equal."""
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(actual.detach().to(torch.float64), expected.detach().to(torch.float64),
                               rtol=rtol, atol=atol, equal_nan=True, msg=lambda m: f"{what}: {m}")


def same_running_mean(actual, expected, dtype):
    """nn.BatchNorm's mean of a channel holding an inf is ±inf (it sums); a Welford mean is NaN
    there (inf - inf), as torch.var_mean's is. Either is right: non-finite exactly where nn's is."""
    actual, expected = actual.to(torch.float64), expected.to(torch.float64)
    finite = torch.isfinite(expected)
    assert torch.equal(torch.isfinite(actual), finite), f"running_mean: {actual} where nn has {expected}"
    same(actual[finite], expected[finite], dtype, "running_mean")


def step(module, reference, x, training):
    module.train(training)
    reference.train(training)
    dtype = x.dtype
    xf = x.clone().requires_grad_()
    xr = x.detach().to(torch.float64).requires_grad_()
    y, y_ref = module(xf), reference(xr)
    assert y.shape == x.shape and y.dtype == dtype
    same(y, y_ref, dtype, "output")
    dy = torch.randn(x.shape, dtype=torch.float64).to(device=x.device, dtype=dtype)
    params, ref_params = list(module.parameters()), list(reference.parameters())
    grads = torch.autograd.grad(y, [xf] + params, dy)
    ref_grads = torch.autograd.grad(y_ref, [xr] + ref_params, dy.to(torch.float64))
    for name, grad, ref_grad in zip(("grad input", "grad weight", "grad bias"), grads, ref_grads):
        assert grad.shape == ref_grad.shape, f"{name}: shape {grad.shape}, nn's {ref_grad.shape}"
        if module.activation == "elu" and not torch.isfinite(x).all():
            grad, ref_grad = _elu_nan_agnostic(grad, ref_grad)
        same(grad, ref_grad, dtype, name)
    bn = reference[0]
    same_running_mean(module.running_mean, bn.running_mean, dtype)
    same(module.running_var, bn.running_var, dtype, "running_var")
    assert module.num_batches_tracked.item() == bn.num_batches_tracked.item(), "num_batches_tracked"


def _elu_nan_agnostic(grad, ref_grad):
    """PyTorch's elu_backward sends a NaN z down the exponential branch in its vectorised loop
    (z > 0 is false) and down the identity branch in its scalar tail (z <= 0 is false), so
    where a NaN lands in memory decides nn's gradient. fusedbn follows the vectorised loop.
    Where exactly one side is NaN, both answers are PyTorch's; everywhere else they must agree."""
    grad, ref_grad = grad.detach().to(torch.float64).clone(), ref_grad.detach().to(torch.float64).clone()
    either = torch.isnan(grad) ^ torch.isnan(ref_grad)
    grad[either] = ref_grad[either] = 0.0
    return grad, ref_grad


def run_case(case, device):
    x = make(case, device)
    dtype = x.dtype
    channels = x.shape[1]
    for training in (True, False):
        # Each mode starts from finite statistics: a NaN batch in training poisons them.
        module = randomize(fused(channels, case["activation"], dtype=dtype, device=device))
        reference = oracle(channels, x.dim(), case["activation"], device=device)
        reference[0].load_state_dict(module.state_dict(), strict=True)
        try:
            step(module, reference, x, training)
        except AssertionError as error:
            raise AssertionError(f"{'train' if training else 'eval'}: {error}") from None


def main(backend, cases_json):
    torch.manual_seed(0)
    device = "cuda" if backend == "cuda" else "cpu"
    with fusedbn.use_backend(backend):
        for case in json.loads(cases_json):
            try:
                run_case(case, device)
                result = "ok"
            except Exception:  # noqa: BLE001 - reported to the parent, case by case
                result = traceback.format_exc(limit=-3)
            print(json.dumps({"id": case["id"], "result": result}), flush=True)
