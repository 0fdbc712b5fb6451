"""The CUDA kernels on the SIMT harness (torch.ops.fusedbn_simt): memory traffic per op, results
independent of the block order, and harness errors reaching Python.

Traffic uses the harness's sector model (fusedbn._simt.traffic(), csrc/simt/simt.h): per launch,
the distinct 32-byte sectors read and written, i.e. a perfect cache, where re-reads of small
per-channel arrays cost nothing, as they would in a GPU's L1/L2.
"""

import math

import pytest
import torch

import fusedbn
from fusedbn import dispatch
from fusedbn import functional as F
from helpers import assert_matches, make_input

if dispatch._SIMT_ERROR is not None:  # `make test` always builds it: absence is a failure
    pytest.fail(f"fusedbn._simt is not built ({dispatch._SIMT_ERROR}); run `make build`",
                pytrace=False)
from fusedbn import _simt  # noqa: E402

OPS = torch.ops.fusedbn_simt
SECTOR = 32
ACT = ("elu", 0.01, 0.7)  # activation, negative_slope, alpha


@pytest.fixture
def block_order():
    """Sets the harness's block order seed; always back to launch order (0) afterwards."""
    try:
        yield _simt.set_block_order_seed
    finally:
        _simt.set_block_order_seed(0)


def launches_of(call):
    """The traffic records of the launches ``call()`` makes, and its result."""
    _simt.reset_traffic()
    result = call()
    records = _simt.traffic()
    _simt.reset_traffic()
    return records, result


# ---------------------------------------------------------------------------------------------
# (a) Traffic


def span(nbytes):
    """Upper bound on the sector bytes of one array of ``nbytes``: rounded up to whole sectors,
    plus one sector for a start that is not on a sector boundary."""
    return math.ceil(nbytes / SECTOR) * SECTOR + SECTOR


def rows_layout(x):
    """Whether the kernels read x as rows of C values (csrc/common/tensor_checks.h)."""
    return not x.is_contiguous() or x.dim() == 2 or x.numel() == x.shape[0] * x.shape[1]


def expected_launches(op, x, splits):
    """The launches of ``op`` on ``x``: (name, tensor passes read, tensor passes written,
    per-channel sector bytes read, per-channel sector bytes written), from launchers.cuh and
    the kernels. O(C), with a = sizeof(acc_t) (4; 8 for float64):
    - each (C,) acc_t array (mean, var, invstd, weight, bias, Σg, Σg·x̂) a launch touches costs
      span(C * a);
    - the per-block partials, splits * C records of a Welford (2a + 8 bytes: mean, m2, int64
      count) or gradient (2a: Σg, Σg·x̂) partial, cost span() of that where written and read;
    - the statistics finalize reads one x value per channel (its Welford shift): at most
      min(C, ceil(C * stride * elem / 32) + 1) sectors (stride S for planes, 1 for rows)."""
    channels, elem = x.shape[1], x.element_size()
    stride = 1 if rows_layout(x) else x.numel() // (x.shape[0] * channels)
    acc = 8 if x.dtype == torch.float64 else 4
    ch = span(channels * acc)
    welford, grad = span(splits * channels * (2 * acc + 8)), span(splits * channels * 2 * acc)
    shift = min(channels, math.ceil(channels * stride * elem / SECTOR) + 1) * SECTOR
    sums = [("gradient sums", 2, 0, [ch] * 4, [grad]),  # dy, x, mean, invstd, weight, bias
            ("finalize sums", 0, 0, [grad, ch], [ch] * 2)]  # partials, invstd -> Σg, Σg·x̂
    return {
        "train": [("statistics", 1, 0, [], [welford]),
                  ("finalize statistics", 0, 0, [welford, shift], [ch] * 3),  # -> mean, var, invstd
                  ("forward", 1, 1, [ch] * 4, [])],  # x, mean, invstd, weight, bias -> y
        "forward": [("forward", 1, 1, [ch] * 4, [])],
        "backward_train": sums + [("grad input", 2, 1, [ch] * 6, [])],  # + Σg, Σg·x̂
        "backward_reduce": sums,
        "backward_eval": [("grad input", 2, 1, [ch] * 4, [])],
    }[op]


