"""The benchmark suite (``make bench``): fusedbn against eager PyTorch, torch.compile, x.clone()
and, where they import, apex and inplace_abn, on the GPU if there is one, else on the CPU.

    python -m benchmarks.run                   # the default selection for the device
    python -m benchmarks.run --quick           # one small shape, few rounds, resnet18 tiny
    python -m benchmarks.run --shapes resnet50 # every ResNet-50 BN shape at batch 32
    python -m benchmarks.run --shapes foundation --contenders fusedbn,eager --e2e-models none
                                               # what the former benchmarks/cpu_speed.py printed

Every case is checked against eager before it is timed; a mismatch is printed at once, marks
the case failed and makes the exit status 1. Figures go to a table on stdout and to
<out>/bench-<date>-<device>.json with PNG plots beside it.
"""

import argparse
import datetime
import sys
from pathlib import Path

import torch
from tqdm import tqdm

import fusedbn
from . import case, end_to_end, machine, plots, report
from .contenders import CONTENDERS, MODES, fusedbn_backend, probe
from .shapes import DEFAULT as DEFAULT_SHAPES, parse_shapes
from .timing import Timer
from .traffic_model import DEFAULT_BANDWIDTH_TBS

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}
# Per-device defaults; --quick replaces some, explicit flags replace any.
DEFAULTS = {
    "cpu": {"dtypes": "float32", "rounds": 15, "warmup": 1, "e2e_models": "resnet18,resnet50",
            "e2e_batch": 8, "e2e_size": 112, "e2e_rounds": 10},
    "cuda": {"dtypes": "float32,float16,bfloat16", "rounds": 50, "warmup": 5,
             "e2e_models": "resnet18,resnet50", "e2e_batch": 32, "e2e_size": 224, "e2e_rounds": 20},
}
QUICK = {"shapes": "quick", "rounds": 2, "warmup": 1, "e2e_models": "resnet18", "e2e_batch": 2,
         "e2e_size": 64, "e2e_rounds": 2}
QUICK_DTYPES = {"cpu": "float32", "cuda": "float32,bfloat16"}
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _list(text, allowed, what):
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in allowed]
    if unknown:
        raise SystemExit(f"--{what}: unknown {', '.join(unknown)}; expected some of {', '.join(allowed)}")
    return items


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one small shape, 2 rounds, resnet18 at 64x64 (< 2 min)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--shapes", help="NxCxHxW and/or named sets: foundation, resnet50, resnet50@BATCH, "
                                    "default, quick (default: 'default', see benchmarks/shapes.py)")
    p.add_argument("--modes", default=",".join(MODES), help=f"some of {', '.join(MODES)}")
    p.add_argument("--layouts", default="contiguous,channels_last")
    p.add_argument("--dtypes", help="default float32 on the CPU; float32,float16,bfloat16 on a GPU")
    p.add_argument("--contenders", default=",".join(CONTENDERS), help="x.clone() always runs")
    p.add_argument("--no-compile", action="store_true", help="drop torch.compile from the contenders")
    p.add_argument("--rounds", type=int, help="interleaved timing rounds (CPU 15, GPU 50)")
    p.add_argument("--warmup", type=int, help="untimed calls of each function first (CPU 1, GPU 5)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default 2 on the CPU)")
    p.add_argument("--bandwidth", type=float, default=DEFAULT_BANDWIDTH_TBS,
                   help="TB/s at which the traffic model converts bytes to time (default: H100 SXM)")
    p.add_argument("--no-counted-traffic", action="store_true",
                   help="skip counting fusedbn's traffic on the SIMT harness")
    p.add_argument("--e2e-models", help="torchvision models for the end-to-end step, or 'none' "
                                        "(default resnet18,resnet50)")
    p.add_argument("--e2e-batch", type=int, help="CPU 8, GPU 32")
    p.add_argument("--e2e-size", type=int, help="input height and width: CPU 112, GPU 224")
    p.add_argument("--e2e-rounds", type=int, help="CPU 10, GPU 20")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON and PNGs")
    args = p.parse_args(argv)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    args.device = "cpu" if device == "auto" else device
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    defaults = dict(DEFAULTS[args.device])
    if args.quick:
        defaults.update(QUICK, dtypes=QUICK_DTYPES[args.device])
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.shapes = args.shapes or "default"
    args.shapes_expanded = args.shapes.replace("default", DEFAULT_SHAPES[args.device])
    args.threads = args.threads or (2 if args.device == "cpu" else torch.get_num_threads())
    return args


