"""The pass floor: the time of the passes over memory that fusedbn's algorithm makes
(shared/DESIGN.md), each run by PyTorch's own simplest kernel for the same traffic, timed in
the same interleaved rounds as everything else:

    eval_fwd        read x, write y           x.clone()
    train_fwd       + read x (statistics)     x.sum()
    train_fwd_bwd   + read dy and x           torch.dot(dy, x)      (the gradient sums)
                    + read dy and x, write dx torch.mul(dy, x)      (the dx pass)

fusedbn at the floor makes its passes as fast as memory lets. Below it, passes were fused in
cache (contiguous channels small enough to stay in L2); far above it, time goes elsewhere.
"""

import torch


def _flat(t):
    """The dense tensor's memory as one 1-D view (whatever its memory format): no copy."""
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


def functions(x, dy):
    """{name: zero-argument function} for the primitive passes, to time with the contenders."""
    xf, dyf = _flat(x), _flat(dy)
    return {"floor/read": lambda: xf.sum(),
            "floor/read2": lambda: torch.dot(dyf, xf),
            "floor/read2_write": lambda: torch.mul(dyf, xf)}


def floor(times, mode):
    """Best-time floor in ms of ``mode`` from the timed primitives (and x.clone())."""
    best = {name: times[name]["best"] for name in ("clone", "floor/read", "floor/read2", "floor/read2_write")}
    forward = best["floor/read"] + best["clone"]
    return {"eval_fwd": best["clone"], "train_fwd": forward,
            "train_fwd_bwd": forward + best["floor/read2"] + best["floor/read2_write"]}[mode]
