"""ONNX Runtime's intra-op spin-wait: on (ORT's default) or off (edgeseg's default), measured.

With more than one intra-op thread, ONNX Runtime's worker threads spin-wait for work after each
call (``session.intra_op.allow_spinning=1``) before they sleep. That keeps cores busy that the
caller's own work between calls wants: the next frame's decode/resize, a tracker, another model.
For LR-ASPP MobileNetV3-Small (19 classes, 512x512, random weights: timing does not depend on
them) on a 720p frame, each session is timed in the same interleaved loop as

  call   = seg.backend.run(tensor)          the model call alone
  other  = a fixed CPU workload run right after a call (resize + colour conversion + blur of a
           720p frame, numpy reductions: what an application does between frames)
  alone  = the same workload after the session has been idle for 50 ms (no spinning threads)
  frame  = other + seg.predict(frame)       one frame of an application loop, end to end

for spinning on and off at each thread count. Writes benchmarks/results/ort_spinning.{md,json}.

    nice -n 10 python benchmarks/ort_spinning.py [--rounds 3] [--iterations 20] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
MODEL, CLASSES, SIZE, FRAME = "lraspp_mobilenetv3_small", 19, (512, 512), (720, 1280)


def other_work(frame: np.ndarray) -> None:
    """What an application does between two frames (single-threaded OpenCV and numpy)."""
    import cv2

    small = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    cv2.GaussianBlur(gray, (7, 7), 0)
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    float(hsv[..., 2].mean())
    float(np.asarray(frame, np.float32).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import cv2

    import edgeseg.runtime as rt
    from edgeseg.converters import convert
    from edgeseg.fileio import write_results
    from edgeseg.models import create_model

    cv2.setNumThreads(1)
    frame = np.random.default_rng(0).integers(0, 256, (*FRAME, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        model = create_model(MODEL, num_classes=CLASSES).eval()
        model.metadata = model.metadata.replace(input_size=SIZE)
        path = convert(model, "onnx", input_size=SIZE, out=Path(folder) / "model.onnx").path
        sessions = {(t, spin): rt.load(path, threads=t, spinning=spin) for t in args.threads for spin in (True, False)}
        tensors = {key: seg._pre(frame, bgr=False)[0].copy() for key, seg in sessions.items()}
        times = {key: {"call": [], "other": [], "alone": [], "frame": []} for key in sessions}
        for seg in sessions.values():  # warm-up
            for _ in range(3):
                seg.predict(frame)
        for _ in range(args.rounds):
            for key, seg in sessions.items():
                t = times[key]
                for _ in range(args.iterations):
                    t0 = time.perf_counter()
                    seg.backend.run(tensors[key])
                    t1 = time.perf_counter()
                    other_work(frame)
                    t2 = time.perf_counter()
                    seg.predict(frame)
                    t3 = time.perf_counter()
                    time.sleep(0.05)  # idle: spinning threads have gone to sleep
                    t4 = time.perf_counter()
                    other_work(frame)
                    t5 = time.perf_counter()
                    t["call"].append(t1 - t0)
                    t["other"].append(t2 - t1)
                    t["frame"].append(t3 - t1)
                    t["alone"].append(t5 - t4)
        del sessions
    results = []
    for (threads, spin), t in times.items():
        med = {k: float(np.median(v)) * 1000 for k, v in t.items()}
        results.append({"threads": threads, "spinning": spin, **{f"{k}_ms": v for k, v in med.items()},
                        "other_slowdown": med["other"] / med["alone"]})
    report = {"model": MODEL, "input_size": SIZE, "frame": FRAME, "rounds": args.rounds,
              "iterations": args.iterations, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "python": platform.python_version(), "results": results}
    lines = [
        "# ONNX Runtime intra-op spinning: on vs off",
        "",
        f"{MODEL}, {CLASSES} classes, {SIZE[0]}x{SIZE[1]}, 720p RGB frame; {args.rounds} rounds x "
        f"{args.iterations} interleaved iterations per session; medians. `other` = a fixed OpenCV/numpy "
        "workload run right after a model call; `alone` = the same after 50 ms idle; `frame` = "
        f"other + seg.predict (one application frame). Load average at the end of the run: "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} (a shared machine).",
        "",
        "| threads | spinning | call (ms) | other after a call (ms) | other alone (ms) | other slowdown | frame (ms) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['threads']} | {'on' if r['spinning'] else 'off'} | {r['call_ms']:.1f} | {r['other_ms']:.1f} | "
                     f"{r['alone_ms']:.1f} | {r['other_slowdown']:.2f}x | {r['frame_ms']:.1f} |")
    lines += ["", "Reproduce: `nice -n 10 python benchmarks/ort_spinning.py --rounds 3 --iterations 20`", ""]
    write_results(RESULTS, "ort_spinning", report, lines)


if __name__ == "__main__":
    sys.exit(main())
