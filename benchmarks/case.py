"""One case of the suite: one shape, layout and dtype, every contender and mode.

In order: build the contenders; check each against eager (a contender that fails is not
timed: a time for a wrong result means nothing); measure what they save for backward; model
and count the traffic; time all (contender, mode) pairs and x.clone() in interleaved rounds;
derive the ratios and the pass floor (benchmarks/pass_floor.py).
"""

import zlib

import torch
from torch import nn

from . import pass_floor, traffic_model
from .contenders import Absent, build, mode_functions
from .correctness import Checker, keep_off_the_kink
from .memory import peak_bytes, saved_for_backward
from .shapes import label

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def make_input(shape, dtype, layout, device, generator):
    """Random values with a different mean and scale per channel, in ``layout``."""
    per_channel = (1, shape[1], 1, 1)
    scale = torch.rand(per_channel, generator=generator) * 1.5 + 0.5
    shift = torch.randn(per_channel, generator=generator) * 2
    values = torch.randn(shape, generator=generator) * scale + shift
    return values.to(device=device, dtype=dtype).contiguous(memory_format=LAYOUTS[layout])


def make_batch_norm(channels, device, generator):
    """An nn.BatchNorm2d (float32 parameters, as under mixed precision) with random affine
    parameters and running statistics, so that no term of the formulas is trivially 0 or 1."""
    bn = nn.BatchNorm2d(channels, device=device)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
        bn.bias.copy_(torch.randn(channels, generator=generator))
        bn.running_mean.copy_(torch.randn(channels, generator=generator))
        bn.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
    return bn


def _check_all(names, bn, x, dy, broken):
    """{name: status dict} and {name: Contender} of those that match eager."""
    checker, status, passed = Checker(bn, x, dy), {}, {}
    for name in names:
        if name in broken:  # failed in an earlier case in a way that will not change
            status[name] = {"status": "absent", "reason": broken[name]}
            continue
        try:
            contender = build(name, bn, x)
            problems = checker.check(contender)
        except Absent as why:
            status[name] = {"status": "absent", "reason": str(why)}
            continue
        except Exception as error:  # report, never crash: a contender may break on any machine
            reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
            if name == "compile":  # a compiler that fails once fails for every case: absent
                broken[name] = f"torch.compile failed: {reason}"
                status[name] = {"status": "absent", "reason": broken[name]}
            else:
                status[name] = {"status": "error", "reason": reason}
            continue
        note = {"note": contender.note} if contender.note else {}
        if problems:
            status[name] = {"status": "mismatch", "problems": problems, **note}
        else:
            status[name] = {"status": "ok", **note}
            passed[name] = contender
    return status, passed


def _memory(passed, x, dy, device):
    out = {}
    for name, contender in passed.items():
        try:
            figures = saved_for_backward(contender.module, x)
        except Exception as error:  # e.g. saved-tensor hooks under torch.compile
            figures = {"error": f"{type(error).__name__}: {error}"}
        figures["peak_fwd_bwd_bytes"] = peak_bytes(mode_functions(contender.module, x, dy)["train_fwd_bwd"], device)
        out[name] = figures
    return out


def _traffic(shape, dtype, layout, modes, bandwidth, count):
    out = {}
    for mode in modes:
        entry = {"model": traffic_model.modelled(shape, dtype.itemsize, mode, bandwidth),
                 "counted": None, "counted_note": traffic_model.counted_unavailable()}
        if count and entry["counted_note"] is None:
            entry["counted"] = traffic_model.counted(shape, dtype, layout, mode)
            entry["counted_note"] = "fusedbn's CUDA kernels on the SIMT harness: distinct 32-byte sectors"
        elif entry["counted_note"] is None:
            entry["counted_note"] = "counted traffic: not requested (--no-counted-traffic)"
        out[mode] = entry
    return out


