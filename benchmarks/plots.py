"""PNG plots of a run, written beside its JSON: per dtype, the ratios and the clone-equivalents
per shape (one panel per mode and layout); and the memory saved for backward per layer."""

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MiB = 1024 * 1024
CONTENDER_COLOURS = {"fusedbn": "tab:blue", "eager": "tab:orange", "compile": "tab:green", "apex": "tab:red",
                     "inplace_abn": "tab:purple"}
COLOURS = {**CONTENDER_COLOURS, "fusedbn / eager": "tab:orange", "fusedbn / compile": "tab:green"}


def _device_name(results):
    gpu = results["machine"]["gpu"]
    return gpu["name"] if gpu else f"CPU {results['machine']['cpu']}, {results['settings']['threads']} threads"


def _grid(results, dtype, series, title, ylabel, path, line=None, log=False):
    """One panel per (mode, layout); in each, grouped bars per shape, one bar per series.

    ``series(figures_of_mode) -> {label: (best value, median value) or None}``.
    """
    s = results["settings"]
    modes, layouts = s["modes"], s["layouts"]
    cases = [r for r in results["cases"] if r["dtype"] == dtype]
    labels = list(dict.fromkeys(r["label"] for r in cases))
    width = max(6.0, 0.55 * len(labels) + 2)
    fig, axes = plt.subplots(len(modes), len(layouts), figsize=(width * len(layouts), 3.2 * len(modes)),
                             squeeze=False, sharey="row")
    for i, mode in enumerate(modes):
        for j, layout in enumerate(layouts):
            ax = axes[i][j]
            by_label = {r["label"]: r["modes"][mode] for r in cases if r["layout"] == layout and mode in r["modes"]}
            names = list(dict.fromkeys(n for f in by_label.values() for n, v in series(f).items() if v))
            step = 0.8 / max(1, len(names))
            for k, name in enumerate(names):
                xs, best, median = [], [], []
                for x, label in enumerate(labels):
                    value = series(by_label[label]).get(name) if label in by_label else None
                    if value:
                        xs.append(x - 0.4 + step * (k + 0.5))
                        best.append(value[0])
                        median.append(value[1])
                ax.bar(xs, best, step, label=f"{name} (best)", color=COLOURS.get(name))
                ax.plot(xs, median, "k_", markersize=8, label="ratio of medians" if k == len(names) - 1 else None)
            if line is not None:
                ax.axhline(line, color="grey", linewidth=0.8, linestyle="--")
            ax.set_title(f"{mode}, {layout}", fontsize=10)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=7)
            if log:
                ax.set_yscale("log")
            if j == 0:
                ax.set_ylabel(ylabel)
            if names and i == j == 0:  # the same series in every panel
                ax.legend(fontsize=7)
    fig.suptitle(f"{title} — {_device_name(results)}, {dtype}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _ratios(figures):
    fused = figures["contenders"].get("fusedbn")
    if not fused:
        return {}
    return {f"fusedbn / {o}": (fused[f"ratio_to_{o}"], fused[f"median_ratio_to_{o}"])
            for o in ("eager", "compile") if fused[f"ratio_to_{o}"] is not None}


def _clone_equivalents(figures):
    return {name: (f["clone_equivalents"], f["median_clone_equivalents"])
            for name, f in figures["contenders"].items()}


def _memory(results, path):
    """Per shape, bytes in units of the input tensor's size (so shapes of any size compare),
    each bar labelled with its MiB."""
    s = results["settings"]
    rows = [r for r in results["cases"] if r["dtype"] == s["dtypes"][0] and r["layout"] == s["layouts"][0]]
    rows = [r for r in rows if "fusedbn" in r["memory"] and "eager" in r["memory"]]
    panels = [("saved_bytes", "saved for backward")]
    if s["gpu"]:
        panels.append(("peak_fwd_bwd_bytes", "peak of forward+backward"))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.0, 0.7 * len(rows) + 2) * len(panels), 4.4), squeeze=False)
    x = np.arange(len(rows))
    for ax, (key, what) in zip(axes[0], panels):
        names = [n for n in CONTENDER_COLOURS if all(r["memory"].get(n, {}).get(key) for r in rows)]
        step = 0.8 / len(names)
        for k, name in enumerate(names):
            sizes = [r["memory"][name][key] for r in rows]
            units = [b / (np.prod(r["shape"]) * _itemsize(r["dtype"])) for b, r in zip(sizes, rows)]
            bars = ax.bar(x - 0.4 + step * (k + 0.5), units, step, label=name, color=COLOURS[name])
            ax.bar_label(bars, [f"{b / MiB:.0f}" if b >= 10 * MiB else f"{b / MiB:.1f}" for b in sizes],
                         fontsize=6, padding=1)
        ax.set_xticks(x)
        ax.set_xticklabels([r["label"] for r in rows], rotation=35, ha="right", fontsize=7)
        ax.set_ylabel(f"{what}\n(in input-tensor sizes; labels: MiB)")
        ax.margins(y=0.12)
        ax.legend(fontsize=8)
    fig.suptitle(f"memory per BN+ReLU layer, {s['dtypes'][0]} — {_device_name(results)}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _itemsize(dtype):
    return {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}[dtype]


def write_all(results, out, stem):
    """Writes every plot of ``results`` into folder ``out``; returns their paths."""
    paths = []
    if not results["cases"]:
        return paths
    for dtype in results["settings"]["dtypes"]:
        paths.append(_grid(results, dtype, _ratios, "fusedbn time / other time (below 1: fusedbn faster)",
                           "ratio", out / f"{stem}-ratios-{dtype}.png", line=1.0))
        paths.append(_grid(results, dtype, _clone_equivalents, "time in x.clone() times (1 = bandwidth ceiling)",
                           "clone-equivalents (log scale)", out / f"{stem}-clone-equivalents-{dtype}.png",
                           line=1.0, log=True))
    paths.append(_memory(results, out / f"{stem}-memory.png"))
    return paths
