"""CPU speed of fusedbn against eager PyTorch, in clone-equivalents.

Each figure is a time divided by the time of ``x.clone()`` on the same tensor (one read, one
write, one allocation: the bandwidth ceiling), measured in interleaved rounds, best of each.

    .venv/bin/python -m benchmarks.cpu_speed [--threads 2] [--rounds 15]
"""

import argparse
import time

import torch
from torch import nn

import fusedbn

SHAPES = [(32, 64, 112, 112), (32, 256, 28, 28), (64, 256, 14, 14)]
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def cases(module, x, grad):
    """The three timed modes for one module: training forward, forward+backward, eval forward."""
    x_grad = x.detach().clone().requires_grad_()

    def train_forward():
        module.train()
        with torch.no_grad():
            module(x)

    def forward_backward():
        module.train()
        module(x_grad).backward(grad)

    def eval_forward():
        module.eval()
        with torch.no_grad():
            module(x)

    return {"train_fwd": train_forward, "train_fwd_bwd": forward_backward, "eval_fwd": eval_forward}


def best_times(functions, rounds):
    """Best wall time of each function over `rounds` interleaved rounds (after one warm-up)."""
    best = {name: float("inf") for name in functions}
    for name, f in functions.items():
        f()
    for _ in range(rounds):
        for name, f in functions.items():
            start = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def measure(shape, layout, rounds):
    """Clone-equivalents of fusedbn and eager for one shape and layout."""
    x = torch.randn(shape).contiguous(memory_format=LAYOUTS[layout])
    grad = torch.randn(shape).contiguous(memory_format=LAYOUTS[layout])
    fused = fusedbn.FusedBNReLU(shape[1])
    eager = nn.Sequential(nn.BatchNorm2d(shape[1]), nn.ReLU())
    functions = {"clone": lambda: x.clone(memory_format=torch.preserve_format)}
    for label, module in (("fusedbn", fused), ("eager", eager)):
        for mode, f in cases(module, x, grad).items():
            functions[f"{label}/{mode}"] = f
    best = best_times(functions, rounds)
    return {name: t / best["clone"] for name, t in best.items() if name != "clone"}, best["clone"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fusedbn.set_backend("cpu")
    modes = ["train_fwd", "train_fwd_bwd", "eval_fwd"]
    print(f"clone-equivalents, float32, {args.threads} threads, best of {args.rounds} interleaved rounds")
    print(f"{'shape':<20} {'layout':<14} {'clone ms':>8}  " + "  ".join(f"{m + ' fused/eager':>26}" for m in modes))
    worst = {m: 0.0 for m in modes}
    for shape in SHAPES:
        for layout in LAYOUTS:
            ratios, clone = measure(shape, layout, args.rounds)
            cells = [f"{ratios['fusedbn/' + m]:>12.2f} / {ratios['eager/' + m]:<11.2f}" for m in modes]
            print(f"{str(shape):<20} {layout:<14} {clone * 1e3:>8.2f}  " + "  ".join(cells))
            for m in modes:
                worst[m] = max(worst[m], ratios["fusedbn/" + m])
    print("worst fusedbn: " + ", ".join(f"{m} {worst[m]:.2f}" for m in modes))


if __name__ == "__main__":
    main()
