"""The machine a report was measured on: CPU, cores, thread settings, library versions.

Read without importing any heavy library (versions come from package metadata), so describing
the environment never changes what is measured.
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata

# Distributions whose versions decide the numbers (a missing one is reported as null).
LIBRARIES = (
    "edgeseg", "numpy", "onnxruntime", "ai-edge-litert", "openvino", "coremltools", "torch",
    "opencv-python-headless", "matplotlib",
)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment(threads: int | None = None) -> dict:
    """A JSON-ready description of this machine and the thread settings in force."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        usable = os.cpu_count()
    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "threads": threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": sys.version.split()[0],
        "libraries": library_versions(),
    }
