"""Registers, shared memory and spills of every CUDA kernel in the built fusedbn._C, per GPU
architecture, read back from the library with cuobjdump (the same figures ptxas -v prints
during the build).

    .venv/bin/python tools/kernel_resources.py        # prints the README's table

tests/test_cuda_build.py uses it to fail on any spill.
"""

import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FUNCTION = re.compile(r"^\s*Function (\S+):")
_USAGE = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")
_ARCH = re.compile(r"^arch = (sm_\d+)")


def cuobjdump():
    """The cuobjdump of the nvidia-cuda-cuobjdump package, the toolkit's, or None."""
    candidates = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "cu*", "bin", "cuobjdump"))
    candidates.append(os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "cuobjdump"))
    found = [c for c in candidates if os.access(c, os.X_OK)]
    return found[0] if found else shutil.which("cuobjdump")


def extension_path():
    paths = glob.glob(os.path.join(ROOT, "fusedbn", "_C*.so"))
    if not paths:
        raise FileNotFoundError("fusedbn/_C*.so is not built; run `make build`")
    return paths[0]


def cubin_architectures(library):
    """The sm_XX of every cubin embedded in `library`."""
    listing = subprocess.run([cuobjdump(), "--list-elf", library], capture_output=True, text=True, check=True).stdout
    return sorted(set(re.findall(r"\.(sm_\d+)\.cubin", listing)))


def kernel_name(mangled):
    """The kernel's template name without its arguments, e.g. 'plane_statistics_kernel'."""
    demangled = subprocess.run(["c++filt", mangled], capture_output=True, text=True).stdout.strip() or mangled
    match = re.search(r"(\w+_kernel)\b", demangled)
    return match.group(1) if match else demangled


def resource_usage(library):
    """[(arch, kernel, registers, stack, shared, local)] for every function of every cubin."""
    dump = subprocess.run([cuobjdump(), "--dump-resource-usage", library], capture_output=True, text=True,
                          check=True).stdout
    rows, arch, function = [], None, None
    for line in dump.splitlines():
        if m := _ARCH.match(line):
            arch = m.group(1)
        elif m := _FUNCTION.match(line):
            function = m.group(1)
        elif function and (m := _USAGE.search(line)):
            rows.append((arch, kernel_name(function), *map(int, m.groups())))
            function = None
    return rows


def table(rows):
    """Markdown: per kernel and arch, the range of registers and static shared bytes over its
    instantiations (dtype x activation), and the largest stack and local (spill) bytes."""
    grouped = collections.defaultdict(list)
    for arch, kernel, reg, stack, shared, local in rows:
        grouped[(kernel, arch)].append((reg, stack, shared, local))
    lines = ["| kernel | arch | instantiations | registers | shared bytes | stack / local bytes |",
             "|---|---|---|---|---|---|"]
    span = lambda values: f"{min(values)}–{max(values)}" if min(values) != max(values) else f"{min(values)}"
    for (kernel, arch), usage in sorted(grouped.items()):
        regs, stacks, shared, local = zip(*usage)
        lines.append(f"| `{kernel}` | {arch} | {len(usage)} | {span(regs)} | {span(shared)} | "
                     f"{max(stacks)} / {max(local)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if cuobjdump() is None:
        sys.exit("cuobjdump not found: pip install nvidia-cuda-cuobjdump")
    library = extension_path()
    print(f"cubins: {', '.join(cubin_architectures(library))}\n")
    print(table(resource_usage(library)))
