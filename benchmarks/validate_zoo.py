"""Trained synthetic models -> every target and precision -> validated and benched in one run.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/validate_zoo.py [--checkpoint PATH ...]

Checkpoints default to the ones benchmarks/train_synthetic.py writes. Each is converted with
edgeseg.converters to every (target, precision) in the converters' target table (conversions are
cached under runs/validate_zoo/ and redone when the checkpoint is newer), then every file and the
checkpoint itself are scored by edgeseg.validate against the PyTorch reference on the same
synthetic validation images, and timed round robin on one thread.

Writes benchmarks/results/validate_zoo.{md,json} (all models) and, per model,
benchmarks/results/validate_zoo_<name>.{md,json,html} (the harness's own report with plots).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "runs" / "validate_zoo"
DEFAULT_CHECKPOINTS = (
    "runs/bench_train_synthetic/lraspp_small/best.safetensors",
    "runs/bench_train_synthetic/multidomain/best.safetensors",
)


def snapshot(checkpoint: Path, label: str) -> tuple[Path, bool]:
    """A private copy of the checkpoint (training may rewrite the original mid-run); True when it
    is the same bytes as last time, so the cached conversions of it are still valid."""
    folder = CACHE / label
    copy, stamp = folder / "reference.safetensors", folder / "reference.sha256"
    if not checkpoint.is_file():  # being retrained right now: validate the last snapshot again
        return copy, True
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    if copy.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return copy, True
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copyfile(checkpoint, copy)
    stamp.write_text(digest + "\n")
    return copy, False


def convert_everywhere(checkpoint: Path, label: str, reuse: bool) -> tuple[list[dict], list[Path]]:
    """One file per (target, precision) the converters accept; a failure is a row, not a stop."""
    from edgeseg.converters import TARGETS, convert
    from edgeseg.errors import EdgesegError

    rows, files = [], []
    for target, spec in TARGETS.items():
        for precision in spec.precisions:
            dest = CACHE / label / f"{label}_{precision}{spec.suffixes[0]}"
            row = {"target": target, "precision": precision, "file": dest.name}
            if reuse and dest.exists():
                row.update(result="reused (converted from the same checkpoint bytes before)", seconds=None)
            else:
                start = time.perf_counter()
                try:
                    convert(checkpoint, target, precision=precision, out=dest)
                    row["result"] = "converted and verified by the converter"
                except EdgesegError as exc:
                    row["result"] = f"conversion failed: {type(exc).__name__}: {str(exc)[:300]}"
                row["seconds"] = round(time.perf_counter() - start, 1)
            print(f"[{label}] {target} {precision}: {row['result']} ({row['seconds']} s)", flush=True)
            rows.append(row)
            if dest.exists():
                files.append(dest)
    return rows, files


def conversions_markdown(rows: list[dict]) -> list[str]:
    lines = ["| target | precision | file | conversion | seconds |", "|---|---|---|---|---|"]
    for r in rows:
        seconds = "cached" if r["seconds"] is None else f"{r['seconds']:.1f}"
        lines.append(f"| {r['target']} | {r['precision']} | {r['file']} | {r['result']} | {seconds} |")
    return lines


def summary_line(rows: list[dict], run) -> str:
    from collections import Counter

    converted = sum(1 for r in rows if not r["result"].startswith("conversion failed"))
    statuses = Counter(f.status for f in run.files)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    return f"**{converted} of {len(rows)} conversions kept; validation of the kept files and the checkpoint: {counts}.**"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", help="edgeseg .safetensors checkpoint (repeat)")
    parser.add_argument("--limit", type=int, default=50, help="validation images per domain")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per file")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    from edgeseg.checkpoint import read_checkpoint_header
    from edgeseg.validate import validate
    from edgeseg.validate.bench import bench
    from edgeseg.validate.report import SCHEMA_VERSION, accuracy_markdown, latency_markdown, report_dict, write_report
    from edgeseg.validate.tables import environment_lines

    given = [Path(c).resolve() if args.checkpoint else ROOT / c for c in (args.checkpoint or DEFAULT_CHECKPOINTS)]
    os.chdir(ROOT)  # reports name files relative to the repository
    checkpoints = [c.relative_to(ROOT) if c.is_relative_to(ROOT) else c for c in given]
    missing = [str(c) for c in checkpoints if not c.is_file() and not (CACHE / c.parent.name / "reference.safetensors").is_file()]
    if missing:
        print(f"missing checkpoints {missing}: run benchmarks/train_synthetic.py first, or pass --checkpoint", file=sys.stderr)
        return 2
    started = time.perf_counter()
    summary = {"schema": "edgeseg.benchmarks.validate_zoo", "schema_version": SCHEMA_VERSION,
               "command": "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/validate_zoo.py " + " ".join(argv or sys.argv[1:]),
               "limit": args.limit, "runs": args.runs, "warmup": args.warmup, "threads": args.threads, "models": []}
    markdown = ["# Validation zoo: every target and precision vs the PyTorch reference", ""]
    environment = None
    for source in checkpoints:
        label = source.parent.name
        checkpoint, reuse = snapshot(source, label)
        checkpoint = checkpoint.relative_to(ROOT)  # CACHE lies inside the repository
        header, metadata = read_checkpoint_header(checkpoint)
        rows, files = convert_everywhere(checkpoint, label, reuse)
        files = [f.relative_to(ROOT) for f in files]
        run = validate(
            files + [checkpoint], checkpoint, "synthetic:val", limit=args.limit,
            data_options={"size": metadata.input_size}, threads=args.threads, progress=print,
        )
        timing = bench([checkpoint] + files, threads=args.threads, warmup=args.warmup, runs=args.runs, progress=print)
        environment = timing.environment
        written = write_report(RESULTS, validation=run, bench=timing, name=f"validate_zoo_{label}")
        summary["models"].append({
            "checkpoint": str(source), "snapshot": str(checkpoint),
            "snapshot_sha256": (CACHE / label / "reference.sha256").read_text().strip(), "model": header["model"],
            "input_size": list(metadata.input_size), "domains": [d.name for d in metadata.domains],
            "conversions": rows, "report": report_dict(run, timing),
        })
        markdown += [
            f"## `{label}`: {header['model']} at {metadata.input_size[0]}x{metadata.input_size[1]}", "",
            f"Checkpoint `{source}` (validated from its copy `{checkpoint}`); full report with plots: "
            f"`{written.html.name}`.", "",
            summary_line(rows, run), "",
            "### Conversions", "", *conversions_markdown(rows), "",
            *["#" + line if line.startswith("## ") else line for line in accuracy_markdown(run)],
            *["#" + line if line.startswith("## ") else line for line in latency_markdown(timing)],
        ]
    intro = [f"- {line}" for line in environment_lines(environment)] + [
        f"- command: `{summary['command'].strip()}`; {args.limit} synthetic val images per domain at each "
        f"checkpoint's input size; {args.warmup} warm-up + {args.runs} timed runs, {args.threads} thread(s), "
        f"round robin; total {(time.perf_counter() - started) / 60:.1f} min",
        "- The machine is shared with other jobs: latencies are noisy; compare files within one "
        "table (they were measured interleaved), not across runs.", "",
    ]
    markdown[2:2] = intro
    from edgeseg.fileio import write_json_atomic, write_text_atomic

    write_json_atomic(RESULTS / "validate_zoo.json", summary)
    write_text_atomic(RESULTS / "validate_zoo.md", "\n".join(markdown) + "\n")
    print(f"wrote {RESULTS / 'validate_zoo.md'} in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
