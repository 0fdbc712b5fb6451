"""fusedbn inside PyTorch's machinery: torch.library.opcheck on every op, torch.compile
without graph breaks, bitwise determinism across thread counts, and what autograd saves."""

import copy

import pytest
import torch
from torch import nn

import fusedbn
from helpers import assert_matches, make_input, randomize

OPS = ("batch_norm_act_train", "batch_norm_act_forward", "batch_norm_act_backward_train",
       "batch_norm_act_backward_reduce", "batch_norm_act_backward_eval")

# (shape, layout, input dtype, parameter dtype or None for no weight/bias, running stats?, activation)
SAMPLES = [
    ((3, 4, 5, 2), "contiguous", torch.float32, torch.float32, True, "relu"),
    ((3, 4, 5, 2), "channels_last", torch.float32, None, True, "leaky_relu"),
    ((3, 4, 5, 2), "channels_last", torch.float16, torch.float32, True, "elu"),  # mixed precision
    ((6, 5), "contiguous", torch.float64, torch.float64, False, "identity"),
    ((2, 3, 2, 3, 2), "channels_last", torch.bfloat16, torch.bfloat16, True, "relu"),
    ((2, 3, 7), "contiguous", torch.bfloat16, torch.float32, True, "leaky_relu"),
]


def op_samples(op, device):
    """Sample arguments of ``op`` covering both layouts, mixed precision, no weight/bias and
    (for the training forward) no running statistics."""
    for shape, layout, dtype, param_dtype, running, activation in SAMPLES:
        channels = shape[1]
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        x = make_input(shape, dtype, layout, device)
        if param_dtype is None:
            weight = bias = None
        else:
            weight = torch.randn(channels, dtype=param_dtype, device=device)
            bias = torch.randn(channels, dtype=param_dtype, device=device)
        act = (activation, 0.2, 0.7)
        if op == "batch_norm_act_train":
            stat_dtype = param_dtype or torch.float32
            running_mean = torch.randn(channels, dtype=stat_dtype, device=device) if running else None
            running_var = torch.rand(channels, dtype=stat_dtype, device=device) + 0.5 if running else None
            yield (x, weight, bias, running_mean, running_var, 0.1, 1e-5, *act)
            continue
        mean = torch.randn(channels, dtype=acc, device=device)
        invstd = torch.rand(channels, dtype=acc, device=device) + 0.5
        if op == "batch_norm_act_forward":
            yield (x, mean, invstd, weight, bias, *act)
            continue
        grad_output = torch.randn_like(x)
        yield (grad_output, x, mean, invstd, weight, bias, *act)
        if x.dim() == 4:  # a grad_output in the other layout than the input's
            other = torch.contiguous_format if layout == "channels_last" else torch.channels_last
            yield (grad_output.contiguous(memory_format=other), x, mean, invstd, weight, bias, *act)


@pytest.mark.parametrize("op", OPS)
def test_opcheck(op, ops):
    namespace, device = ops
    overload = getattr(namespace, op).default
    count = 0
    for args in op_samples(op, device):
        torch.library.opcheck(overload, args)
        count += 1
    assert count >= len(SAMPLES)


def test_ops_match_the_reference(ops):
    """The training forward and backward ops against autograd through reference.py."""
    namespace, device = ops
    for shape, layout, dtype, param_dtype, running, activation in SAMPLES:
        x = make_input(shape, dtype, layout, device).requires_grad_()
        channels = shape[1]
        weight = torch.randn(channels, dtype=param_dtype, device=device) if param_dtype else None
        bias = torch.randn(channels, dtype=param_dtype, device=device) if param_dtype else None
        out, mean, invstd = namespace.batch_norm_act_train(x, weight, bias, None, None, 0.1, 1e-5, activation, 0.2, 0.7)
        expected = fusedbn.reference.batch_norm_act(x, None, None, weight, bias, True, 0.1, 1e-5, activation, 0.2, 0.7)
        assert out.dtype == dtype and out.stride() == expected.stride()
        assert mean.dtype == invstd.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        assert_matches(out, expected, dtype, "output")
        grad_output = torch.randn_like(out)
        grad_input, sum_g, sum_g_xhat = namespace.batch_norm_act_backward_train(
            grad_output, x.detach(), mean, invstd, weight, bias, activation, 0.2, 0.7)
        (expected_grad,) = torch.autograd.grad(expected, [x], grad_output)
        assert_matches(grad_input, expected_grad, dtype, "grad input")
        sums = namespace.batch_norm_act_backward_reduce(grad_output, x.detach(), mean, invstd, weight, bias,
                                                        activation, 0.2, 0.7)
        assert torch.equal(sums[0], sum_g) and torch.equal(sums[1], sum_g_xhat)


