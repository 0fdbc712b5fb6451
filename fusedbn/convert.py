"""fusedbn.convert: replace BatchNorm→activation pairs inside a model with FusedBNAct.

A pair is fused only where convert can prove that the BatchNorm's output feeds that one
activation and nothing else. Two rules find such pairs:

1. Sequential: an ``nn.BatchNorm1d/2d/3d`` at index i of an ``nn.Sequential`` (whose forward
   is not overridden) followed by an ``nn.ReLU``, ``nn.LeakyReLU`` or ``nn.ELU`` at i+1. Slot
   i becomes the fused module and slot i+1 an ``nn.Identity``; the other indices do not move.
2. Traced: ``torch.fx`` traces a module's forward, once in training and once in eval mode
   (fx fixes ``if self.training:`` branches at trace time). A BatchNorm called at exactly one
   place, whose output has exactly one user, a call of a supported activation module, is fused
   in both graphs or in neither. The BatchNorm attribute becomes the fused module. The
   activation call at a fused site must become a no-op while its other calls keep working:
   - an activation called only at fused sites becomes ``nn.Identity``;
   - an activation also called elsewhere (torchvision's BasicBlock applies one ``self.relu``
     after bn1, after bn2 and after the residual add) becomes a ``SharedActivation``, which
     passes through unchanged exactly the tensors its fused modules just returned and applies
     the activation to anything else. So no call costs an extra pass, in-place activations
     never write over a fused output that autograd saved, and LeakyReLU/ELU (for which
     act(act(z)) != act(z)) are handled the same way as ReLU.
   If a module does not trace, its children are traced one by one, so an untraceable top level
   with traceable blocks still gets its blocks fused.

Both rules rely on a module's children being called only by that module's own forward; a
module registered under two names, or carrying hooks, is left alone. The user's module classes
and forward code are kept; fused modules share the BatchNorm's parameters and buffers (state_dict
keys do not change) and keep its training mode. Only exact nn.BatchNorm1d/2d/3d (not
subclasses, not SyncBatchNorm) and exact nn.ReLU/LeakyReLU/ELU are converted: a BatchNorm before
an nn.Identity gains nothing from fusing.
"""

import collections
import weakref

import torch.fx
from torch import nn

from .modules import FusedBNAct

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU)


class SharedActivation(nn.Module):
    """An activation module whose call after some BatchNorms was fused into them.

    Given the output of one of those FusedBNAct modules (which already applied the activation)
    it returns it as is, once; any other input goes through the activation.
    """

    def __init__(self, act):
        super().__init__()
        self.act = act
        self._fused_outputs = []  # weak references: a fused output nobody consumes must die

    def absorb(self, fused):
        fused.register_forward_hook(self._remember)

    def _remember(self, module, args, output):
        self._fused_outputs = [ref for ref in self._fused_outputs if ref() is not None]
        self._fused_outputs.append(weakref.ref(output))

    def forward(self, input):
        for i, ref in enumerate(self._fused_outputs):
            if ref() is input:
                del self._fused_outputs[i]
                return input
        return self.act(input)

    def __getstate__(self):  # weak references do not pickle; only a forward in flight holds any
        return {**super().__getstate__(), "_fused_outputs": []}


def convert(model):
    """Replaces the BatchNorm→activation pairs of ``model`` by FusedBNAct, in place; returns it."""
    _fuse_sequentials(model)
    _fuse_traced(model)
    return model


def _has_hooks(module):
    return bool(module._forward_hooks or module._forward_pre_hooks
                or module._backward_hooks or module._backward_pre_hooks)


def _is_pair(bn, act):
    return (type(bn) in _BATCH_NORMS and type(act) in _ACTIVATIONS
            and not _has_hooks(bn) and not _has_hooks(act))


def _fuse_sequentials(model):
    for seq in list(model.modules()):
        if not isinstance(seq, nn.Sequential) or type(seq).forward is not nn.Sequential.forward:
            continue
        names = list(seq._modules)
        for first, second in zip(names, names[1:]):
            bn, act = seq._modules[first], seq._modules[second]
            if _is_pair(bn, act):
                seq._modules[first] = FusedBNAct.from_modules(bn, act)
                seq._modules[second] = nn.Identity().train(act.training)


class _Tracer(torch.fx.Tracer):
    """The default tracer, plus: fusedbn's own modules are leaves (seen, not traced through)."""

    def is_leaf_module(self, m, module_qualified_name):
        return type(m).__module__.startswith("fusedbn.") or super().is_leaf_module(m, module_qualified_name)


def _fuse_traced(module):
    if not any(type(m) in _BATCH_NORMS for m in module.modules()):
        return
    try:
        graphs = _trace_in_both_modes(module)
    except Exception:  # symbolic tracing fails in many ways (control flow on tensors, ...)
        for child in module.children():
            _fuse_traced(child)
        return
    _fuse_pairs(module, graphs)


def _trace_in_both_modes(module):
    modes = {m: m.training for m in module.modules()}
    graphs = []
    try:
        for training in (True, False):
            for m in modes:  # the flag itself: a user's train() override may do more than set it
                m.training = training
            graphs.append(_Tracer().trace(module))
    finally:
        for m, training in modes.items():
            m.training = training
    return graphs


def _fusable_pairs(root, graph):
    """{(bn target, act target)} of the pairs this graph proves fusable; calls per target."""
    calls = collections.Counter(node.target for node in graph.nodes if node.op == "call_module")
    registered = collections.Counter(id(m) for _, m in root.named_modules(remove_duplicate=False))
    pairs = set()
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1 or len(node.users) != 1:
            continue
        (user,) = node.users
        if user.op != "call_module" or user.args != (node,) or user.kwargs:
            continue
        bn, act = root.get_submodule(node.target), root.get_submodule(user.target)
        if _is_pair(bn, act) and registered[id(bn)] == 1 and registered[id(act)] == 1:
            pairs.add((node.target, user.target))
    return pairs, calls


def _fuse_pairs(root, graphs):
    analyses = [_fusable_pairs(root, graph) for graph in graphs]
    pairs = set.intersection(*(pairs for pairs, _ in analyses))
    bns_of = collections.defaultdict(list)
    for bn_name, act_name in sorted(pairs):
        bns_of[act_name].append(bn_name)
    for act_name, bn_names in bns_of.items():
        act = root.get_submodule(act_name)
        only_fused_calls = all(calls[act_name] == len(bn_names) for _, calls in analyses)
        replacement = nn.Identity() if only_fused_calls else SharedActivation(act)
        for bn_name in bn_names:
            fused = FusedBNAct.from_modules(root.get_submodule(bn_name), act)
            if not only_fused_calls:
                replacement.absorb(fused)
            root.set_submodule(bn_name, fused)
        root.set_submodule(act_name, replacement.train(act.training))
