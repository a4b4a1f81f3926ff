"""The int8 gates for a QAT checkpoint fine-tuned on a GPU, beside QAT of the same float model on this CPU.

``benchmarks/gpu_train.py`` trains LR-ASPP MobileNetV3-Small at 128x256 on the GPU and QAT
fine-tunes it there (``--device cuda``); the GPU machine has no TFLite/OpenVINO converters, so its
two checkpoints come here. This script converts the GPU QAT checkpoint to int8 for every target
that runs here, each gated against the float checkpoint exactly as ``edgeseg qat`` gates (the
same ``convert`` call as :func:`edgeseg.quantization.qat.qat_and_convert`), then runs the same QAT
on this CPU from the same float checkpoint and gates that too.

    python benchmarks/gpu_qat_gate.py FLOAT.safetensors GPU_QAT.safetensors

Writes benchmarks/results/gpu_qat_gate.{md,json}.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from edgeseg.checkpoint import read_checkpoint_header
from edgeseg.converters import convert
from edgeseg.errors import EdgesegError
from edgeseg.fileio import write_json_atomic, write_text_atomic
from edgeseg.validate.environment import describe, environment
from edgeseg.quantization.options import QuantOptions
from edgeseg.quantization.qat import QatConfig, qat_finetune
from edgeseg.runtime.formats import FORMATS

TARGETS = ("tflite", "onnx", "openvino")  # the targets whose int8 runs here
RESULTS = Path(__file__).resolve().parent / "results"


def gate(checkpoint: Path, float_checkpoint: Path, out: Path) -> dict:
    quant = replace(QuantOptions(), reference=str(float_checkpoint))
    rows = {}
    for target in TARGETS:
        suffix = FORMATS[target].suffix
        try:
            result = convert(checkpoint, target, precision="int8", quant=quant, out=out / f"{checkpoint.stem}{suffix}")
            report = result.files[0].report
            rows[target] = {"passed": True, "summary": report.summary()}
        except EdgesegError as exc:
            rows[target] = {"passed": False, "summary": str(exc)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("float_checkpoint", type=Path)
    parser.add_argument("gpu_qat_checkpoint", type=Path)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="qat_gate_"))
    header = read_checkpoint_header(args.gpu_qat_checkpoint)[0]["extra"]["qat"]
    cpu_cfg = QatConfig("tflite", epochs=header["epochs"], train_images=header["train_images"],
                        batch_size=header["batch_size"], lr=header["lr"], optimizer=header.get("optimizer", "adamw"),
                        momentum=header.get("momentum"), device="cpu")  # QAT was AdamW before headers named it
    cpu = qat_finetune(args.float_checkpoint, cpu_cfg, scratch / "lraspp_small_qat_cpu.safetensors")
    results = {
        "environment": environment(),
        "gpu_qat": {"device": header.get("device"), "steps": header["steps"], "losses": header["losses"],
                    "gates": gate(args.gpu_qat_checkpoint, args.float_checkpoint, scratch)},
        "cpu_qat": {"device": cpu.device, "steps": cpu.steps, "losses": cpu.losses,
                    "images_per_s": cpu.images_per_s, "gates": gate(cpu.checkpoint, args.float_checkpoint, scratch)},
    }
    lines = ["# int8 gates: QAT on the GPU vs QAT on this CPU, same float checkpoint", "",
             "LR-ASPP MobileNetV3-Small 128x256, trained 1 minute on an H200 (`benchmarks/gpu_train.py`); "
             f"QAT {header['epochs']} epochs of {header['train_images']} images, batch {header['batch_size']}. "
             "Each int8 file gated against the float checkpoint as `edgeseg qat` gates it.", "",
             f"CPU QAT and gates on: {describe(results['environment'], ('torch', 'torchao', 'litert-torch', 'ai-edge-litert', 'onnxruntime', 'openvino', 'nncf'))}.", "",
             "| QAT on | target | passed | gate |", "|---|---|---|---|"]
    for key in ("gpu_qat", "cpu_qat"):
        for target, row in results[key]["gates"].items():
            summary = row["summary"].replace("\n", " ").replace("|", "/")
            lines.append(f"| {results[key]['device']} | {target} | {'yes' if row['passed'] else 'NO'} | {summary} |")
    lines += ["", f"QAT losses per epoch: GPU {results['gpu_qat']['losses']}, CPU {results['cpu_qat']['losses']}.",
              "Command: `python benchmarks/gpu_qat_gate.py FLOAT GPU_QAT` (both checkpoints from gpu_train.py)."]
    write_json_atomic(RESULTS / "gpu_qat_gate.json", results)
    write_text_atomic(RESULTS / "gpu_qat_gate.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