# --- torch.compile ------------------------------------------------------------------------

def conv_bn_relu_conv(device):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), fusedbn.FusedBNReLU(8), nn.Conv2d(8, 4, 3))
    randomize(model[1])
    return model.to(device)


def test_compile_without_graph_breaks_matches_eager(backend, device):
    eager = conv_bn_relu_conv(device)
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True)
    x = torch.randn(4, 3, 10, 10, device=device)
    for training in (True, True, False):
        eager.train(training)
        compiled_model.train(training)
        out, expected = compiled(x), eager(x)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
        out.square().mean().backward()
        expected.square().mean().backward()
        for (name, p), q in zip(compiled_model.named_parameters(), eager.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"grad {name}: {m}")
        for (name, b), c in zip(compiled_model.named_buffers(), eager.buffers()):
            torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")
    assert compiled_model[1].num_batches_tracked.item() == 2


# --- determinism ----------------------------------------------------------------------------

def run_once(shape, layout, dtype, threads, device):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(7)
        module = randomize(fusedbn.FusedBNAct(shape[1], activation="elu", device=device))
        x = make_input(shape, dtype, layout, device).requires_grad_()
        y = module(x)
        grads = torch.autograd.grad(y, [x, module.weight, module.bias], torch.randn_like(y))
        module.eval()
        y_eval = module(x)
        eval_grads = torch.autograd.grad(y_eval, [x, module.weight, module.bias], torch.randn_like(y))
        return [y, *grads, module.running_mean, module.running_var, y_eval, *eval_grads]
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("shape, layout, dtype", [
    pytest.param((8, 16, 32, 32), "contiguous", torch.float32, id="float32-contiguous"),
    pytest.param((8, 16, 32, 32), "channels_last", torch.float32, id="float32-channels_last"),
    pytest.param((8, 5, 33, 31), "channels_last", torch.bfloat16, id="bfloat16-channels_last-odd"),
    pytest.param((4096, 24), "contiguous", torch.float16, id="float16-2d"),
])
def test_bitwise_deterministic_across_runs_and_thread_counts(shape, layout, dtype, compiled_backend, device):
    first = run_once(shape, layout, dtype, 1, device)
    for threads in (1, 2, 2):
        again = run_once(shape, layout, dtype, threads, device)
        for index, (a, b) in enumerate(zip(first, again)):
            assert torch.equal(a, b), f"result {index} differs with {threads} threads"


# --- what autograd saves ------------------------------------------------------------------

def saved_bytes(fn):
    """Bytes of the distinct tensors autograd saves while ``fn`` runs."""
    saved = {}

    def pack(tensor):
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape))
        saved[key] = tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(saved.values())


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout, dtype, param_dtype", [
    pytest.param("contiguous", torch.float32, torch.float32, id="float32-contiguous"),
    pytest.param("channels_last", torch.float32, torch.float32, id="float32-channels_last"),
    pytest.param("channels_last", torch.float16, torch.float32, id="float16-float32_params"),
])
def test_saves_only_the_input_and_per_channel_tensors(layout, dtype, param_dtype, training, compiled_backend, device):
    shape = (4, 16, 8, 8)
    channels = shape[1]
    x = make_input(shape, dtype, layout, device).requires_grad_()
    input_bytes = x.numel() * x.element_size()
    fused = fusedbn.FusedBNReLU(channels, device=device, dtype=param_dtype).train(training)
    eager = nn.Sequential(nn.BatchNorm2d(channels, device=device, dtype=dtype), nn.ReLU()).train(training)
    ours = saved_bytes(lambda: fused(x))
    theirs = saved_bytes(lambda: eager(x))
    assert ours <= input_bytes + 64 * channels, f"saved {ours} bytes for a {input_bytes}-byte input"
    assert theirs >= 2 * input_bytes  # BatchNorm's input and ReLU's output
    assert ours < theirs
