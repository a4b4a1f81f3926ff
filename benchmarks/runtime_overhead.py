"""How much edgeseg.runtime's pre/post-processing adds to the bare backend call.

LR-ASPP MobileNetV3-Small (19 classes, 512x512, random weights: timing does not depend on them)
is converted with edgeseg.converters for each backend that runs here. For each, on a 720p RGB
frame, in the same loop and interleaved (so machine load hits both alike):
  predict = seg.predict(frame)         resize + normalize + layout + backend + argmax + mask resize
  invoke  = seg.backend.run(tensor)    the backend alone on a ready input tensor (ONNX Runtime and
                                       OpenVINO write into the thread's reused output buffers here
                                       as in predict; LiteRT's plain call copies the input in and the
                                       outputs out, which seg.predict avoids by working in the
                                       interpreter's own buffers)
The budget is predict <= 1.10 x invoke (medians over every iteration of every round; each round
visits every file, so load at one moment does not fall on one file only). Writes
benchmarks/results/runtime_overhead.{md,json}.

    nice -n 10 python benchmarks/runtime_overhead.py [--rounds 3] [--iterations 30] [--threads 1]
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

from edgeseg.runtime.formats import FORMATS, targets

RESULTS = Path(__file__).resolve().parent / "results"
MODEL, CLASSES, SIZE, FRAME = "lraspp_mobilenetv3_small", 19, (512, 512), (720, 1280)
BUDGET = 0.10
# Label -> (converter target, options) of each file timed (TFLite is NHWC on devices). The
# "+argmax" files end in argmax inside the graph (`edgeseg convert --argmax`): the backend then
# does the class reduction, and the runtime only resizes the mask. The "/8" files end at the
# head's own resolution (`--output-stride 8`: 64x64 logits, no final upsample in the graph); the
# runtime makes the mask of the upsampled logits (edgeseg.runtime.processing.argmax_upsampled).
TARGETS = {
    "onnx": ("onnx", {}),
    "onnx+argmax": ("onnx", {"argmax": True}),
    "onnx/8": ("onnx", {"output_stride": 8}),
    "openvino": ("openvino", {}),
    "openvino/8": ("openvino", {"output_stride": 8}),
    "tflite": ("tflite", {"layout": "nhwc"}),
    "tflite+argmax": ("tflite", {"layout": "nhwc", "argmax": True}),
    "tflite/8": ("tflite", {"layout": "nhwc", "output_stride": 8}),
    "torch": None,
}


def _scenes(count: int = 4) -> list[np.ndarray]:
    """Synthetic 720p street-like scenes (flat regions, edges; edgeseg.data's generator)."""
    from edgeseg.quantization.calibration import held_out_images

    return held_out_images("synthetic:val", count, FRAME)


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
        out = folder / f"{label.replace('+', '_').replace('/', '_s')}{FORMATS[target].suffix}"
        try:
            files[label] = convert(model, target, input_size=SIZE, out=out, **options).path
        except Exception as exc:  # a target that fails is reported, the others still run
            print(f"{label}: conversion failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        print(f"{label}: converted in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return files


class Timer:
    """One file's session, timed in rounds; every round is predict and invoke interleaved."""

    def __init__(self, path: Path, frame: np.ndarray, threads: int):
        import edgeseg.runtime as rt

        self.seg = rt.load(path, threads=threads)
        self.frame = frame
        tensor, self.placement = self.seg._pre(frame, bgr=False)
        self.tensor = tensor.copy()
        self.name, self.post = self.seg._post[None]
        self.times: dict[str, list[float]] = {"predict": [], "invoke": [], "pre": [], "post": []}
        self.round_overheads: list[float] = []
        for _ in range(3):  # warm-up: first calls allocate and pick kernels
            self.seg.predict(frame)
            self.seg.backend.run(self.tensor)

    def round(self, iterations: int) -> None:
        seg, frame = self.seg, self.frame
        times = {k: [] for k in self.times}
        for _ in range(iterations):
            t0 = time.perf_counter()
            seg.predict(frame)
            t1 = time.perf_counter()
            output = seg.backend.run(self.tensor)[self.name]
            t2 = time.perf_counter()
            seg._pre(frame, bgr=False)
            t3 = time.perf_counter()
            self.post.mask(output, self.placement, *frame.shape[:2])
            t4 = time.perf_counter()
            del output
            for key, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[key].append(seconds)
        self.round_overheads.append(float(np.median(times["predict"]) / np.median(times["invoke"]) - 1))
        for key, values in times.items():
            self.times[key] += values

    def result(self) -> dict:
        med = {f"{k}_ms": float(np.median(v)) * 1000 for k, v in self.times.items()}
        med["overhead"] = med["predict_ms"] / med["invoke_ms"] - 1
        med["round_overheads"] = self.round_overheads
        med["within_budget"] = med["overhead"] <= BUDGET
        med["layout"] = self.seg.metadata.layout
        med["argmax_in_graph"] = self.seg.metadata.argmax
        med["backend"] = self.seg.backend.name
        med["precision"] = self.seg.precision
        med["output_stride"] = self.seg.metadata.output_stride
        return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30, help="interleaved iterations per round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds over every file, so machine noise at one moment hits all files")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from edgeseg.fileio import write_results

    frame = np.random.default_rng(0).integers(0, 256, (*FRAME, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        files = convert_all(Path(folder))
        timers = {target: Timer(path, frame, args.threads) for target, path in files.items()}
        for _ in range(args.rounds):
            for timer in timers.values():
                timer.round(args.iterations)
        results = {target: timer.result() for target, timer in timers.items()}
        # Low-resolution files: their masks against the full-resolution file's of the same target,
        # on the frame and on natural-looking synthetic scenes (random weights give noisy maps,
        # the hardest case for a coarse output).
        scenes = [frame, *_scenes()]
        for label in [t for t in results if "/" in t]:
            full = timers[label.split("/")[0]].seg
            low = timers[label].seg
            same = [np.mean(full.predict(image) == low.predict(image)) for image in scenes]
            results[label]["agreement"] = float(np.mean(same))
            results[label]["agreement_min"] = float(np.min(same))
        del timers
    skipped = {name: f"{fmt.title} models run only on {fmt.where()}"
               for name, fmt in targets().items() if not fmt.runs_here()}
    for target in TARGETS:
        if target not in results:
            skipped.setdefault(target, "conversion failed (see the benchmark's stderr)")
    report = {
        "model": MODEL, "classes": CLASSES, "input_size": SIZE, "frame": FRAME,
        "iterations": args.iterations, "rounds": args.rounds, "threads": args.threads, "budget": BUDGET,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "python": platform.python_version(),
        "results": results, "skipped": skipped,
    }
    lines = [
        "# Runtime overhead: seg.predict on a 720p frame vs the bare backend call",
        "",
        f"{MODEL}, {CLASSES} classes, {SIZE[0]}x{SIZE[1]} input, {FRAME[1]}x{FRAME[0]} RGB frame, "
        f"threads={args.threads}, {args.rounds} rounds over all files of {args.iterations} interleaved "
        "iterations each; times are medians over every iteration. "
        f"Budget: pre+post adds at most {BUDGET:.0%}. Load average at the end of the run: "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} (a shared machine: compare rows, not runs).",
        "",
        "| file | backend | layout | argmax | output | predict (ms) | invoke (ms) | pre (ms) | post (ms) | overhead | per round | within budget | mask = full-res file |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for target, r in results.items():
        agree = f"{r['agreement']:.3%} (min {r['agreement_min']:.3%})" if "agreement" in r else "-"
        lines.append(
            f"| {target} | {r['backend']} ({r['precision']}) | {r['layout']} | {'graph' if r['argmax_in_graph'] else 'numpy'} | "
            f"1/{r['output_stride']} | {r['predict_ms']:.1f} | {r['invoke_ms']:.1f} | "
            f"{r['pre_ms']:.1f} | {r['post_ms']:.1f} | {r['overhead']:+.1%} | "
            f"{', '.join(f'{o:+.1%}' for o in r['round_overheads'])} | {'yes' if r['within_budget'] else 'NO'} | {agree} |"
        )
    for target, why in skipped.items():
        lines.append(f"| {target} | - | - | - | - | - | - | - | - | - | - | skipped: {why} | - |")
    lines += [
        "",
        "pre = resize of the 720p frame to the input + one table lookup per channel (normalize, "
        "quantize, layout), written straight into LiteRT's input buffer by seg.predict; post = class "
        "argmax over the logits (numpy/OpenCV, when not in the graph) + nearest resize of the mask "
        "to 720p. invoke is edgeseg's backend call on a ready tensor: ONNX Runtime writes its outputs "
        "into buffers each thread reuses (I/O binding) and OpenVINO into the thread's request, in "
        "invoke and predict alike; LiteRT's plain call sets the input and copies the outputs out "
        "(set_tensor, get_tensor), which seg.predict avoids by working in the interpreter's buffers. "
        "Compare predict across rows for end-to-end cost: an argmax inside the graph moves that work "
        "into invoke.",
        "",
        f"With logits out, post is bounded by memory bandwidth: the argmax reads {CLASSES} x "
        f"{SIZE[0]} x {SIZE[1]} float32 logits (19 MB) that the graph has just written. Measured on "
        "this machine, single-threaded, right after a graph call: one plain read of them (np.max) "
        "takes 1.4 ms, the OpenCV running-max argmax 2.0-2.1 ms from a reused output buffer (2.5 ms "
        "from memory ONNX Runtime allocates per call), and a fused single-pass compiled loop (numba, "
        "tried, not shipped) 2.35 ms: a compiled kernel does not beat it. NHWC logits are first "
        "transposed to class planes band by band (3.6-3.9 ms in all), which is why LiteRT files that "
        "should end in a mask are best converted with --argmax (the tflite+argmax row).",
        "",
        "The /8 rows are files converted with --output-stride 8: the graph ends at the head's 64 x 64 "
        "logits (no final upsample, 64x fewer logits written and read), and post makes the mask the "
        "full-resolution graph would (bilinear upsample to the input, argmax) without upsampling "
        "every class: where the 4 low-resolution samples around a pixel share their argmax class, "
        "the blend of their logits has it too (non-negative weights), so only the tiles between "
        "samples of different classes are blended, over their samples' classes first and over "
        "every class where a bound says another class could win (exact), then the mask is resized "
        "to the frame (nearest). 'mask = full-res file' is the share of pixels whose class equals the "
        "full-resolution file's on the 720p frame and 4 synthetic 720p scenes (mean, min). Random "
        "weights give noisy class maps with boundaries everywhere: the slowest case for post. "
        "Measured alternatives on a trained LR-ASPP-S (synthetic data, 512x512 input, 6 held-out "
        "720p scenes, against the full-resolution graph): argmax at 1/8 then nearest to 720p agrees "
        "on 94.9% of pixels (below the 99.5% goal, so --argmax with --output-stride is refused); "
        "logits upsampled bilinearly straight to 720p then argmax agree on 99.35% and cost a 19-class "
        "720p resize and argmax (several times the whole post of the full-resolution file).",
        "",
        "Reproduce: `nice -n 10 python benchmarks/runtime_overhead.py --rounds 3 --iterations 40` "
        "(pre and post are also timed alone in the same loop; they are not subtracted from predict).",
        "",
    ]
    write_results(RESULTS, "runtime_overhead", report, lines)


if __name__ == "__main__":
    main()
