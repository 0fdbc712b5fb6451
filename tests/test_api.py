"""The public API: backend choice, the modules' parameters and buffers, from_modules,
state_dict compatibility with nn.BatchNorm, FusedBNReLU and repr."""

import copy
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import fusedbn
from fusedbn import dispatch
from helpers import BATCH_NORMS, assert_matches, make_input, randomize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, **env):
    """Runs ``code`` in a fresh interpreter (so that fusedbn is imported anew) from the repo root."""
    environment = {k: v for k, v in os.environ.items() if k != "FUSEDBN_BACKEND"}
    environment.update(env)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, environment.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=300)


def test_public_names():
    for name in ("FusedBNAct", "FusedBNReLU", "functional", "set_backend", "get_backend", "use_backend", "convert"):
        assert hasattr(fusedbn, name), name
    assert callable(fusedbn.functional.batch_norm_act)
    assert issubclass(fusedbn.FusedBNReLU, fusedbn.FusedBNAct)


def test_compiled_extension_is_built():
    """`make test` builds fusedbn._C: its absence is a failure here, not a silent fallback."""
    assert dispatch.has_extension("_C"), f"fusedbn._C did not import: {dispatch._C_ERROR}"


# --- backend choice -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["reference", "cpu", "auto"])
def test_set_backend_and_get_backend(name):
    previous = fusedbn.get_backend()
    try:
        fusedbn.set_backend(name)
        assert fusedbn.get_backend() == name
    finally:
        fusedbn.set_backend(previous)
    assert fusedbn.get_backend() == previous


def test_use_backend_restores_the_previous_one_even_on_error():
    previous = fusedbn.get_backend()
    with fusedbn.use_backend("reference"):
        assert fusedbn.get_backend() == "reference"
        with fusedbn.use_backend("cpu"):
            assert fusedbn.get_backend() == "cpu"
        assert fusedbn.get_backend() == "reference"
    assert fusedbn.get_backend() == previous
    with pytest.raises(KeyError):
        with fusedbn.use_backend("reference"):
            raise KeyError("inside")
    assert fusedbn.get_backend() == previous


def test_unknown_backend_name_is_rejected_and_changes_nothing():
    previous = fusedbn.get_backend()
    with pytest.raises(ValueError, match="unknown fusedbn backend 'tpu'"):
        fusedbn.set_backend("tpu")
    with pytest.raises(ValueError, match="unknown fusedbn backend"):
        with fusedbn.use_backend("gpu"):
            pass
    assert fusedbn.get_backend() == previous


def test_auto_picks_the_cpu_kernels_for_cpu_tensors():
    with fusedbn.use_backend("auto"):
        assert dispatch.resolve_backend(torch.device("cpu")) == "cpu"
        if torch.cuda.is_available():
            assert dispatch.resolve_backend(torch.device("cuda")) == "cuda"


def test_backend_on_the_wrong_device_is_a_clear_error():
    x = torch.randn(4, 3, device="meta")
    for name in ("cpu", "simt"):
        with fusedbn.use_backend(name), pytest.raises(ValueError, match=f"backend '{name}' needs CPU tensors"):
            fusedbn.FusedBNReLU(3, device="meta")(x)
    with fusedbn.use_backend("cuda"), pytest.raises(ValueError, match="backend 'cuda' needs CUDA tensors"):
        fusedbn.FusedBNReLU(3)(torch.randn(4, 3))


