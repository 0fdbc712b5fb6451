"""The (N, C, H, W) shapes the suite measures, and the ``--shapes`` syntax that selects them.

A selection is a comma-separated list of items, each either an explicit shape ``32x64x112x112``
or a named set:

- ``foundation``: the three CPU shapes the first speed script measured;
- ``resnet50``: every distinct input shape of the BatchNorm layers of torchvision's ResNet-50
  at batch 32 and 224×224, found by running the model on the meta device with forward hooks
  (no memory, no weights, no arithmetic); ``resnet50@8`` is the same at batch 8;
- ``default``: ``resnet50,foundation`` on a GPU; ``foundation,resnet50@8`` on the CPU, where the
  batch-32 set would take well over the 15-minute budget on two cores;
- ``quick``: one small shape, for ``--quick`` and the test.
"""

import collections
import re

import torch
from torch import nn

FOUNDATION = [(32, 64, 112, 112), (32, 256, 28, 28), (64, 256, 14, 14)]
QUICK = [(8, 64, 28, 28)]
DEFAULT = {"cuda": "resnet50,foundation", "cpu": "foundation,resnet50@8"}


def resnet50_batch_norm_shapes(batch=32, size=224):
    """{(N, C, H, W): number of BatchNorm layers that see it} for torchvision's resnet50, in
    the order the forward first meets them."""
    import torchvision  # only this named set needs it

    seen = collections.Counter()
    with torch.device("meta"):
        model = torchvision.models.resnet50(weights=None)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.register_forward_hook(lambda m, args, out: seen.update([tuple(args[0].shape)]))
        model(torch.empty(batch, 3, size, size))
    return dict(seen)


def _named(name):
    """[(shape, origin, layers)] for a named set, or None if ``name`` is not one."""
    if name == "foundation":
        return [(s, "foundation", None) for s in FOUNDATION]
    if name == "quick":
        return [(s, "quick", None) for s in QUICK]
    match = re.fullmatch(r"resnet50(?:@(\d+))?", name)
    if match:
        batch = int(match.group(1) or 32)
        counts = resnet50_batch_norm_shapes(batch)
        return [(s, f"resnet50@{batch}", n) for s, n in counts.items()]
    return None


def parse_shapes(spec, device_type):
    """The shapes ``spec`` names, each once, in order: a list of dicts with the shape, the set
    (or sets) it came from and, for ResNet-50, how many BN layers see it."""
    found = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if item == "default":
            entries = [e for name in DEFAULT[device_type].split(",") for e in _named(name)]
        else:
            entries = _named(item)
        if entries is None:
            dims = item.lower().split("x")
            if len(dims) != 4 or not all(d.isdigit() and int(d) > 0 for d in dims):
                raise ValueError(f"--shapes: {item!r} is neither NxCxHxW nor one of "
                                 "foundation, resnet50, resnet50@BATCH, default, quick")
            entries = [(tuple(int(d) for d in dims), "explicit", None)]
        for shape, origin, layers in entries:
            entry = found.setdefault(shape, {"shape": shape, "origins": [], "resnet50_layers": None})
            if origin not in entry["origins"]:
                entry["origins"].append(origin)
            if layers is not None:
                entry["resnet50_layers"] = layers
    return list(found.values())


def label(shape):
    return "x".join(str(d) for d in shape)