def settings_of(args, peak_tbs):
    contenders = _list(args.contenders, CONTENDERS, "contenders")
    if args.no_compile and "compile" in contenders:
        contenders.remove("compile")
    return {
        "device": args.device, "gpu": args.device == "cuda", "peak_tbs": peak_tbs,
        "contenders": contenders, "modes": _list(args.modes, MODES, "modes"),
        "layouts": _list(args.layouts, list(case.LAYOUTS), "layouts"),
        "dtypes": _list(args.dtypes, list(DTYPES), "dtypes"),
        "rounds": args.rounds, "warmup": args.warmup, "threads": args.threads,
        "bandwidth_tbs": args.bandwidth, "count_traffic": not args.no_counted_traffic,
        "shapes_spec": args.shapes, "shapes_expanded": args.shapes_expanded, "quick": args.quick,
        "fusedbn_backend": fusedbn_backend(args.device),
        "e2e": {"models": [] if args.e2e_models == "none" else _list(args.e2e_models, ["resnet18", "resnet34", "resnet50", "resnet101"], "e2e-models"),
                "batch": args.e2e_batch, "size": args.e2e_size, "rounds": args.e2e_rounds},
    }


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine.describe(device, args.threads)
    peak_tbs = info["gpu"]["peak_bandwidth_tbs"] if info["gpu"] else None
    settings = settings_of(args, peak_tbs)
    fusedbn.set_backend(settings["fusedbn_backend"])
    shapes = parse_shapes(args.shapes, device.type)
    cases = [(entry, layout, DTYPES[d]) for d in settings["dtypes"] for entry in shapes
             for layout in settings["layouts"]]
    jobs = [(m, layout, amp) for m in settings["e2e"]["models"] for layout, amp in end_to_end.variants(device.type)]
    absent = {name: probe(name) for name in settings["contenders"] if probe(name)}
    timer = Timer(device)
    report.print_header(info, settings, shapes, absent)

    records, broken = [], {}
    with tqdm(total=len(cases) + len(jobs), desc="bench", unit="case", file=sys.stderr) as bar:
        for entry, layout, dtype in cases:
            bar.set_postfix_str(f"{'x'.join(map(str, entry['shape']))} {layout} {str(dtype)[6:]}")
            record = case.measure(entry, layout, dtype, settings, timer, broken)
            for line in report.case_alarms(record):
                tqdm.write(line, file=sys.stderr)
            records.append(record)
            bar.update()
        e2e = []
        for model, layout, amp in jobs:
            bar.set_postfix_str(f"end to end {model} {layout}")
            e = settings["e2e"]
            result = end_to_end.run(model, device, e["batch"], e["size"], layout, amp, timer,
                                    e["rounds"], settings["warmup"])
            if not result["agree"]:
                tqdm.write(f"!!! END TO END MISMATCH: {model} {layout} {result['precision']}: losses "
                           f"{result['losses']}, gradient error vs float64 {result['gradient_error_vs_float64']}",
                           file=sys.stderr)
            e2e.append(result)
            bar.update()

    results = {"schema": 1, "machine": info, "settings": settings,
               "shapes": [{**s, "shape": list(s["shape"])} for s in shapes],
               "absent": absent, "cases": records, "end_to_end": e2e}
    results["summary"] = report.summarize(results)
    stem = f"bench-{datetime.datetime.now():%Y%m%d-%H%M%S}-{machine.slug(device)}"
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = report.write_json(results, args.out / f"{stem}.json")
    pngs = plots.write_all(results, args.out, stem)
    report.print_tables(results)
    print(f"\nwrote {json_path}")
    for png in pngs:
        print(f"wrote {png}")
    failures = results["summary"]["failures"]
    if failures:
        print(f"\nFAILED: {len(failures)} problem(s):\n  " + "\n  ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
