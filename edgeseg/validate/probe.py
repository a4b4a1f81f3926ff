"""Cold start and peak memory of one model file, measured in a fresh Python process.

``python -m edgeseg.validate.probe PATH --threads N --runs R --height H --width W`` prints one
JSON line. A fresh process is the only honest cold start (the backend library is not imported
yet) and the only clean peak-RSS number (nothing else has touched the heap).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np


def peak_rss_bytes() -> int:
    """This process's peak resident memory. On Linux ru_maxrss survives exec (a child started
    from a big parent reports the parent's peak), so read the kernel's VmHWM, which does not."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes; Linux: KiB


def probe(path: str, threads: int | None, runs: int, size: tuple[int, int] | None, device: str | None = None) -> dict:
    start = time.perf_counter()
    import edgeseg.runtime as rt

    baseline = peak_rss_bytes()
    session = rt.load(path, threads=threads, device=device)
    loaded = time.perf_counter()
    height, width = size or session.metadata.input_size
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    domain = session.domains[0] if session.domains else session.metadata.domain
    session.predict(image, domain=domain)
    first = time.perf_counter()
    for _ in range(runs):
        session.predict(image, domain=domain)
    return {
        "load_s": loaded - start,  # import of the runtime and the backend library + load()
        "first_predict_s": first - loaded,
        "cold_start_s": first - start,  # process ready -> first mask
        "baseline_rss_bytes": baseline,  # after importing numpy and edgeseg.runtime
        "peak_rss_bytes": peak_rss_bytes(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    size = (args.height, args.width) if args.height and args.width else None
    print(json.dumps(probe(args.path, args.threads, args.runs, size, args.device)))


if __name__ == "__main__":
    main()