def _figures(times, name, mode, clone, traffic, gpu, peak_tbs):
    """Ratios (from best times, and from medians), clone-equivalents and, on a GPU, GB/s."""
    t = times[f"{name}/{mode}"]
    fig = {"ms": t, "clone_equivalents": t["best"] / clone["best"],
           "median_clone_equivalents": t["median"] / clone["median"]}
    for other in ("eager", "compile"):
        o = times.get(f"{other}/{mode}")
        fig[f"ratio_to_{other}"] = t["best"] / o["best"] if o else None
        fig[f"median_ratio_to_{other}"] = t["median"] / o["median"] if o else None
    if gpu:  # eager moves what the model says; compile's own traffic is unknown
        counted = traffic["counted"]["sector_bytes"] if traffic["counted"] else None
        own = {"fusedbn": counted or traffic["model"]["fusedbn"]["bytes"],
               "eager": traffic["model"]["eager"]["bytes"]}.get(name)
        useful = traffic["model"]["fusedbn"]["bytes"]
        fig["gbps"] = own / t["best"] / 1e6 if own else None
        fig["useful_gbps"] = useful / t["best"] / 1e6
        if peak_tbs:
            fig["peak_fraction"] = fig["gbps"] / (peak_tbs * 1e3) if own else None
            fig["useful_peak_fraction"] = fig["useful_gbps"] / (peak_tbs * 1e3)
    return fig


def measure(entry, layout, dtype, settings, timer, broken):
    """The record of one case: see the module docstring. ``broken`` persists across cases."""
    shape, device = entry["shape"], settings["device"]
    torch._dynamo.reset()  # compile once per case, and never hit dynamo's recompile limit
    generator = torch.Generator().manual_seed(zlib.crc32(f"{shape}{layout}{dtype}".encode()))
    x = make_input(shape, dtype, layout, device, generator)
    dy = make_input(shape, dtype, layout, device, generator)
    bn = make_batch_norm(shape[1], device, generator)
    keep_off_the_kink(x, bn)
    status, passed = _check_all(settings["contenders"], bn, x, dy, broken)
    record = {"shape": list(shape), "label": label(shape), "origins": entry["origins"],
              "resnet50_layers": entry["resnet50_layers"], "layout": layout,
              "dtype": str(dtype).removeprefix("torch."), "contenders": status,
              "failed": status.get("fusedbn", {}).get("status") in ("mismatch", "error")}
    record["memory"] = _memory(passed, x, dy, device)
    traffic = _traffic(shape, dtype, layout, settings["modes"], settings["bandwidth_tbs"],
                       settings["count_traffic"])
    functions = {"clone": lambda: x.clone(memory_format=torch.preserve_format), **pass_floor.functions(x, dy)}
    for name, contender in passed.items():
        for mode, function in mode_functions(contender.module, x, dy).items():
            if mode in settings["modes"]:
                functions[f"{name}/{mode}"] = function
    times = timer.measure(functions, settings["rounds"], settings["warmup"])
    clone = times["clone"]
    record["clone_ms"] = clone
    record["floor_ms"] = {name.removeprefix("floor/"): t for name, t in times.items() if name.startswith("floor/")}
    record["modes"] = {}
    for mode in settings["modes"]:
        floor_ms = pass_floor.floor(times, mode)
        record["modes"][mode] = {
            "traffic": traffic[mode],
            "pass_floor": {"ms": floor_ms, "clone_equivalents": floor_ms / clone["best"]},
            "contenders": {name: _figures(times, name, mode, clone, traffic[mode], settings["gpu"],
                                          settings["peak_tbs"]) for name in passed},
        }
        if settings["gpu"]:
            gbps = traffic[mode]["model"]["clone"]["bytes"] / clone["best"] / 1e6
            record["modes"][mode]["clone_gbps"] = gbps
            record["modes"][mode]["clone_peak_fraction"] = gbps / (settings["peak_tbs"] * 1e3) if settings["peak_tbs"] else None
    return record
