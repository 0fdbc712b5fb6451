"""The suite's output: the header, loud alarms, the tables on stdout, the summary and the JSON.

Ratios are "fusedbn time / other time" (below 1: fusedbn is faster), from the best of the
interleaved rounds, with the ratio of medians beside it so that noise shows.
"""

import json
import math
import sys

MiB = 1024 * 1024
OTHERS = ("compile", "apex", "inplace_abn")  # timed contenders besides fusedbn and eager


def print_header(info, settings, shapes, absent):
    gpu = info["gpu"]
    where = (f"{gpu['name']} (peak {gpu['peak_bandwidth_tbs'] or 'unknown'} TB/s, {gpu['peak_bandwidth_source']})"
             if gpu else f"{info['cpu']}, {info['cpu_cores']} cores, {settings['threads']} threads")
    print(f"fusedbn benchmark suite — {info['date']} — {where}")
    print(f"torch {info['torch']}, CUDA {info['cuda']}, fusedbn backend {settings['fusedbn_backend']!r}, "
          f"git {(info['git_commit'] or '?')[:12]}{' (uncommitted changes)' if info['git_dirty'] else ''}")
    origins = sorted({o for s in shapes for o in s["origins"]})
    print(f"shapes: {settings['shapes_spec']!r} = {settings['shapes_expanded']!r}: {len(shapes)} shapes "
          f"from {', '.join(origins)}; "
          f"layouts {', '.join(settings['layouts'])}; dtypes {', '.join(settings['dtypes'])}")
    print(f"timing: {settings['rounds']} interleaved rounds after {settings['warmup']} warm-up call(s), "
          + ("CUDA events, L2 overwritten before each call" if settings["gpu"] else "wall time per call"))
    for name, reason in absent.items():
        print(f"absent: {name} ({reason})")
    sys.stdout.flush()


def case_alarms(record):
    """Lines to print at once for a case whose results disagree with eager."""
    lines = []
    for name, status in record["contenders"].items():
        if status["status"] in ("mismatch", "error"):
            what = "; ".join(status.get("problems", [])) or status.get("reason", "")
            loud = "!!! FUSEDBN " if name == "fusedbn" else "!!! "
            lines.append(f"{loud}{status['status'].upper()}: {name} on {record['label']} {record['layout']} "
                         f"{record['dtype']}: {what}")
    return lines


def _geomean(values):
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def summarize(results):
    failures, warnings, ratios, absent = [], [], {}, dict(results["absent"])
    for record in results["cases"]:
        for name, status in record["contenders"].items():
            if status["status"] == "absent":
                absent.setdefault(name, status["reason"])
        for line in case_alarms(record):
            (failures if line.startswith("!!! FUSEDBN") else warnings).append(line.lstrip("! "))
        for mode, figures in record.get("modes", {}).items():
            fused = figures["contenders"].get("fusedbn")
            if fused:
                key = f"{record['dtype']}/{mode}"
                for what in ("ratio_to_eager", "ratio_to_compile", "clone_equivalents"):
                    ratios.setdefault(key, {}).setdefault(what, []).append(fused[what])
                ratios[key].setdefault("ratio_to_pass_floor", []).append(
                    fused["clone_equivalents"] / figures["pass_floor"]["clone_equivalents"])
    for e in results["end_to_end"]:
        if not e["agree"]:
            failures.append(f"end to end {e['model']} {e['layout']} {e['precision']}: losses {e['losses']}, "
                            f"gradient error vs float64 {e['gradient_error_vs_float64']}")
    geomeans = {key: {what: _geomean(v) for what, v in d.items()} for key, d in ratios.items()}
    return {"failures": failures, "warnings": warnings, "absent": absent, "fusedbn_geomean": geomeans}


def write_json(results, path):
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return path


