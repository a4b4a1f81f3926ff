"""Interop benchmark: plain `edgeseg convert` files in the platforms' own segmentation APIs.

For LR-ASPP MobileNetV3-Small and SegFormer-B0 checkpoints trained briefly on the synthetic
street scenes, fp32 and int8, every file is written by a plain `edgeseg convert` (no options but
target, precision and input size) and run unchanged in
  - MediaPipe Tasks' ImageSegmenter (.tflite): reads the standard TFLite metadata edgeseg writes;
  - OpenVINO Model API, `Model.create_model(xml)` (.xml): reads the model_info rt_info;
on natural photos (scikit-image's bundled photos, each at its own size). Each row gives the
pixel agreement of the consumer's class mask with `edgeseg.runtime`'s:
  - at the photo's size (the consumer resizes as it does on the device),
  - with the photo first resized to the model's input size (neither side resizes: isolates what
    the file declares from how each library resamples),
  - "same resampling / precision": for MediaPipe, at the photo's size with MediaPipe's own
    resampling redone on edgeseg.runtime's logits (pixel-corner input sampling, corner-aligned
    logit interpolation, then argmax); for Model API, the photo at model size with the file
    compiled at f32 as edgeseg.runtime compiles it (Model API keeps the CPU's default precision,
    bf16 on CPUs with bf16 units). What is left is neither a resize nor a precision difference.

Training (skipped when the checkpoints exist): `edgeseg train` for --iters steps at 128x128 on
the synthetic data, into runs/interop/ (ignored by git).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/interop.py
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "interop"
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # the consumers as the interop tests call them

from interop_helpers import (  # noqa: E402
    mediapipe_category_mask, mediapipe_style_input, mediapipe_style_mask, model_api_mask,
)

from edgeseg.validate.environment import describe, environment  # noqa: E402

MODELS = ("lraspp_mobilenetv3_small", "segformer_b0")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
TARGET = 0.99


def photo(name: str) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def checkpoint(model: str, iters: int) -> Path:
    """The briefly trained checkpoint of ``model`` (trained here when missing)."""
    out = RUNS / model
    for name in ("best.safetensors", "last.safetensors"):
        if (out / name).is_file():
            return out / name
    cmd = [sys.executable, "-m", "edgeseg", "train", "--model", model, "--data", "synthetic", "--size", "128x128",
           "--iters", str(iters), "--batch-size", "8", "--eval-every", str(iters), "--workers", "0", "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return checkpoint(model, iters)


# An int8 file the accuracy gate refuses (a briefly trained checkpoint can lose more than the gate
# allows) is converted again with the gate opened this far: interop compares the consumer with
# edgeseg.runtime on the same file, whatever its accuracy. Such rows say so.
LOOSE_GATE = ["--max-miou-drop", "20", "--min-agreement", "0.5"]


def convert_plain(ckpt: Path, target: str, precision: str, size: int) -> tuple[Path, str]:
    """`edgeseg convert CKPT --target T --precision P --input-size SxS`, nothing else; returns
    the file and "" (or the gate's refusal, when the file needed LOOSE_GATE)."""
    suffix = {"tflite": ".tflite", "openvino": ".xml"}[target]
    out = RUNS / "files" / f"{ckpt.parent.name}_{size}_{precision}{suffix}"
    refusal_file = out.with_name(out.name + ".gate-refused.txt")
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "edgeseg", "convert", str(ckpt), "--target", target, "--precision", precision,
               "--input-size", f"{size}x{size}", "--out", str(out)]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0 and "fails the accuracy gate" in done.stderr:
            refusal_file.write_text(done.stderr.strip().splitlines()[-1])
            done = subprocess.run(cmd + LOOSE_GATE, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[2:])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return out, refusal_file.read_text() if refusal_file.exists() else ""


