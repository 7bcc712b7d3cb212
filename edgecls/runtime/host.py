"""What machine a measurement was taken on: CPU model, cores, GPU, and the versions that matter."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

PACKAGES = (
    "edgecls",
    "numpy",
    "opencv-python-headless",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "torch",
    "tensorrt",
    "nvidia-modelopt",
    "polygraphy",
    "cuda-python",
    "pycuda",
)


def _cpuinfo(*keys: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of `keys` (None off Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return None
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text(errors="replace").splitlines()
            if line.startswith(keys)
        ),
        None,
    )


def cpu_model() -> str:
    return _cpuinfo("model name", "Model") or platform.processor() or platform.machine()


def int8_dot_product() -> str | None:
    """The CPU's INT8 dot-product instructions; ONNX Runtime's x86 u8×s8 kernels saturate without VNNI."""
    line = _cpuinfo("flags", "Features")
    if line is None:
        return None
    flags = line.split()
    found = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm") if f in flags]
    return ", ".join(found) or "none"


def gpu_names() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def versions() -> dict[str, str | None]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


@functools.cache
def host_info() -> dict:
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "int8_dot_product": int8_dot_product(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpus": gpu_names(),
        "versions": versions(),
    }


class OtherWork:
    """How many cores the rest of the machine kept busy while this process measured, from /proc/stat (Linux): the
    CPU time every core spent working, less this process's own, over the wall time. Unlike the load average, which
    trails by a minute, it sees a hog that started just before. None where /proc/stat is missing."""

    def __init__(self):
        self.started = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        worked_s = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        return time.monotonic(), worked_s, time.process_time()

    def cores(self) -> float | None:
        now = self._sample()
        if self.started is None or now is None or now[0] <= self.started[0]:
            return None
        (t0, worked0, own0), (t1, worked1, own1) = self.started, now
        return max(0.0, ((worked1 - worked0) - (own1 - own0)) / (t1 - t0))
