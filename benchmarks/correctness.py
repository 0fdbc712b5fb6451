"""Correctness before timing: each contender's results against eager PyTorch on the same input.

Compared, in the order the timed modes run them on a fresh copy of the BatchNorm: the training
output (which also updates the running statistics), the input and parameter gradients of a
second training call, and the eval output (which uses the statistics both calls left behind).
Tolerances are per dtype; atol grows with the largest expected magnitude, so that gradient
sums over millions of values are held to a relative standard.
"""

import torch

from .contenders import affine_parameters

TOLERANCES = {  # (rtol, atol): what differs between two correct kernels, not between wrong ones
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-3, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (4e-2, 4e-2),
}


# How far from the activation's kink (z = 0) every pre-activation value is kept, per input
# dtype: more than two implementations' rounding of z, and of the input's own quantisation.
KINK_MARGIN = {torch.float64: 1e-6, torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 5e-2}


@torch.no_grad()
def keep_off_the_kink(x, bn):
    """Moves, in place, the few values of ``x`` whose training-mode pre-activation z lies
    within KINK_MARGIN of 0, to about three margins away on the same side.

    At z = 0 the activation's derivative jumps (ReLU: 0 to 1), so two correct kernels whose
    z differ in the last bit can give a gradient that differs by dy there. Inputs without
    such values make every element comparable with a tight tolerance. Nudging a few values
    moves the batch statistics by a negligible amount; the loop settles it."""
    margin = KINK_MARGIN[x.dtype]
    per_channel = (1, -1, 1, 1)
    for _ in range(5):
        xd = x.double()
        var, mean = torch.var_mean(xd, dim=(0, 2, 3), correction=0, keepdim=True)
        scale = bn.weight.double().view(per_channel) * torch.rsqrt(var + bn.eps)
        z = (xd - mean) * scale + bn.bias.double().view(per_channel)
        near = z.abs() < margin
        if not near.any():
            return
        target = torch.where(z >= 0, 3 * margin, -3 * margin)
        x.copy_(torch.where(near, xd + (target - z) / scale, xd))


def results_of(module, x, dy):
    """{what: tensor} for the modes the suite times."""
    module.train()
    with torch.no_grad():
        train_out = module(x)
    x_leaf = x.detach().requires_grad_()
    params = affine_parameters(module)
    grads = torch.autograd.grad(module(x_leaf), [x_leaf] + params, dy)
    module.eval()
    with torch.no_grad():
        eval_out = module(x)
    return {"train output": train_out, "grad input": grads[0], "grad weight": grads[1],
            "grad bias": grads[2], "eval output": eval_out}


def compare(actual, expected, dtype):
    """The list of mismatches between two results_of() dicts (empty when they agree)."""
    rtol, atol = TOLERANCES[dtype]
    problems = []
    for what, want in expected.items():
        got = actual[what]
        scale = max(1.0, want.detach().abs().max().item()) if want.numel() else 1.0
        try:
            torch.testing.assert_close(got.detach().double(), want.detach().double(),
                                       rtol=rtol, atol=atol * scale)
        except AssertionError as error:
            lines = [line for line in str(error).splitlines() if line.strip()]
            problems.append(f"{what}: " + "; ".join(lines[:4]))
    return problems


class Checker:
    """Checks contenders of one case against eager results, computed once per activation."""

    def __init__(self, bn, x, dy):
        self.bn, self.x, self.dy = bn, x, dy
        self._expected = {}

    def check(self, contender):
        """[] when ``contender`` matches eager, else the mismatches. Exceptions propagate."""
        reference = contender.reference(self.bn)
        key = (contender.activation, tuple(sorted(contender.activation_kwargs.items())))
        if key not in self._expected:
            self._expected[key] = results_of(reference, self.x, self.dy)
        actual = results_of(contender.module, self.x, self.dy)
        return compare(actual, self._expected[key], self.x.dtype)
