"""GPU memory traffic: modelled for fusedbn, eager and clone; counted for fusedbn's kernels.

The model counts whole-tensor passes over global memory, op by op, as each implementation
runs them on a GPU, and the time those bytes take at a named bandwidth (default: H100 SXM,
3.35 TB/s). It is a model, not a measurement: it says what a GPU should show even on a
machine without one. Per-channel arrays (mean, invstd, weight, running statistics, ...) are
O(C) and added as an estimate of how many (C,) float32 arrays each mode touches.

The count runs fusedbn's CUDA kernels on the SIMT harness (fusedbn._simt, the "simt"
backend) on the same shape, dtype and layout, and reads the bytes each launch moved from
``fusedbn._simt.traffic()``: the distinct 32-byte sectors read and written per launch, a
perfect-cache model of a GPU's DRAM traffic (csrc/simt/simt.h).
"""

import torch

import fusedbn

DEFAULT_BANDWIDTH_TBS = 3.35  # H100 SXM

# (op, tensor passes read, tensor passes written), in the order they run.
_FUSED_TRAIN = [("statistics (Welford): read x", 1, 0), ("normalise + activation: read x, write y", 1, 1)]
_EAGER_TRAIN = [("BN statistics (Welford, one pass): read x", 1, 0),
                ("BN normalise: read x, write z", 1, 1), ("ReLU: read z, write y", 1, 1)]
PASSES = {
    "fusedbn": {
        "train_fwd": _FUSED_TRAIN,
        "train_fwd_bwd": _FUSED_TRAIN + [("backward sums Σg, Σg·x̂: read dy, x", 2, 0),
                                         ("backward dx: read dy, x, write dx", 2, 1)],
        "eval_fwd": [("normalise + activation: read x, write y", 1, 1)],
    },
    "eager": {
        "train_fwd": _EAGER_TRAIN,
        "train_fwd_bwd": _EAGER_TRAIN + [("ReLU backward: read dy, y, write g", 2, 1),
                                         ("BN backward reduce: read g, x", 2, 0),
                                         ("BN backward dx: read g, x, write dx", 2, 1)],
        "eval_fwd": [("BN normalise: read x, write z", 1, 1), ("ReLU: read z, write y", 1, 1)],
    },
    "clone": {mode: [("clone: read x, write copy", 1, 1)]
              for mode in ("train_fwd", "train_fwd_bwd", "eval_fwd")},
}
# Estimated (C,) float32 arrays read or written per mode (statistics, parameters, running
# statistics, gradient sums); the same for both implementations, and small beside a tensor.
PER_CHANNEL_ARRAYS = {"train_fwd": 10, "train_fwd_bwd": 20, "eval_fwd": 4}


def modelled(shape, element_size, mode, bandwidth_tbs=DEFAULT_BANDWIDTH_TBS):
    """{implementation: {bytes, passes, ops, us}} for one mode on an ``shape`` tensor."""
    tensor = element_size
    for d in shape:
        tensor *= d
    per_channel = PER_CHANNEL_ARRAYS[mode] * shape[1] * 4
    out = {}
    for name, modes in PASSES.items():
        ops = modes[mode]
        passes = sum(r + w for _, r, w in ops)
        total = passes * tensor + (0 if name == "clone" else per_channel)
        out[name] = {"bytes": total, "passes": passes, "ops": [op for op, _, _ in ops],
                     "us": total / (bandwidth_tbs * 1e12) * 1e6}
    return out


def counted_unavailable():
    """None when the SIMT build can count fusedbn's traffic, else what to print instead."""
    if fusedbn.dispatch.has_extension("_simt"):
        return None
    return "counted traffic: simt backend not built"


def counted(shape, dtype, layout, mode):
    """Bytes fusedbn's CUDA kernels move for one mode, counted by the SIMT harness:
    {sector_bytes, sector_bytes_read, sector_bytes_written, access_bytes, launches}."""
    from fusedbn import _simt

    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(shape).to(dtype).contiguous(memory_format=memory_format)
    module = fusedbn.FusedBNReLU(shape[1])
    with fusedbn.use_backend("simt"):
        _simt.reset_traffic()
        try:
            if mode == "train_fwd_bwd":
                dy = torch.randn(shape).to(dtype).contiguous(memory_format=memory_format)
                module(x.requires_grad_()).backward(dy)
            else:
                module.train(mode == "train_fwd")
                with torch.no_grad():
                    module(x)
            records = _simt.traffic()
        finally:
            _simt.reset_traffic()
    read = sum(r["sector_bytes_read"] for r in records)
    written = sum(r["sector_bytes_written"] for r in records)
    return {"sector_bytes": read + written, "sector_bytes_read": read, "sector_bytes_written": written,
            "access_bytes": sum(r["bytes_read"] + r["bytes_written"] for r in records),
            "launches": len(records)}
