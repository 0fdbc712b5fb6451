"""Memory: what a training forward keeps for backward, and (GPU) the peak of forward+backward.

Saved tensors are seen through ``torch.autograd.graph.saved_tensors_hooks`` and counted by
storage: a storage saved twice (the same x saved by two ops, say) counts once, since it is
held once. A storage as large as the input is "activation-sized"; the rest are per-channel
(mean, invstd, weight, ...).
"""

import torch
from torch.autograd.graph import saved_tensors_hooks


class SavedTensors:
    """Context manager collecting the distinct storages saved for backward inside it."""

    def __init__(self):
        self.storages = {}  # (device type, data_ptr) -> nbytes

    def _pack(self, tensor):
        storage = tensor.untyped_storage()
        self.storages.setdefault((tensor.device.type, storage.data_ptr()), storage.nbytes())
        return tensor

    def __enter__(self):
        self._hooks = saved_tensors_hooks(self._pack, lambda tensor: tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        return self._hooks.__exit__(*exc)

    def summary(self, activation_bytes):
        """{saved_bytes, activation_sized: count, bytes, per_channel_bytes} of what was saved."""
        sizes = list(self.storages.values())
        big = [s for s in sizes if s >= activation_bytes]
        return {"saved_bytes": sum(sizes), "tensors": len(sizes), "activation_sized": len(big),
                "activation_sized_bytes": sum(big), "per_channel_bytes": sum(sizes) - sum(big)}


def saved_for_backward(module, x):
    """SavedTensors.summary() of one training forward of ``module`` on ``x``."""
    module.train()
    x_leaf = x.detach().requires_grad_()
    with SavedTensors() as saved:
        out = module(x_leaf)
    del out  # the graph (and what it saved) goes with it
    return saved.summary(x.numel() * x.element_size())


def peak_bytes(function, device):
    """Peak bytes allocated by ``function()`` on a CUDA device above what was allocated before,
    or None on the CPU (which has no allocator statistics)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    function()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before
