"""fusedbn.convert: which pairs it fuses, which it leaves, and that the model computes the same.

Every converted model is compared with an unconverted deep copy of itself (outputs, gradients,
running statistics after a training step), in float64, on each CPU backend available.
"""

import copy

import pytest
import torch
import torchvision
from torch import nn

import fusedbn
from fusedbn.convert import SharedActivation

BACKENDS = ["reference"] + (["cpu"] if fusedbn.dispatch.has_extension("_C") else [])

ACTIVATIONS = [nn.ReLU(), nn.ReLU(inplace=True), nn.LeakyReLU(0.2), nn.LeakyReLU(0.2, inplace=True),
               nn.ELU(0.7), nn.ELU(0.7, inplace=True)]


@pytest.fixture(params=BACKENDS)
def backend(request):
    with fusedbn.use_backend(request.param):
        yield request.param


def prepared(model):
    """``model`` in float64 with random BatchNorm parameters and statistics, and a copy of it."""
    model = model.double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.normal_()
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(5)
    return model, copy.deepcopy(model)


def assert_same(model, reference, shape):
    """Same outputs and gradients in eval and train mode, and the same statistics afterwards."""
    for training in (False, True):
        x = torch.randn(shape, dtype=torch.float64)
        results = []
        for m in (model, reference):
            m.train(training).zero_grad(set_to_none=True)
            xi = x.clone().requires_grad_()
            y = m(xi)
            y.backward(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape))
            grads = {name: p.grad for name, p in m.named_parameters()}
            results.append((y, xi.grad, grads, m.state_dict()))
        torch.testing.assert_close(results[0], results[1])


def count(model, kind):
    return sum(type(m) is kind for m in model.modules())


class Block(nn.Module):
    """conv → bn → act, the activation called as an attribute."""

    def __init__(self, act):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), act

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Residual(nn.Module):
    """act after bn1 and again after a residual add: one activation module, two call sites."""

    def __init__(self, act):
        super().__init__()
        self.conv1, self.bn1, self.act = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), act
        self.conv2, self.bn2 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x):
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + x)


def test_sequential_pairs_are_fused_in_place(backend):
    model, reference = prepared(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                              nn.Conv2d(4, 4, 1),
                                              nn.BatchNorm2d(4), nn.LeakyReLU(0.2, inplace=True)))
    assert fusedbn.convert(model) is model
    assert [type(m) for m in model] == [nn.Conv2d, fusedbn.FusedBNAct, nn.Identity] * 2
    assert model.state_dict().keys() == reference.state_dict().keys()
    assert model[4].negative_slope == 0.2
    assert_same(model, reference, (2, 3, 6, 6))


@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
def test_attribute_pair_is_fused_with_its_parameters(act, backend):
    model, reference = prepared(Block(copy.deepcopy(act)))
    fusedbn.convert(model)
    assert type(model.bn) is fusedbn.FusedBNAct and type(model.act) is nn.Identity
    name, kwargs = fusedbn.modules.activation_of(act)
    assert model.bn.activation == name
    assert all(getattr(model.bn, key) == value for key, value in kwargs.items())
    assert_same(model, reference, (2, 3, 6, 6))


@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
def test_shared_activation_keeps_applying_after_the_add(act, backend):
    model, reference = prepared(Residual(copy.deepcopy(act)))
    fusedbn.convert(model)
    assert type(model.bn1) is fusedbn.FusedBNAct and type(model.bn2) is nn.BatchNorm2d
    assert type(model.act) is SharedActivation
    # LeakyReLU and ELU are not idempotent: a double application at bn1 would show here.
    assert_same(model, reference, (2, 3, 5, 5))


class ResidualBN(nn.Module):
    """The BN output feeds the activation and the residual add."""

    def __init__(self):
        super().__init__()
        self.bn, self.relu = nn.BatchNorm2d(3), nn.ReLU()

    def forward(self, x):
        y = self.bn(x)
        return self.relu(y) + y


class BNCalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn, self.relu = nn.BatchNorm2d(3), nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(x)) + self.bn(x * 2)


class TrainingBranch(nn.Module):
    """Fusable in training mode only: fx would fix the branch at trace time."""

    def __init__(self):
        super().__init__()
        self.bn, self.relu = nn.BatchNorm2d(3), nn.ReLU()

    def forward(self, x):
        y = self.bn(x)
        return self.relu(y) if self.training else self.relu(y) - y