def _ms(stats):
    """best (median ±half the interquartile range, relative to the median)."""
    if not stats:
        return "-"
    spread = (stats["q3"] - stats["q1"]) / 2 / stats["median"] * 100 if stats["median"] else 0
    return f"{stats['best']:.3f} ({stats['median']:.3f} ±{spread:.0f}%)"


def _x(value, median=None):
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" ({median:.2f})" if median is not None else "")


def _table(title, header, rows):
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def _timed(results):
    """The contenders timed in at least one case, in display order."""
    return [n for n in ("fusedbn", "eager", *OTHERS)
            if any(n in f["contenders"] for r in results["cases"] for f in r["modes"].values())]


def print_speed(results):
    names = _timed(results)
    gpu = results["settings"]["gpu"]
    for dtype in results["settings"]["dtypes"]:
        cases = [r for r in results["cases"] if r["dtype"] == dtype]
        times, ratios = [], []
        for r in cases:
            for mode, f in r["modes"].items():
                c = f["contenders"]
                key = [r["label"], r["layout"], mode]
                times.append(key + [_ms(r["clone_ms"])] + [_ms(c[n]["ms"]) if n in c else
                                                          r["contenders"][n]["status"] for n in names])
                fused = c.get("fusedbn")
                row = key + ([_x(fused["ratio_to_eager"], fused["median_ratio_to_eager"]),
                              _x(fused["ratio_to_compile"], fused["median_ratio_to_compile"])] if fused else ["FAILED"] * 2)
                row += [_x(c[n]["clone_equivalents"]) if n in c else "-" for n in names]
                floor = f["pass_floor"]["clone_equivalents"]
                row += [_x(floor), _x(fused["clone_equivalents"] / floor) if fused else "-"]
                if gpu:
                    row += [_gbps(fused, "gbps", "peak_fraction"), _gbps(f, "clone_gbps", "clone_peak_fraction")]
                ratios.append(row)
        _table(f"time in ms, {dtype}: best of {results['settings']['rounds']} (median ±half IQR)",
               ["shape", "layout", "mode", "clone"] + names, times)
        header = (["shape", "layout", "mode", "fused/eager", "fused/compile"] + [f"{n} clone-eq" for n in names]
                  + ["pass floor clone-eq", "fusedbn/floor"])
        _table(f"ratios, {dtype}: best (median); below 1 = fusedbn faster; clone-eq = time / x.clone() time; "
               "pass floor: the algorithm's passes at PyTorch's copy/sum/dot/mul speed (benchmarks/pass_floor.py)",
               header + (["fusedbn GB/s (peak)", "clone GB/s (peak)"] if gpu else []), ratios)


def _gbps(figures, key, fraction):
    if not figures or figures.get(key) is None:
        return "-"
    share = figures.get(fraction)
    return f"{figures[key]:.0f}" + (f" ({share:.0%})" if share is not None else "")


def print_memory(results):
    rows, gpu = [], results["settings"]["gpu"]
    cases = [r for r in results["cases"] if r["layout"] == results["settings"]["layouts"][0]
             and "fusedbn" in r["memory"] and "eager" in r["memory"]]
    names = [n for n in ("fusedbn", "eager", *OTHERS)
             if any("saved_bytes" in r["memory"].get(n, {}) for r in cases)]
    for r in cases:
        m = {n: r["memory"].get(n, {}) for n in names}
        row = [r["label"], r["dtype"]]
        row += [f"{m[n]['saved_bytes'] / MiB:.2f} ({m[n]['activation_sized']})" if "saved_bytes" in m[n] else "-"
                for n in names]
        row.append(f"{m['fusedbn']['saved_bytes'] / m['eager']['saved_bytes']:.2f}")
        if gpu:
            row += [f"{m[n]['peak_fwd_bwd_bytes'] / MiB:.1f}" if m[n].get("peak_fwd_bwd_bytes") else "-"
                    for n in names]
        rows.append(row)
    _table("memory saved for backward per layer: MiB (tensors as large as x); distinct storages, "
           "same for both layouts", ["shape", "dtype"] + [f"{n} MiB" for n in names] + ["fused/eager"]
           + ([f"peak fwd+bwd {n} MiB" for n in names] if gpu else []), rows)


