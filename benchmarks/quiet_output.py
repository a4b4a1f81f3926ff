"""Lines printed by ``edgeseg convert`` of a small checkpoint to every target and precision, by
default (third-party output silenced) and with ``--verbose`` (everything the libraries print,
which is what every conversion printed before issue 17).

    python benchmarks/quiet_output.py [--checkpoint CKPT] [--size 64x64] [--only tflite:int8 ...]

Without ``--checkpoint`` a tiny LR-ASPP MobileNetV3-Small is trained for 10 steps on synthetic
data first (its classes match the synthetic calibration and gate data of the int8 conversions).
``--only TARGET:PRECISION`` (repeatable) measures those rows again into the existing results.
Writes ``benchmarks/results/quiet_output.{md,json}`` (with each run's full output in the JSON).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeseg.fileio import write_results
from edgeseg.runtime.formats import targets
from edgeseg.validate.environment import describe, environment

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SUFFIX = {name: fmt.suffix for name, fmt in targets().items()}
CASES = [(t, "fp32") for t in SUFFIX] + [(t, "int8") for t in SUFFIX]


def edgeseg(*args: str) -> tuple[int, str, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True, cwd=ROOT)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint")
    parser.add_argument("--size", default="64x64")
    parser.add_argument("--only", action="append", default=[], help="TARGET:PRECISION rows to measure again")
    args = parser.parse_args()
    previous = {}
    if args.only:
        old = json.loads((RESULTS / "quiet_output.json").read_text())
        previous = {(r["target"], r["precision"]): r for r in old["rows"]}
        args.checkpoint = args.checkpoint or old["checkpoint"]
    work = Path(tempfile.mkdtemp(prefix="quiet_output_"))
    checkpoint = args.checkpoint
    if checkpoint is None:
        rc, text, _ = edgeseg("train", "--model", "lraspp_mobilenetv3_small", "--iters", "10", "--size", args.size,
                              "--batch-size", "2", "--workers", "0", "--data-option", "length=16",
                              "--out", str(work / "run"), "--no-progress")
        if rc:
            raise SystemExit(f"training the checkpoint failed:\n{text}")
        checkpoint = str(work / "run" / "last.safetensors")
    rows = []
    for target, precision in CASES:
        if args.only and f"{target}:{precision}" not in args.only:
            rows.append(previous[(target, precision)])
            continue
        row = {"target": target, "precision": precision}
        for mode, flags in (("verbose", ["--verbose"]), ("default", [])):
            out = work / mode / f"m_{precision}{SUFFIX[target]}"
            extra = ["--calib-size", "8", "--gate-images", "4"] if precision == "int8" else []
            rc, text, seconds = edgeseg(*flags, "convert", checkpoint, "--target", target, "--precision", precision,
                                        "--input-size", args.size, "--out", str(out), *extra)
            row[mode] = {"exit": rc, "lines": len(text.splitlines()), "seconds": round(seconds, 1), "output": text}
            print(f"{target} {precision} {mode}: exit {rc}, {row[mode]['lines']} lines, {seconds:.0f} s", flush=True)
        rows.append(row)
    env = environment()
    lines = [
        "# Lines printed by `edgeseg convert` (stdout + stderr)", "",
        f"`python benchmarks/quiet_output.py` on a {args.size} LR-ASPP MobileNetV3-Small checkpoint "
        "(10 training steps). `--verbose` shows what the libraries print (what every conversion "
        "printed before issue 17, plus the two stage lines convert prints now); the default silences it. "
        "Each output below is stdout, then stderr. Full outputs in quiet_output.json.", "",
        f"Versions: {describe(env, ('torch', 'onnx', 'onnxruntime', 'litert-torch', 'ai-edge-litert', 'coremltools', 'openvino', 'nncf', 'torchao'))}.", "",
        "| target | precision | --verbose lines | default lines | exit (verbose / default) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['target']} | {r['precision']} | {r['verbose']['lines']} | {r['default']['lines']} | "
                     f"{r['verbose']['exit']} / {r['default']['exit']} |")
    lines += ["", "Default output of each conversion:", ""]
    for r in rows:
        lines += [f"- {r['target']} {r['precision']}:", "", "```", r["default"]["output"].rstrip(), "```", ""]
    write_results(RESULTS, "quiet_output", {"checkpoint": checkpoint, "size": args.size, "environment": env,
                                            "rows": rows}, lines, echo=False)
    print(f"wrote {RESULTS / 'quiet_output.md'}")


if __name__ == "__main__":
    main()