@pytest.mark.parametrize("name", ["reference", "cpu"])
def test_environment_variable_sets_the_default_backend(name):
    result = run_python("import fusedbn; print(fusedbn.get_backend())", FUSEDBN_BACKEND=name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == name


def test_default_backend_is_auto():
    result = run_python("import fusedbn; print(fusedbn.get_backend())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "auto"


def test_unknown_backend_in_the_environment_is_a_clear_error():
    result = run_python("import fusedbn", FUSEDBN_BACKEND="quantum")
    assert result.returncode != 0
    assert "ValueError" in result.stderr and "unknown fusedbn backend 'quantum'" in result.stderr, result.stderr


def test_auto_falls_back_to_reference_with_one_warning_when_the_extension_is_missing():
    code = """
import importlib.abc, sys, warnings
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "fusedbn._C":
            raise ImportError("hidden by the test")
sys.meta_path.insert(0, Hide())
import torch, fusedbn
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    m = fusedbn.FusedBNReLU(3)
    x = torch.randn(4, 3, 5)
    y = m(x)
    m(x)
expected = torch.relu(torch.nn.functional.batch_norm(x, None, None, training=True))
torch.testing.assert_close(y, expected)
with fusedbn.use_backend("cpu"):
    try:
        m(x)
    except RuntimeError as error:
        assert "fusedbn backend 'cpu' is not available" in str(error), error
    else:
        raise AssertionError("backend 'cpu' ran without its extension")
print(len([w for w in caught if "reference backend" in str(w.message)]))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


# --- modules ------------------------------------------------------------------------------

def test_parameters_and_buffers_are_those_of_batch_norm():
    fused, bn = fusedbn.FusedBNAct(5), nn.BatchNorm2d(5)
    assert [n for n, _ in fused.named_parameters()] == [n for n, _ in bn.named_parameters()]
    assert [n for n, _ in fused.named_buffers()] == [n for n, _ in bn.named_buffers()]
    for (name, ours), theirs in zip(fused.state_dict().items(), bn.state_dict().values()):
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, name
        assert torch.equal(ours, theirs), name
    assert isinstance(fused.weight, nn.Parameter) and isinstance(fused.bias, nn.Parameter)
    assert (fused.eps, fused.momentum, fused.affine, fused.track_running_stats) == (1e-5, 0.1, True, True)
    assert fused.activation == "relu"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_device_and_dtype_arguments(dtype):
    fused = fusedbn.FusedBNAct(3, dtype=dtype, device="meta")
    assert fused.weight.dtype == fused.bias.dtype == fused.running_mean.dtype == fused.running_var.dtype == dtype
    assert fused.num_batches_tracked.dtype == torch.long
    assert all(t.device.type == "meta" for t in fused.state_dict().values())


@pytest.mark.parametrize("options", [dict(affine=False), dict(track_running_stats=False), dict(momentum=None)],
                         ids=["no_affine", "no_running_stats", "momentum_none"])
def test_options_give_the_same_state_as_batch_norm(options):
    fused, bn = fusedbn.FusedBNAct(4, **options), nn.BatchNorm2d(4, **options)
    assert fused.state_dict().keys() == bn.state_dict().keys()
    assert (fused.weight is None) == (bn.weight is None)
    assert (fused.running_mean is None) == (bn.running_mean is None)
    assert fused.momentum == bn.momentum


@pytest.mark.parametrize("dim", [2, 3, 4, 5])
def test_batch_norm_state_dict_loads_strictly_and_back(dim, backend, device):
    bn = randomize(BATCH_NORMS[dim](6, device=device))
    bn.num_batches_tracked.fill_(7)
    fused = fusedbn.FusedBNAct(6, activation="identity", device=device)
    fused.load_state_dict(bn.state_dict(), strict=True)
    for name, value in bn.state_dict().items():
        assert torch.equal(fused.state_dict()[name], value), name
    # and back, into a fresh BatchNorm, after the fused module trained a step
    x = make_input((4, 6, 3, 2, 2)[:dim], torch.float32, "contiguous", device)
    fused(x)
    restored = BATCH_NORMS[dim](6, device=device)
    restored.load_state_dict(fused.state_dict(), strict=True)
    assert restored.num_batches_tracked.item() == 8
    bn.train()(x)
    for name, value in bn.state_dict().items():
        assert_matches(restored.state_dict()[name].double(), value.double(), torch.float32, name)
    assert_matches(fused.eval()(x), restored.eval()(x).double(), torch.float32, "eval output after reload")


def test_num_batches_tracked_counts_training_calls_only(backend, device):
    fused = fusedbn.FusedBNReLU(3, device=device)
    x = torch.randn(4, 3, 2, device=device)
    for _ in range(3):
        fused(x)
    fused.eval()(x)
    assert fused.num_batches_tracked.item() == 3


# --- from_modules -------------------------------------------------------------------------

FROM_MODULES = [
    pytest.param(nn.BatchNorm1d, (8, 5), nn.ReLU(), id="bn1d-relu"),
    pytest.param(nn.BatchNorm1d, (8, 5, 4), nn.LeakyReLU(0.3), id="bn1d-leaky"),
    pytest.param(nn.BatchNorm2d, (4, 5, 3, 3), nn.ELU(0.4), id="bn2d-elu"),
    pytest.param(nn.BatchNorm2d, (4, 5, 3, 3), nn.ReLU(inplace=True), id="bn2d-relu_inplace"),
    pytest.param(nn.BatchNorm3d, (2, 5, 3, 2, 3), nn.Identity(), id="bn3d-identity"),
    pytest.param(nn.BatchNorm2d, (4, 5, 3, 3), None, id="bn2d-none"),
]


@pytest.mark.parametrize("bn_class, shape, act", FROM_MODULES)
def test_from_modules_computes_act_of_bn(bn_class, shape, act, backend, device):
    bn = randomize(bn_class(5, momentum=0.2, eps=1e-3, device=device, dtype=torch.float64))
    pair = nn.Sequential(bn, act if act is not None else nn.Identity())
    reference = copy.deepcopy(pair)
    fused = fusedbn.FusedBNAct.from_modules(bn, act)
    assert fused.training and fused.eps == 1e-3 and fused.momentum == 0.2
    for training in (True, True, False):
        fused.train(training)
        reference.train(training)
        x = make_input(shape, torch.float64, "contiguous", device)
        assert_matches(fused(x), reference(x.clone()), torch.float64, "output")
        # the running statistics that change are the BatchNorm's own
        assert_matches(bn.running_mean, reference[0].running_mean, torch.float64, "running_mean")
        assert_matches(bn.running_var, reference[0].running_var, torch.float64, "running_var")
        assert bn.num_batches_tracked.item() == reference[0].num_batches_tracked.item()


def test_from_modules_shares_parameters_and_buffers(backend, device):
    bn = nn.BatchNorm2d(4, device=device)
    fused = fusedbn.FusedBNAct.from_modules(bn, nn.LeakyReLU(0.25))
    assert (fused.activation, fused.negative_slope) == ("leaky_relu", 0.25)
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        assert getattr(fused, name) is getattr(bn, name), name
    optimizer = torch.optim.SGD(fused.parameters(), lr=0.5)
    before = bn.weight.detach().clone(), bn.bias.detach().clone()
    fused(torch.randn(3, 4, 5, 5, device=device)).pow(2).sum().backward()
    optimizer.step()
    assert not torch.equal(bn.weight, before[0]) and not torch.equal(bn.bias, before[1])
    assert bn.num_batches_tracked.item() == 1


@pytest.mark.parametrize("options", [dict(affine=False), dict(track_running_stats=False), dict(momentum=None)],
                         ids=["no_affine", "no_running_stats", "momentum_none"])
def test_from_modules_keeps_the_options(options, backend, device):
    bn = nn.BatchNorm2d(3, device=device, **options).eval()
    fused = fusedbn.FusedBNAct.from_modules(bn, nn.ELU(0.5))
    assert not fused.training
    assert (fused.affine, fused.track_running_stats, fused.momentum) == (bn.affine, bn.track_running_stats, bn.momentum)
    assert fused.alpha == 0.5
    x = torch.randn(4, 3, 2, 2, device=device)
    reference = copy.deepcopy(nn.Sequential(bn, nn.ELU(0.5)))
    for training in (True, False):
        torch.testing.assert_close(fused.train(training)(x), reference.train(training)(x))
    assert fused.state_dict().keys() == bn.state_dict().keys()


def test_from_modules_rejects_what_it_cannot_fuse():
    with pytest.raises(TypeError, match="unsupported activation module GELU"):
        fusedbn.FusedBNAct.from_modules(nn.BatchNorm2d(3), nn.GELU())
    with pytest.raises(TypeError, match="needs an nn.BatchNorm1d/2d/3d, got LayerNorm"):
        fusedbn.FusedBNAct.from_modules(nn.LayerNorm(3), nn.ReLU())
    with pytest.raises(TypeError, match="got SyncBatchNorm"):
        fusedbn.FusedBNAct.from_modules(nn.SyncBatchNorm(3), nn.ReLU())
    with pytest.raises(TypeError, match="FusedBNReLU.from_modules needs nn.ReLU, got ELU"):
        fusedbn.FusedBNReLU.from_modules(nn.BatchNorm2d(3), nn.ELU())


def test_fused_bn_relu(backend, device):
    fused = fusedbn.FusedBNReLU(4, momentum=0.3, device=device, dtype=torch.float64)
    assert fused.activation == "relu" and fused.momentum == 0.3
    randomize(fused)
    reference = nn.Sequential(nn.BatchNorm2d(4, momentum=0.3, device=device, dtype=torch.float64), nn.ReLU())
    reference[0].load_state_dict(fused.state_dict(), strict=True)
    for training in (True, False):
        x = make_input((3, 4, 5, 5), torch.float64, "channels_last", device)
        assert_matches(fused.train(training)(x), reference.train(training)(x), torch.float64, "output")
    assert_matches(fused.running_var, reference[0].running_var, torch.float64, "running_var")
    from_pair = fusedbn.FusedBNReLU.from_modules(nn.BatchNorm2d(4), nn.ReLU())
    assert type(from_pair) is fusedbn.FusedBNReLU and from_pair.activation == "relu"


# --- repr ---------------------------------------------------------------------------------

REPRS = [
    (lambda: fusedbn.FusedBNReLU(8), lambda: nn.BatchNorm2d(8), "activation='relu'"),
    (lambda: fusedbn.FusedBNAct(3, activation="leaky_relu", negative_slope=0.2), lambda: nn.BatchNorm2d(3),
     "activation='leaky_relu', negative_slope=0.2"),
    (lambda: fusedbn.FusedBNAct(3, momentum=None, affine=False, activation="elu", alpha=0.5),
     lambda: nn.BatchNorm2d(3, momentum=None, affine=False), "activation='elu', alpha=0.5"),
    (lambda: fusedbn.FusedBNAct(3, eps=1e-3, activation="identity"), lambda: nn.BatchNorm2d(3, eps=1e-3),
     "activation='identity'"),
]


@pytest.mark.parametrize("make, make_bn, activation", REPRS, ids=["relu", "leaky_relu", "elu", "identity"])
def test_repr_is_batch_norm_s_plus_the_activation(make, make_bn, activation):
    """BatchNorm's own extra_repr, then the activation and its parameter."""
    module, bn = make(), make_bn()
    assert repr(module) == f"{type(module).__name__}({bn.extra_repr()}, {activation})"