def print_traffic(results):
    s, rows = results["settings"], []
    note = None
    for r in results["cases"]:
        if r["layout"] != s["layouts"][0]:
            continue
        twins = {o["layout"]: o for o in results["cases"] if o["label"] == r["label"] and o["dtype"] == r["dtype"]}
        for mode, f in r["modes"].items():
            model = f["traffic"]["model"]
            row = [r["label"], r["dtype"], mode, f"{model['fusedbn']['bytes'] / 1e6:.4g}",
                   f"{model['eager']['bytes'] / 1e6:.4g}", f"{model['fusedbn']['bytes'] / model['eager']['bytes']:.2f}",
                   f"{model['fusedbn']['us']:.3g} / {model['eager']['us']:.3g} / {model['clone']['us']:.3g}"]
            for layout in s["layouts"]:
                counted = twins[layout]["modes"][mode]["traffic"]["counted"] if layout in twins else None
                row.append(f"{counted['sector_bytes'] / 1e6:.4g} ({counted['sector_bytes'] / model['fusedbn']['bytes']:.3f})"
                           if counted else "-")
                note = note or twins.get(layout, r)["modes"][mode]["traffic"]["counted_note"]
            rows.append(row)
    _table(f"GPU traffic MODEL (not a measurement): MB per call, and µs at {s['bandwidth_tbs']} TB/s; "
           f"counted = {note}", ["shape", "dtype", "mode", "fusedbn MB", "eager MB", "fused/eager",
                                 "µs fused / eager / clone"] + [f"counted MB {l} (/model)" for l in s["layouts"]], rows)


def print_end_to_end(results):
    rows, gpu = [], results["settings"]["gpu"]
    for e in results["end_to_end"]:
        ms = e["ms"] or {}
        row = [e["model"], f"{e['batch']}x3x{e['size']}x{e['size']}", e["layout"], e["precision"],
               f"{e['fused_layers']}/{e['batch_norm_layers']}", _ms(ms.get("eager")), _ms(ms.get("fusedbn")),
               _x(e.get("ratio_to_eager"), e.get("median_ratio_to_eager")),
               f"{e['saved_bytes']['fusedbn'] / MiB:.0f} / {e['saved_bytes']['eager'] / MiB:.0f}"]
        if gpu:
            row.append(f"{e['peak_bytes']['fusedbn'] / MiB:.0f} / {e['peak_bytes']['eager'] / MiB:.0f}")
        err = e["gradient_error_vs_float64"]
        row += [f"{e['losses']['fusedbn']:.5f} / {e['losses']['eager']:.5f}",
                f"{err['fusedbn']:.1e} / {err['eager']:.1e}", "yes" if e["agree"] else "NO"]
        rows.append(row)
    _table("end to end: one training step (forward, cross-entropy, backward, SGD), before and after fusedbn.convert",
           ["model", "input", "layout", "precision", "fused BN", "eager ms", "fusedbn ms", "fused/eager",
            "saved MiB fused / eager"] + (["peak MiB fused / eager"] if gpu else []) + ["first loss fused / eager", "grad error vs f64 fused / eager", "agree"], rows)


def print_tables(results):
    print_speed(results)
    print_memory(results)
    print_traffic(results)
    if results["end_to_end"]:
        print_end_to_end(results)
    print("\nfusedbn geometric means over shapes and layouts (best-of ratios):")
    for key, g in results["summary"]["fusedbn_geomean"].items():
        print(f"  {key:<24} " + ", ".join(f"{what} {v:.2f}" for what, v in g.items() if v is not None))
    for name, reason in results["summary"]["absent"].items():
        print(f"absent: {name} ({reason})")
    for line in results["summary"]["warnings"]:
        print(f"warning: {line}")
