"""End to end: one torchvision training step before and after ``fusedbn.convert``.

A step is forward, cross-entropy loss, backward and an SGD step. Both models start from the
same initial weights (the converted one is a deep copy) and see the same batch. Before their
steps are timed in interleaved rounds, the first step must agree:
- the losses, within a dtype tolerance;
- the gradients, judged against a float64 copy of the eager model: fusedbn's gradients may be
  no further from it than eager float32's are (times 2, plus a floor). A comparison of the
  two float32 runs with each other, or of their losses a step later, would not do: at
  initialisation a deep ResNet's gradients differ by a few per cent between two correct
  float32 implementations, and one SGD step amplifies that.
"""

import contextlib
import copy

import torch
import torch.nn.functional as F

import fusedbn
from .memory import SavedTensors, peak_bytes

LOSS_RTOL = {None: 1e-3, torch.bfloat16: 3e-2, torch.float16: 1e-2}
GRAD_FLOOR = {None: 1e-4, torch.bfloat16: 3e-2, torch.float16: 1e-2}  # relative gradient error


def variants(device_type):
    """[(layout, autocast dtype or None)]: on a GPU also channels_last and AMP (bfloat16, which
    needs no gradient scaler)."""
    if device_type == "cuda":
        return [("contiguous", None), ("channels_last", None), ("channels_last", torch.bfloat16)]
    return [("contiguous", None), ("channels_last", None)]


def _autocast(x, amp_dtype):
    return torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()


def _train_step(model, optimizer, x, target, amp_dtype):
    optimizer.zero_grad(set_to_none=True)
    with _autocast(x, amp_dtype):
        loss = F.cross_entropy(model(x), target)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _saved_bytes(model, x, amp_dtype):
    """Bytes of the distinct storages one training forward keeps for backward."""
    with SavedTensors() as saved, _autocast(x, amp_dtype):
        out = model(x)
    del out
    return sum(saved.storages.values())


def _loss_and_gradients(model, x, target, amp_dtype):
    """The loss of one forward and backward, and {parameter name: gradient} in float64."""
    model.zero_grad(set_to_none=True)
    with _autocast(x, amp_dtype):
        loss = F.cross_entropy(model(x), target)
    loss.backward()
    grads = {n: p.grad.detach().double() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.item(), grads


def _relative_error(grads, exact):
    """||g - g_exact|| / ||g_exact|| over all parameters together."""
    squared_error = sum(float((grads[n] - g).square().sum()) for n, g in exact.items())
    squared_norm = sum(float(g.square().sum()) for g in exact.values())
    return (squared_error / max(squared_norm, 1e-300)) ** 0.5


def run(model_name, device, batch, size, layout, amp_dtype, timer, rounds, warmup):
    """Times one step of ``model_name`` eager and converted; a dict of the figures."""
    import torchvision

    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    torch.manual_seed(0)
    eager = getattr(torchvision.models, model_name)(weights=None)
    eager = eager.to(device=device, memory_format=memory_format).train()
    fused = fusedbn.convert(copy.deepcopy(eager))
    models = {"eager": eager, "fusedbn": fused}
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=memory_format)
    target = torch.randint(0, 1000, (batch,), device=device)
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for name, m in models.items()}

    def step(name):
        return lambda: _train_step(models[name], optimizers[name], x, target, amp_dtype)

    first = {name: _loss_and_gradients(m, x, target, amp_dtype) for name, m in models.items()}
    exact = _loss_and_gradients(copy.deepcopy(eager).double(), x.double(), target, amp_dtype)
    losses = {name: loss for name, (loss, _) in first.items()}
    grad_error = {name: _relative_error(grads, exact[1]) for name, (_, grads) in first.items()}
    del first, exact
    rtol = LOSS_RTOL[amp_dtype]
    agree = (abs(losses["fusedbn"] - losses["eager"]) <= rtol * max(1.0, abs(losses["eager"]))
             and grad_error["fusedbn"] <= 2 * grad_error["eager"] + GRAD_FLOOR[amp_dtype])
    result = {
        "model": model_name, "batch": batch, "size": size, "layout": layout,
        "precision": f"amp-{str(amp_dtype).removeprefix('torch.')}" if amp_dtype else "float32",
        "fused_layers": sum(isinstance(m, fusedbn.FusedBNAct) for m in fused.modules()),
        "batch_norm_layers": sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in eager.modules()),
        "losses": losses, "loss_rtol": rtol, "gradient_error_vs_float64": grad_error,
        "agree": agree,
        "saved_bytes": {name: _saved_bytes(m, x, amp_dtype) for name, m in models.items()},
        "peak_bytes": {name: peak_bytes(step(name), device) for name in models},
    }
    if not agree:  # timing a step that computes something else would mean nothing
        result["ms"] = None
        return result
    times = timer.measure({name: step(name) for name in models}, rounds, warmup)
    result["ms"] = times
    result["ratio_to_eager"] = times["fusedbn"]["best"] / times["eager"]["best"]
    result["median_ratio_to_eager"] = times["fusedbn"]["median"] / times["eager"]["median"]
    return result
