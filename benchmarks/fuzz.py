"""Hostile inputs at a large budget (issue 16): the generators of tests/fuzz_helpers.py, run in
worker subprocesses so that a native crash or a hang is counted, not fatal.

Families (cases per family set by the flags):
  metadata    hypothesis-generated edits of the edgeseg metadata of ONNX (plain, NHWC+argmax,
              two-head), TFLite and OpenVINO files without a checksum
  checkpoint  hypothesis-generated edits of a safetensors checkpoint's build header and metadata
  image       hypothesis-generated image files (modes, 16-bit/float, sizes, EXIF orientation,
              truncation, flipped bytes, decompression bombs, non-images) read as `predict` does
  bytes       truncated / zeroed / noised / bit-flipped spans of ONNX, TFLite, OpenVINO (.xml or
              .bin) files with and without a recorded checksum, and of a checkpoint
  cli         `python -m edgeseg predict` in a fresh process on files of the families above, with
              a file already in the output folder: exit 2 with an `error:` line and no traceback,
              or exit 0 with its masks; nothing else in the folder touched, no temporaries left

Outcomes: ran (loaded and gave a correct mask: the image's displayed size, class ids the metadata
names, exact pixels for lossless 8-bit RGB files), refused (a typed edgeseg error), and the
failures: traceback (an untyped exception), wrong (a silent wrong result: an invariant broken, a
file whose checksum no longer matches ran, a valid 8-bit image refused), crash, hang (no answer in
--timeout seconds), lost (cli: an output missing, a file overwritten, a temporary left behind).
Writes benchmarks/results/fuzz.{md,json}.

    nice -n 10 python benchmarks/fuzz.py [--metadata 1500] [--checkpoint 800] [--image 1500]
        [--bytes 1400] [--cli 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_helpers import (  # noqa: E402
    FAILURES, OUTCOMES, build_cases, checksummed_copies, run_in_workers, summarize,
)

CLI_OUTCOMES = ("ran", "refused", "traceback", "lost", "hang")


def cli_cases(results: list[dict], n: int, files: dict[str, Path], seed: int) -> list[dict]:
    """``n`` earlier cases to run again through ``edgeseg predict`` in a fresh process: model
    cases with a plain image, image cases with the plain ONNX file; half of them ones that were
    refused in process (the CLI must say ``error:`` for each)."""
    rng = random.Random(seed)
    # Not the two-head file: its in-process run picks the first domain, the CLI needs --domain.
    pool = [r for r in results if r["family"] in ("metadata", "image", "bytes", "checkpoint")
            and r["outcome"] in ("ran", "refused") and r["format"] != "onnx_two_heads"]
    refused = [r for r in pool if r["outcome"] == "refused"]
    ran = [r for r in pool if r["outcome"] == "ran"]
    picked = rng.sample(refused, min(len(refused), n // 2)) + rng.sample(ran, min(len(ran), n - n // 2))
    return picked


def run_cli_case(case: dict, plain_image: Path, folder: Path, timeout: float) -> tuple[str, str]:
    out = folder / "out"
    out.mkdir(parents=True, exist_ok=True)
    for p in out.iterdir():
        p.unlink()
    sentinel = out / "keep.png"
    sentinel.write_bytes(b"someone else's file")
    if case["kind"] == "image":
        model, image = case["model"], Path(case["path"])
    else:
        model, image = case["path"], plain_image
    try:
        proc = subprocess.run([sys.executable, "-m", "edgeseg", "predict", model, str(image), "--out", str(out),
                               "--overlay", "--threads", "1"], capture_output=True, text=True, cwd=ROOT,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "hang", f"no exit in {timeout:.0f} s"
    text = proc.stdout + proc.stderr
    if "Traceback" in text:
        return "traceback", text[-600:]
    left = sorted(p.name for p in out.iterdir())
    if sentinel.read_bytes() != b"someone else's file":
        return "lost", "the file already in --out was overwritten"
    if any(name.endswith(".tmp") or name.startswith(".") for name in left):
        return "lost", f"temporaries left: {left}"
    if proc.returncode == 2 and "error: " in proc.stderr:
        if left != ["keep.png"]:
            return "lost", f"refused but wrote {left}"
        return "refused", proc.stderr.strip().splitlines()[-1][:300]
    if proc.returncode == 0:
        want = sorted(["keep.png", f"{image.stem}.png", f"{image.stem}_overlay.png"])
        return ("ran", "") if left == want else ("lost", f"exit 0 but the folder holds {left}")
    return "traceback", f"exit {proc.returncode} without an error line: {text[-600:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata", type=int, default=1500)
    parser.add_argument("--checkpoint", type=int, default=800)
    parser.add_argument("--image", type=int, default=1500)
    parser.add_argument("--bytes", type=int, default=1400)
    parser.add_argument("--cli", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a case may take before it is a hang")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image
    from runtime_helpers import build_files

    from edgeseg.fileio import write_json_atomic, write_text_atomic
    from edgeseg.validate.environment import describe, environment

    started = time.time()
    report: dict = {"families": {}, "failures": [], "seconds": {}}
    with tempfile.TemporaryDirectory(prefix="edgeseg-fuzz-") as scratch:
        folder = Path(scratch)
        t = time.time()
        files = build_files(folder / "models")
        files.update(checksummed_copies(files, folder / "sum"))
        report["seconds"]["build files"] = round(time.time() - t, 1)
        results: list[dict] = []
        for family in ("metadata", "checkpoint", "image", "bytes"):
            n = getattr(args, family)
            if n <= 0:
                continue
            t = time.time()
            cases = build_cases(family, n, files, folder / family, seed=args.seed)
            generated = time.time() - t
            print(f"{family}: {len(cases)} cases generated in {generated:.0f} s", file=sys.stderr, flush=True)

            def progress(i: int, family=family, total=len(cases)) -> None:
                if (i + 1) % 250 == 0:
                    print(f"  {family}: {i + 1}/{total}", file=sys.stderr, flush=True)

            t = time.time()
            done = run_in_workers(cases, folder, timeout_per_case=args.timeout, cwd=ROOT, progress=progress)
            report["seconds"][family] = {"generate": round(generated, 1), "run": round(time.time() - t, 1)}
            results += done
        cli_results = []
        if args.cli > 0:
            plain = folder / "plain.png"
            Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(plain)
            t = time.time()
            for i, case in enumerate(cli_cases(results, args.cli, files, args.seed)):
                outcome, detail = run_cli_case(case, plain, folder / "cli", args.timeout)
                # The CLI must agree with the in-process run: refused there, refused here.
                if outcome in ("ran", "refused") and outcome != case["outcome"]:
                    outcome, detail = "wrong", f"in process {case['outcome']}, CLI {outcome}: {detail}"
                cli_results.append({**case, "family": "cli", "format": f"{case['family']}", "outcome": outcome,
                                    "detail": detail})
                if (i + 1) % 20 == 0:
                    print(f"  cli: {i + 1}", file=sys.stderr, flush=True)
            report["seconds"]["cli"] = round(time.time() - t, 1)

        # Keep the input of every failure (the scratch folder goes): reproduce with run_case.
        keep = Path(tempfile.gettempdir()) / "edgeseg-fuzz-failures"
        for r in results + cli_results:
            if r["outcome"] in (*FAILURES, "lost") and Path(r["path"]).exists():
                keep.mkdir(exist_ok=True)
                for source in (Path(r["path"]), Path(r["path"]).with_suffix(".bin")):
                    if source.exists():
                        shutil.copy(source, keep / source.name)
                r["kept"] = str(keep / Path(r["path"]).name)

    everything = results + cli_results
    table = summarize([{**r, "outcome": r["outcome"] if r["outcome"] in OUTCOMES else "wrong"}
                       for r in results])
    cli_table: dict = {}
    for r in cli_results:
        row = cli_table.setdefault(r["format"], dict.fromkeys((*CLI_OUTCOMES, "wrong"), 0))
        row[r["outcome"]] += 1
    failures = [r for r in everything if r["outcome"] in (*FAILURES, "lost")]
    report.update({
        "environment": environment(),
        "args": vars(args),
        "total_cases": len(everything),
        "families": table,
        "cli": cli_table,
        "failures": [{k: r.get(k) for k in ("family", "format", "path", "kept", "what", "outcome", "detail")}
                     for r in failures],
        "minutes": round((time.time() - started) / 60, 1),
    })
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / "fuzz.json", report)

    counts = {o: sum(r["outcome"] == o for r in everything) for o in (*OUTCOMES, "lost")}
    lines = [
        "# Hostile inputs: fuzzing at a large budget", "",
        f"`nice -n 10 python benchmarks/fuzz.py` (seed {args.seed}); {len(everything)} cases in "
        f"{report['minutes']} min. Machine: {describe(report['environment'], ('onnxruntime', 'ai-edge-litert', 'openvino', 'opencv-python-headless', 'pillow'))}.", "",
        "Each case is refused with a typed edgeseg error (the CLI: `error: ...`, exit 2) or runs to a "
        "correct mask (the image's displayed size, class ids the metadata names, exact pixels for "
        "lossless 8-bit RGB files); a file recording a checksum whose bytes changed must be refused. "
        "Cases run in worker subprocesses: a native crash or a hang is counted, not fatal. "
        "Generators: tests/fuzz_helpers.py.", "",
        f"**Total: {len(everything)} cases; ran {counts['ran']}, refused {counts['refused']}; "
        f"tracebacks {counts['traceback']}, silent wrong results {counts['wrong']}, native crashes "
        f"{counts['crash']}, hangs {counts['hang']}, lost or overwritten outputs {counts['lost']}.**", "",
        "| family | format | cases | ran | refused | traceback | wrong | crash | hang |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for family, formats in table.items():
        for fmt, row in formats.items():
            lines.append(f"| {family} | {fmt} | {sum(row.values())} | " + " | ".join(str(row[o]) for o in OUTCOMES) + " |")
    if cli_table:
        lines += ["", "`edgeseg predict` in a fresh process, on files of each family (a file already in "
                  "`--out` must stay as it was; no temporaries left):", "",
                  "| files from | cases | ran | refused | traceback | lost | hang | disagrees with in-process |",
                  "|---|---|---|---|---|---|---|---|"]
        for fmt, row in cli_table.items():
            lines.append(f"| {fmt} | {sum(row.values())} | {row['ran']} | {row['refused']} | {row['traceback']} | "
                         f"{row['lost']} | {row['hang']} | {row['wrong']} |")
    if failures:
        lines += ["", "## Failures", ""]
        for r in failures[:50]:
            lines.append(f"- {r['family']} {r['format']} **{r['outcome']}**: {r['detail'][:300]} "
                         f"(case: {str(r.get('what', r.get('path')))[:200]})".replace("\n", " "))
    lines += ["", "Seconds: " + json.dumps(report["seconds"]), ""]
    write_text_atomic(RESULTS / "fuzz.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
