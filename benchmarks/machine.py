"""What the figures were measured on: CPU, GPU and its peak bandwidth, versions, git commit."""

import datetime
import os
import platform
import subprocess
from pathlib import Path

import torch

import fusedbn

REPO = Path(__file__).resolve().parent.parent

# Peak DRAM bandwidth in TB/s by device name, most specific first (vendor data sheets).
PEAK_BANDWIDTH_TBS = [
    ("GH200", 4.0), ("H200", 4.8), ("H100 NVL", 3.9), ("H100 PCIe", 2.0), ("H100", 3.35),
    ("A100 80GB PCIe", 1.935), ("A100-SXM4-80GB", 2.039), ("A100", 1.555),
    ("B200", 8.0), ("L40S", 0.864), ("L40", 0.864), ("L4", 0.3), ("A10G", 0.6), ("A10", 0.6), ("V100", 0.9),
    ("RTX 4090", 1.008), ("RTX 3090", 0.936),
]


def peak_bandwidth(device):
    """(TB/s, how it was found) for a CUDA device; (None, "unknown") when it cannot be told."""
    name = torch.cuda.get_device_name(device)
    for key, tbs in PEAK_BANDWIDTH_TBS:
        if key.lower() in name.lower():
            return tbs, f"data sheet ({key})"
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if clock_khz and bus_bits:  # double data rate: two transfers per clock
        return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e12, "memory clock × bus width"
    return None, "unknown"


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args):
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def describe(device, threads):
    """A dict describing the machine and the software, for the JSON and the report header."""
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": str(device),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "fusedbn_extensions": {name: fusedbn.dispatch.has_extension(name) for name in ("_C", "_simt")},
        "git_commit": _git("rev-parse", "HEAD") or None,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "gpu": None,
    }
    if torch.device(device).type == "cuda":
        tbs, source = peak_bandwidth(device)
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = {"name": props.name, "memory_bytes": props.total_memory,
                       "capability": f"{props.major}.{props.minor}",
                       "peak_bandwidth_tbs": tbs, "peak_bandwidth_source": source}
    return info


def slug(device):
    """A file-name-safe name of the device: "cpu", or "cuda-<gpu name>"."""
    if torch.device(device).type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device).lower()
    return "cuda-" + "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")
