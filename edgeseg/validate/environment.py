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

from edgeseg.runtime.formats import FORMATS

# Distributions whose versions decide the numbers (a missing one is reported as null): each
# format's libraries (its inference library and converters, from the format table), and the rest.
LIBRARIES = (
    "edgeseg", "numpy", *dict.fromkeys(lib for fmt in FORMATS.values() for lib in fmt.libraries),
    "opencv-python-headless", "pillow", "matplotlib", "torchao",
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


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Installed versions of :data:`LIBRARIES` and of the ``extra`` distributions (None: missing)."""
    versions = {}
    for name in dict.fromkeys((*LIBRARIES, *extra)):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment(threads: int | None = None, libraries: tuple[str, ...] = ()) -> dict:
    """A JSON-ready description of this machine and the thread settings in force; ``libraries``:
    distributions to record besides :data:`LIBRARIES` (a benchmark's own consumers)."""
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
        "libraries": library_versions(libraries),
    }


def describe(env: dict, libraries: tuple[str, ...] | None = None) -> str:
    """One line for a report, from :func:`environment`'s record (what was measured on, not what
    runs now): CPU, cores, Python and the versions of ``libraries`` (default: every one installed)."""
    versions = env.get("libraries", {})
    wanted = LIBRARIES if libraries is None else ("edgeseg", *libraries)
    names = [n for n in dict.fromkeys(wanted) if versions.get(n)]
    cores = env.get("usable_cpus")
    cores_text = f"{cores} of {env.get('logical_cpus')} CPUs usable" if cores != env.get("logical_cpus") else f"{cores} CPUs"
    threads = f", {env['threads']} thread(s)" if env.get("threads") is not None else ""
    line = f"{env.get('cpu', '?')}, {cores_text}{threads}, {env.get('system', '?')}, Python {env.get('python', '?')}"
    if names:
        line += "; " + ", ".join(f"{n} {versions[n]}" for n in names)
    return line + f" ({env.get('created_utc', '?')})"