def run_op(op, x, dy, mean, invstd, weight, bias):
    if op == "train":
        return OPS.batch_norm_act_train(x, weight, bias, None, None, 0.1, 1e-5, *ACT)
    if op == "forward":
        return OPS.batch_norm_act_forward(x, mean, invstd, weight, bias, *ACT)
    return getattr(OPS, f"batch_norm_act_{op}")(dy, x, mean, invstd, weight, bias, *ACT)


TRAFFIC_SHAPES = [
    ((3, 5, 7, 9), "contiguous"),  # spatial 63: not a multiple of the vector width
    ((3, 5, 7, 9), "channels_last"),
    ((37, 12), "contiguous"),  # (N, C): rows
    ((6, 10, 33), "contiguous"),  # (N, C, L)
    ((4, 1, 6, 7), "contiguous"),  # C = 1
    ((4, 130, 3, 3), "channels_last"),  # many channels, small spatial
    ((8, 3, 40, 41), "contiguous"),  # several partials per channel
    ((16, 24, 10, 10), "channels_last"),  # several partials per channel
]
PASSES = {"train": (2, 1), "forward": (1, 1), "backward_train": (4, 1), "backward_reduce": (2, 0),
          "backward_eval": (2, 1)}  # (read, written) tensor passes


@pytest.mark.parametrize("op", list(PASSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape,layout", TRAFFIC_SHAPES, ids=lambda v: str(v).replace(" ", ""))
def test_traffic(op, dtype, shape, layout):
    """Per launch and per op: passes * tensor bytes <= sector bytes <= passes * span(tensor
    bytes) + O(C), O(C) being the per-channel sector bytes of expected_launches()."""
    x = make_input(shape, dtype, layout)
    dy = torch.empty_like(x).copy_(torch.randn(shape))  # x's layout
    weight, bias = torch.rand(shape[1]) + 0.5, torch.randn(shape[1])
    _, mean, invstd = OPS.batch_norm_act_train(x, weight, bias, None, None, 0.1, 1e-5, *ACT)
    records, _ = launches_of(lambda: run_op(op, x, dy, mean, invstd, weight, bias))
    tensor = x.numel() * x.element_size()
    splits = 0  # partials per channel: the reduction's grid.y for rows, grid.x for planes
    if op not in ("forward", "backward_eval"):
        splits = records[0]["grid"][1 if rows_layout(x) else 0]
        assert 1 <= splits <= 1024
    expected = expected_launches(op, x, splits)
    assert len(records) == len(expected), f"{len(records)} launches, expected {len(expected)}"
    assert tuple(sum(e[i] for e in expected) for i in (1, 2)) == PASSES[op]
    totals = {"read": [0, 0, 0], "written": [0, 0, 0]}  # measured, lower, upper
    for record, (name, reads, writes, channel_reads, channel_writes) in zip(records, expected):
        for what, passes, extra in (("read", reads, channel_reads),
                                    ("written", writes, channel_writes)):
            measured = record[f"sector_bytes_{what}"]
            low, high = passes * tensor, passes * span(tensor) + sum(extra)
            assert low <= measured <= high, f"{name}: {measured} B {what}, expected [{low}, {high}]"
            for i, v in enumerate((measured, low, high)):
                totals[what][i] += v
    for what, (measured, low, high) in totals.items():  # the op: passes + O(C)
        assert low <= measured <= high, f"{op}: {measured} bytes {what}, expected [{low}, {high}]"


def test_sector_model_counts_each_sector_once():
    """An aligned float32 tensor of whole sectors: eval forward writes exactly its bytes, once
    each, and reads it once, however the blocks re-read the per-channel constants."""
    x = make_input((2, 3, 64, 80), torch.float32)
    mean, invstd = torch.zeros(3), torch.ones(3)
    [record], y = launches_of(lambda: OPS.batch_norm_act_forward(x, mean, invstd, None, None, *ACT))
    tensor = x.numel() * 4
    assert record["bytes_written"] == record["sector_bytes_written"] == tensor
    assert tensor <= record["sector_bytes_read"] <= tensor + 4 * span(3 * 4)
    assert record["bytes_read"] > record["sector_bytes_read"]  # raw bytes count every re-read
    assert record["blocks"] == record["grid"][0] * record["grid"][1] * record["grid"][2] > 1
    assert record["threads_per_block"] == 256


# ---------------------------------------------------------------------------------------------
# (b) Block order


def forward_backward(x, dy, backend):
    """Every op through fusedbn.functional: training forward + backward, then eval forward +
    backward (backward_eval and backward_reduce); returns every result."""
    channels, dtype = x.shape[1], x.dtype
    weight = (torch.linspace(0.5, 1.5, channels, dtype=torch.float64)).to(dtype).requires_grad_()
    bias = torch.linspace(-1, 1, channels, dtype=torch.float64).to(dtype).requires_grad_()
    running_mean = torch.zeros(channels, dtype=dtype)
    running_var = torch.ones(channels, dtype=dtype)
    x = x.detach().clone().requires_grad_()
    out = []
    with fusedbn.use_backend(backend):
        for training in (True, False):
            y = F.batch_norm_act(x, running_mean, running_var, weight, bias, training=training,
                                 activation=ACT[0], alpha=ACT[2])
            out += [y, *torch.autograd.grad(y, [x, weight, bias], dy)]
    return out + [running_mean, running_var]


ORDER_SHAPES = [  # several blocks along both grid axes and several partials per channel
    ((2, 3, 65, 79), "contiguous"),  # S = 5135: two spans per plane
    ((2, 134, 8, 8), "channels_last"),  # C % 4 != 0: scalar lanes, two column blocks
    ((2, 136, 8, 8), "channels_last"),  # vector lanes
]


@pytest.mark.parametrize("shape,layout", ORDER_SHAPES, ids=lambda v: str(v).replace(" ", ""))
def test_block_order_does_not_change_results(block_order, shape, layout):
    x = make_input(shape, torch.float32, layout)
    dy = torch.empty_like(x).copy_(torch.randn(shape))
    block_order(0)
    records, first = launches_of(lambda: forward_backward(x, dy, "simt"))
    finalizes = [r for r in records if r["grid"][1] == 1 and r["block"] == (32, 8, 1)]
    assert len(finalizes) == 3
    for r in records:  # the shape really splits every reduction and elementwise pass
        assert r in finalizes or (r["grid"][0] >= 2 and r["grid"][1] >= 2), r
    for seed in (1, 0xC0FFEE):
        block_order(seed)
        for a, b in zip(first, forward_backward(x, dy, "simt")):
            assert torch.equal(a, b), f"seed {seed} changed a result"
    expected = forward_backward(x.double(), dy.double(), "reference")
    names = [f"{mode} {n}" for mode in ("train", "eval") for n in ("y", "dx", "dweight", "dbias")]
    names += ["running_mean", "running_var"]
    for name, a, e in zip(names, first, expected):
        assert_matches(a, e, torch.float32, name)


# ---------------------------------------------------------------------------------------------
# (c) Errors from the real path


def test_unaligned_vectors_fall_back_and_misaligned_elements_are_reported():
    """A pointer off a 16-byte boundary but aligned to its element is fine (the launchers peel
    or go scalar); one not aligned to its element would fault on a GPU, and the harness's
    simt::Error reaches Python as a RuntimeError; the next launch runs clean."""
    shape = (2, 3, 16, 16)
    values = make_input(shape, torch.float32)
    offset = torch.empty(values.numel() + 1)[1:].view(shape).copy_(values)
    assert offset.data_ptr() % 16 == 4
    def train(x):
        return OPS.batch_norm_act_train(x, None, None, None, None, 0.1, 1e-5, *ACT)

    for a, b in zip(train(offset), train(values)):
        torch.testing.assert_close(a, b)
    y_ref = train(values)[0]

    buffer = bytearray(values.numel() * 4 + 1)
    odd = torch.frombuffer(buffer, dtype=torch.float32, offset=1).view(shape)
    odd.copy_(values)
    with pytest.raises(RuntimeError, match=r"simt: .*misaligned"):
        train(odd)
    assert torch.equal(train(values)[0], y_ref)
