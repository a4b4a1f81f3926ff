"""How much edgeseg.runtime's pre/post-processing adds to the bare backend call.

LR-ASPP MobileNetV3-Small (19 classes, 512x512, random weights: timing does not depend on them)
is converted with edgeseg.converters for each backend that runs here. For each, on a 720p RGB
frame, in the same loop and interleaved (so machine load hits both alike):
  predict = seg.predict(frame)         resize + normalize + layout + backend + argmax + mask resize
  invoke  = seg.backend.run(tensor)    the backend alone on a ready input tensor, as a plain call
                                       to the library does it: set the input, run, fetch the outputs
                                       as arrays (LiteRT's get_tensor copies them; seg.predict reads
                                       the interpreter's output buffers in place instead)
The budget is predict <= 1.15 x invoke (median over the loop). Writes
benchmarks/results/runtime_overhead.{md,json}.

    nice -n 10 python benchmarks/runtime_overhead.py [--iterations 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
MODEL, CLASSES, SIZE, FRAME = "lraspp_mobilenetv3_small", 19, (512, 512), (720, 1280)
BUDGET = 0.15
# Label -> (converter target, options) of each file timed (TFLite is NHWC on devices). The
# "+argmax" files end in argmax inside the graph (`edgeseg convert --argmax`): the backend then
# does the class reduction, and the runtime only resizes the mask.
TARGETS = {
    "onnx": ("onnx", {}),
    "onnx+argmax": ("onnx", {"argmax": True}),
    "openvino": ("openvino", {}),
    "tflite": ("tflite", {"layout": "nhwc"}),
    "tflite+argmax": ("tflite", {"layout": "nhwc", "argmax": True}),
    "torch": None,
}
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "tflite": ".tflite"}


def convert_all(folder: Path) -> dict[str, Path]:
    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.converters import convert
    from edgeseg.models import create_model

    model = create_model(MODEL, num_classes=CLASSES).eval()
    model.metadata = model.metadata.replace(input_size=SIZE)
    files = {"torch": save_checkpoint(model, folder / "model.safetensors")}
    for label, spec in TARGETS.items():
        if spec is None:
            continue
        target, options = spec
        start = time.perf_counter()
        out = folder / f"{label.replace('+', '_')}{SUFFIX[target]}"
        try:
            files[label] = convert(model, target, input_size=SIZE, out=out, **options).path
        except Exception as exc:  # a target that fails is reported, the others still run
            print(f"{label}: conversion failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        print(f"{label}: converted in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return files


def time_backend(path: Path, frame: np.ndarray, iterations: int, threads: int) -> dict:
    import edgeseg.runtime as rt

    seg = rt.load(path, threads=threads)
    tensor, placement = seg._pre(frame, bgr=False)
    tensor = tensor.copy()
    name, post = seg._post[None]
    for _ in range(3):  # warm-up: first calls allocate and pick kernels
        seg.predict(frame)
        seg.backend.run(tensor)
    predict, invoke, pre, post_t = [], [], [], []
    for _ in range(iterations):
        t0 = time.perf_counter()
        seg.predict(frame)
        t1 = time.perf_counter()
        output = seg.backend.run(tensor)[name]
        t2 = time.perf_counter()
        seg._pre(frame, bgr=False)
        t3 = time.perf_counter()
        post.mask(output, placement, *frame.shape[:2])
        t4 = time.perf_counter()
        predict.append(t1 - t0)
        invoke.append(t2 - t1)
        pre.append(t3 - t2)
        post_t.append(t4 - t3)
    med = {k: float(np.median(v)) * 1000 for k, v in
           (("predict_ms", predict), ("invoke_ms", invoke), ("pre_ms", pre), ("post_ms", post_t))}
    med["overhead"] = med["predict_ms"] / med["invoke_ms"] - 1
    med["within_budget"] = med["overhead"] <= BUDGET
    med["layout"] = seg.metadata.layout
    med["argmax_in_graph"] = seg.metadata.argmax
    med["backend"] = seg.backend.name
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from edgeseg.fileio import write_json_atomic, write_text_atomic

    frame = np.random.default_rng(0).integers(0, 256, (*FRAME, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        files = convert_all(Path(folder))
        results = {target: time_backend(path, frame, args.iterations, args.threads) for target, path in files.items()}
    skipped = {"coreml": "CoreML models run only on macOS" } if sys.platform != "darwin" else {}
    for target in TARGETS:
        if target not in results:
            skipped.setdefault(target, "conversion failed (see the benchmark's stderr)")
    report = {
        "model": MODEL, "classes": CLASSES, "input_size": SIZE, "frame": FRAME,
        "iterations": args.iterations, "threads": args.threads, "budget": BUDGET,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "python": platform.python_version(),
        "results": results, "skipped": skipped,
    }
    lines = [
        "# Runtime overhead: seg.predict on a 720p frame vs the bare backend call",
        "",
        f"{MODEL}, {CLASSES} classes, {SIZE[0]}x{SIZE[1]} input, {FRAME[1]}x{FRAME[0]} RGB frame, "
        f"threads={args.threads}, median of {args.iterations} interleaved iterations. "
        f"Budget: pre+post adds at most {BUDGET:.0%}.",
        "",
        "| file | backend | layout | argmax | predict (ms) | invoke (ms) | pre (ms) | post (ms) | overhead | within budget |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for target, r in results.items():
        lines.append(
            f"| {target} | {r['backend']} | {r['layout']} | {'graph' if r['argmax_in_graph'] else 'numpy'} | {r['predict_ms']:.1f} | {r['invoke_ms']:.1f} | "
            f"{r['pre_ms']:.1f} | {r['post_ms']:.1f} | {r['overhead']:+.1%} | {'yes' if r['within_budget'] else 'NO'} |"
        )
    for target, why in skipped.items():
        lines.append(f"| {target} | - | - | - | - | - | - | - | - | skipped: {why} |")
    lines += [
        "",
        "pre = resize of the 720p frame to the input + one table lookup per channel (normalize, "
        "quantize, layout); post = class argmax over the logits (numpy/OpenCV, when not in the graph) "
        "+ nearest resize of the mask to 720p. With logits out, post is dominated by the argmax over "
        f"{CLASSES} x {SIZE[0]} x {SIZE[1]} floats (memory-bound, single-threaded; NHWC logits are "
        "transposed to class planes band by band first); compare predict across rows for end-to-end "
        "cost, since an argmax inside the graph moves that work into invoke. invoke is the library's "
        "plain call (input set, graph run, outputs fetched as arrays: LiteRT's get_tensor copies "
        "them); seg.predict reads LiteRT's output buffers in place, so predict does not pay that copy.",
        "",
        "Reproduce: `nice -n 10 python benchmarks/runtime_overhead.py` "
        "(pre and post are also timed alone in the same loop; they are not subtracted from predict).",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    write_json_atomic(RESULTS / "runtime_overhead.json", report)
    write_text_atomic(RESULTS / "runtime_overhead.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
