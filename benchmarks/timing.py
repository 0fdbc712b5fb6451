"""Timing: interleaved rounds, every sample kept, best and median with their spread.

All functions of one case run once per round, in a rotated order, so that a slow spell of a
shared machine (or a GPU clock change) hits every contender alike instead of one of them.

- CPU: wall time of each call (``time.perf_counter``), as the foundation's speed script did.
- GPU: CUDA events around each call, after the L2 cache is overwritten, so that a tensor
  smaller than L2 is not read from cache by the next call (a training step never sees its
  input in L2 either).
"""

import statistics
import time

import torch

L2_FLUSH_BYTES = 256 * 1024 * 1024  # larger than any current GPU's L2


def summarize(samples):
    """Best, median, quartiles and range of a list of seconds, in milliseconds."""
    ms = sorted(s * 1e3 for s in samples)
    if len(ms) >= 2:
        q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    else:
        q1 = q3 = ms[0]
    return {"best": ms[0], "median": statistics.median(ms), "q1": q1, "q3": q3,
            "min": ms[0], "max": ms[-1], "n": len(ms), "samples": [round(v, 6) for v in ms]}


class Timer:
    """Times a dict of zero-argument functions on one device."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device) if self.cuda else None

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def measure(self, functions, rounds, warmup=1):
        """{name: summarize(seconds per call)} over ``rounds`` interleaved rounds."""
        names = list(functions)
        for _ in range(warmup):
            for name in names:
                functions[name]()
        self.sync()
        samples = {name: [] for name in names}
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            (self._round_cuda if self.cuda else self._round_cpu)(functions, order, samples)
        return {name: summarize(samples[name]) for name in names}

    def _round_cpu(self, functions, order, samples):
        for name in order:
            start = time.perf_counter()
            functions[name]()
            samples[name].append(time.perf_counter() - start)

    def _round_cuda(self, functions, order, samples):
        events = []
        for name in order:
            self._flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            functions[name]()
            end.record()
            events.append((name, start, end))
        self.sync()
        for name, start, end in events:
            samples[name].append(start.elapsed_time(end) / 1e3)