class AliasedActivation(nn.Module):
    """One LeakyReLU under two names: fx names both calls after the first one."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.act1 = self.act2 = nn.LeakyReLU(0.2)

    def forward(self, x):
        return self.act2(self.bn(x)) + self.act1(x)


class ReversedSequential(nn.Sequential):
    def forward(self, x):
        for m in reversed(self):
            x = m(x)
        return x


def hooked_bn():
    bn = nn.BatchNorm2d(3)
    bn.register_forward_hook(lambda module, args, output: output * 2)
    return nn.Sequential(bn, nn.ReLU())


UNFUSABLE = {
    "residual": ResidualBN,
    "lone_bn": lambda: nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)),
    "unsupported_activation": lambda: nn.Sequential(nn.BatchNorm2d(3), nn.GELU()),
    "activation_first": lambda: nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3)),
    "bn_called_twice": BNCalledTwice,
    "training_branch": TrainingBranch,
    "aliased_activation": AliasedActivation,
    "sequential_subclass": lambda: ReversedSequential(nn.BatchNorm2d(3), nn.ReLU()),
    "hooked_bn": hooked_bn,
}


@pytest.mark.parametrize("make", UNFUSABLE.values(), ids=UNFUSABLE.keys())
def test_unprovable_pairs_are_left_alone(make):
    model, reference = prepared(make())
    fusedbn.convert(model)
    assert [type(m) for m in model.modules()] == [type(m) for m in reference.modules()]
    assert_same(model, reference, (2, 3, 4, 4))


def test_sync_batch_norm_is_left_alone():
    model = fusedbn.convert(nn.Sequential(nn.SyncBatchNorm(3), nn.ReLU()))
    assert [type(m) for m in model] == [nn.SyncBatchNorm, nn.ReLU]


class Untraceable(nn.Module):
    """Data-dependent control flow at the top; a Sequential pair and a traceable block inside."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.ReLU())
        self.block = Block(nn.ELU())
        self.bn, self.relu = nn.BatchNorm2d(4), nn.ReLU()

    def forward(self, x):
        x = self.stem(x)
        if x.sum() > 0:
            x = -x
        return self.relu(self.bn(self.block(x)))


def test_untraceable_model_still_gets_its_sequential_and_block_pairs_fused(backend):
    model, reference = prepared(Untraceable())
    fusedbn.convert(model)
    assert type(model.stem[1]) is fusedbn.FusedBNAct and type(model.stem[2]) is nn.Identity
    assert type(model.block.bn) is fusedbn.FusedBNAct and model.block.bn.activation == "elu"
    assert type(model.bn) is nn.BatchNorm2d  # called by the forward that did not trace
    assert_same(model, reference, (2, 3, 6, 6))


def test_fused_module_shares_the_batch_norm_state_and_mode():
    model = Block(nn.ReLU()).eval()
    bn = model.bn
    fusedbn.convert(model)
    assert not model.bn.training and not model.act.training
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        assert getattr(model.bn, name) is getattr(bn, name)
    kinds = [type(m) for m in model.modules()]
    fusedbn.convert(model)  # converting again finds nothing left to fuse
    assert [type(m) for m in model.modules()] == kinds


@pytest.mark.parametrize("arch, fused, unfused", [("resnet18", 9, 11), ("resnet50", 33, 20)])
def test_torchvision_resnet(arch, fused, unfused, backend):
    model, reference = prepared(getattr(torchvision.models, arch)(weights=None))
    fusedbn.convert(model)
    assert count(model, fusedbn.FusedBNAct) == fused and count(model, nn.BatchNorm2d) == unfused
    assert type(model.relu) is nn.Identity  # the stem's ReLU is called once, after bn1
    blocks = [block for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for block in layer]
    last_bn = "bn2" if arch == "resnet18" else "bn3"
    for block in blocks:
        assert type(getattr(block, last_bn)) is nn.BatchNorm2d  # it feeds the residual add
        assert type(block.relu) is SharedActivation  # still applied after the add
    assert model.state_dict().keys() == reference.state_dict().keys()
    assert_same(model, reference, (2, 3, 64, 64))