def measure(path: Path, consumer: str) -> dict:
    import cv2

    import edgeseg.runtime as rt

    seg = rt.load(path)
    h, w = seg.metadata.input_size
    rows = []
    for name in PHOTOS:
        image = photo(name)
        ours = seg.predict(image)
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        ours_small = seg.predict(small)
        if consumer == "mediapipe":
            theirs, labels = mediapipe_category_mask(path, image)
            theirs_small, _ = mediapipe_category_mask(path, small)
            logits = seg.predict(mediapipe_style_input(image, h, w), logits=True)
            emulated = float(np.mean(theirs == mediapipe_style_mask(logits, *image.shape[:2])))
        else:
            theirs, wrapper = model_api_mask(path, image)
            theirs_small, _ = model_api_mask(path, small)
            labels = list(wrapper.params.labels)
            # Model API compiles at the CPU's default precision (bf16 here); edgeseg at f32.
            emulated = float(np.mean(model_api_mask(path, small, f32=True)[0] == ours_small))
        rows.append({
            "photo": name, "size": list(image.shape[:2]),
            "agreement": float(np.mean(theirs == ours)),
            "agreement_at_model_size": float(np.mean(theirs_small == ours_small)),
            "agreement_with_its_resampling": emulated,
            "classes_in_mask": int(len(np.unique(ours))),
            "labels_read": labels == [c.replace(" ", "_") for c in seg.metadata.classes],
        })
    return {"photos": rows, "min_agreement": min(r["agreement"] for r in rows),
            "min_at_model_size": min(r["agreement_at_model_size"] for r in rows),
            "min_with_its_resampling": min(r["agreement_with_its_resampling"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="model input size (square)")
    parser.add_argument("--iters", type=int, default=300, help="training steps when a checkpoint is missing")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--render-only", action="store_true", help="rewrite interop.md from interop.json")
    args = parser.parse_args()
    if args.render_only:
        from edgeseg.fileio import write_text_atomic

        write_text_atomic(RESULTS / "interop.md", render(json.loads((RESULTS / "interop.json").read_text())))
        return
    warnings.filterwarnings("ignore")
    started = time.time()
    results = []
    for model in args.models:
        ckpt = checkpoint(model, args.iters)
        for precision in ("fp32", "int8"):
            for target, consumer in (("tflite", "mediapipe"), ("openvino", "model_api")):
                path, refused = convert_plain(ckpt, target, precision, args.size)
                row = {"model": model, "precision": precision, "file": path.name, "consumer": consumer,
                       "gate_refused_plain_convert": refused, **measure(path, consumer)}
                results.append(row)
                print(f"{model} {precision} {consumer}: min agreement {row['min_agreement']:.4f} "
                      f"(model size {row['min_at_model_size']:.4f})", flush=True)
    report = {
        "benchmark": "interop", "size": args.size, "photos": list(PHOTOS), "target": TARGET,
        "environment": environment(libraries=CONSUMER_LIBRARIES), "seconds": round(time.time() - started),
        "rows": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    from edgeseg.fileio import write_json_atomic, write_text_atomic

    write_json_atomic(RESULTS / "interop.json", report)
    write_text_atomic(RESULTS / "interop.md", render(report))


# The consumers' own distributions, recorded with the machine (edgeseg.validate.environment).
CONSUMER_LIBRARIES = ("mediapipe", "openvino-model-api", "opencv-contrib-python")
CONSUMERS = {"mediapipe": "MediaPipe", "model_api": "Model API"}


def at_model_size(report: dict) -> str:
    """Which files each consumer segments exactly as edgeseg.runtime with the photo at model size
    (no one resizes), from this run's rows."""
    parts = []
    for consumer, label in CONSUMERS.items():
        rows = [r for r in report["rows"] if r["consumer"] == consumer]
        same = [f"{r['model']} {r['precision']}" for r in rows if r["min_at_model_size"] >= 1.0]
        differ = [f"{r['model']} {r['precision']} ({r['min_at_model_size']:.1%})" for r in rows
                  if r["min_at_model_size"] < 1.0]
        parts.append(f"{label}'s masks are edgeseg's on {', '.join(same) or 'no file'}"
                     + (f", not on {', '.join(differ)}" if differ else ""))
    return "With the photo at the model's size (no one resizes), " + "; ".join(parts) + " (this run)."


NOTES = """Where the masks differ, and why. The files declare the same preprocessing to every consumer.
At the model's size, a difference in MediaPipe comes from its own TFLite build: the same file and
input, int8 kernels that round differently from ai-edge-litert's (seen on SegFormer-B0 int8 when this
was written; not investigated further). At the photo's own size:

- MediaPipe's CPU ImageToTensor samples the photo at pixel corners (`x * W / w`), edgeseg (like
  OpenCV's resize and PyTorch's interpolate, and the training pipeline) at pixel centres
  (`(x + 0.5) * W / w - 0.5`): MediaPipe's model input is shifted by half a model pixel, 0.5 to 2.3
  photo pixels here. That shift alone accounts for most of the gap (a one-off analysis when this was
  written, not re-run by this script: LR-ASPP fp32, MediaPipe's input sampling with edgeseg's mask
  resize, astronaut 94.7%, hubble 91.7%; its corner-aligned logit interpolation alone, 98.8%, 99.3%).
  Redoing both on edgeseg.runtime's logits (the "same resampling" column) gives
  MediaPipe's mask back (fp32 rows). Int8 logits are quantized: interpolated between equal
  quantized values they tie exactly, and float rounding picks the class, so the int8 rows stay
  below 100% there. Nothing in the file can change MediaPipe's sampling (measured on its CPU path;
  its GPU path was not run here).
- Model API resizes inside the compiled model (OpenVINO's preprocessing, linear) and compiles at
  the CPU's default precision, bf16 on this CPU (edgeseg.runtime pins f32; no rt_info key sets the
  precision, `OpenvinoAdapter(..., plugin_config={"INFERENCE_PRECISION_HINT": "f32"})` does). Both
  take the argmax at model size and resize the mask with nearest neighbours, so only the input
  resize and the precision differ.
- The checkpoints are trained for a few hundred steps on synthetic street scenes and segment
  natural photos into fragmented regions: many region borders, where any resampling difference
  shows. Better-trained models have fewer borders and agree more."""


def render(report: dict) -> str:
    lines = [
        "# Interop: plain `edgeseg convert` files in MediaPipe ImageSegmenter and OpenVINO Model API",
        "",
        f"Model input {report['size']}x{report['size']}; {len(report['photos'])} natural photos at their own "
        f"sizes ({', '.join(report['photos'])}); class-mask pixel agreement with `edgeseg.runtime`, the "
        f"lowest over the photos (target >= {report['target']:.0%} per row).",
        "",
        "Machine: " + describe(report["environment"], ("ai-edge-litert", "openvino", *CONSUMER_LIBRARIES,
                                                       "opencv-python-headless")) + ".",
        "",
        "| model | precision | consumer | agreement (photo size) | agreement (photo at model size) | "
        "same resampling / precision (see below) | labels read | >= target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        resampled = f"{r['min_with_its_resampling']:.2%}"
        star = " (*)" if r["gate_refused_plain_convert"] else ""
        lines.append(
            f"| {r['model']} | {r['precision']}{star} | {r['consumer']} | {r['min_agreement']:.2%} | "
            f"{r['min_at_model_size']:.2%} | {resampled} | {all(p['labels_read'] for p in r['photos'])} | "
            f"{'yes' if r['min_agreement'] >= report['target'] else 'NO'} |"
        )
    refused = [r for r in report["rows"] if r["gate_refused_plain_convert"]]
    if refused:
        def drop(text: str) -> str:
            found = re.search(r"mIoU drops [0-9.]+ points \(gate [0-9.]+\)", text)
            return found.group(0) if found else text[:120]

        lines += ["", "(*) the plain `edgeseg convert` refused this int8 file at its accuracy gate ("
                  + "; ".join(f"{r['file']}: {drop(r['gate_refused_plain_convert'])}" for r in refused)
                  + "): the checkpoint is barely trained. The file measured here is the same conversion "
                  f"with `{' '.join(LOOSE_GATE)}`; the agreement compares consumers on one file, whatever its accuracy."]
    lines += ["", "Per photo (agreement at photo size):", ""]
    for r in report["rows"]:
        lines.append(f"- {r['model']} {r['precision']} {r['consumer']}: " + ", ".join(
            f"{p['photo']} {p['agreement']:.2%}" for p in r["photos"]))
    lines += ["", at_model_size(report), "", NOTES, "", f"Reproduce: `OMP_NUM_THREADS=1 nice -n 10 python benchmarks/interop.py` ({report['seconds']} s "
              "here to measure; training the two checkpoints (300 steps each) and the 8 conversions took about "
              "45 minutes more on this shared CPU).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
