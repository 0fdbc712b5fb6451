"""The benchmark suite's --quick run: it exits 0 and writes a sane JSON and readable PNGs.

Timings are not judged (this machine is shared and small); what is checked is that every code
path ran (each contender, mode, layout, the memory and traffic figures, end to end) and that
the figures are well-formed: ratios finite and positive, correctness flags true.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.shapes import FOUNDATION, parse_shapes

REPO = Path(__file__).resolve().parent.parent
MODES = ("train_fwd", "train_fwd_bwd", "eval_fwd")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    run = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    (json_path,) = out.glob("bench-*.json")
    return run, json.loads(json_path.read_text()), out


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_json_describes_the_run(quick):
    _, results, _ = quick
    for key in ("schema", "machine", "settings", "shapes", "absent", "cases", "end_to_end", "summary"):
        assert key in results
    for key in ("date", "cpu", "cpu_cores", "torch", "git_commit", "fusedbn_extensions"):
        assert key in results["machine"]
    assert results["summary"]["failures"] == []
    layouts = {case["layout"] for case in results["cases"]}
    assert layouts == {"contiguous", "channels_last"}


def test_every_contender_is_correct_and_timed(quick):
    _, results, _ = quick
    for case in results["cases"]:
        for name in ("fusedbn", "eager", "compile"):
            assert case["contenders"][name]["status"] == "ok", (name, case["contenders"][name])
        assert not case["failed"]
        assert set(case["modes"]) == set(MODES)
        for mode, figures in case["modes"].items():
            for name in ("fusedbn", "eager", "compile"):
                f = figures["contenders"][name]
                for key in ("clone_equivalents", "ratio_to_eager", "ratio_to_compile",
                            "median_ratio_to_eager", "median_clone_equivalents"):
                    assert positive(f[key]), (mode, name, key, f[key])
                ms = f["ms"]
                assert 0 < ms["best"] <= ms["median"] <= ms["max"] and ms["n"] == results["settings"]["rounds"]
            assert figures["contenders"]["eager"]["ratio_to_eager"] == pytest.approx(1.0)


def test_memory_and_traffic(quick):
    _, results, _ = quick
    for case in results["cases"]:
        memory = case["memory"]
        assert 0 < memory["fusedbn"]["saved_bytes"] < memory["eager"]["saved_bytes"]
        assert memory["fusedbn"]["activation_sized"] == 1
        for mode, figures in case["modes"].items():
            traffic = figures["traffic"]
            model = traffic["model"]
            assert 0 < model["clone"]["bytes"] <= model["fusedbn"]["bytes"] < model["eager"]["bytes"]
            assert positive(model["fusedbn"]["us"])
            if results["machine"]["fusedbn_extensions"]["_simt"]:
                counted = traffic["counted"]["sector_bytes"]  # the kernels move what the model says
                assert 0.95 < counted / model["fusedbn"]["bytes"] < 1.2, (mode, counted)
            else:
                assert traffic["counted_note"] == "counted traffic: simt backend not built"


def test_end_to_end(quick):
    _, results, _ = quick
    assert results["end_to_end"]
    for e in results["end_to_end"]:
        assert e["model"] == "resnet18" and e["agree"], e
        assert e["fused_layers"] > 0
        assert positive(e["ratio_to_eager"])
        assert all(positive(loss) for loss in e["losses"].values())
        assert all(0 <= err < 0.1 for err in e["gradient_error_vs_float64"].values())


def test_table_and_plots(quick):
    run, results, out = quick
    for title in ("time in ms", "ratios", "memory saved", "traffic MODEL", "end to end"):
        assert title in run.stdout
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2 * len(results["settings"]["dtypes"]) + 1
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000, png


def test_shape_sets():
    resnet50 = parse_shapes("resnet50", "cpu")
    assert len(resnet50) == 12 and sum(s["resnet50_layers"] for s in resnet50) == 53
    assert resnet50[0]["shape"] == (32, 64, 112, 112)
    assert {s["shape"][0] for s in parse_shapes("resnet50@8", "cpu")} == {8}
    default_cpu = [s["shape"] for s in parse_shapes("default", "cpu")]
    assert default_cpu[:3] == FOUNDATION and len(default_cpu) == 15
    both = parse_shapes("32x256x28x28,resnet50", "cuda")  # a shape named twice is measured once
    assert len(both) == 12 and both[0]["origins"] == ["explicit", "resnet50@32"]
    with pytest.raises(ValueError):
        parse_shapes("32x64x112", "cpu")
