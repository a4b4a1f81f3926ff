"""CPU training throughput, before and after a change, in one interleaved run.

Runs the training benchmark's configuration (LR-ASPP MobileNetV3-Small, 128x256 synthetic
crops, batch 4, 1 loader worker, AdamW) for ``--iters`` steps with the code of ``--base`` (a git
commit, extracted to a temporary folder) and with this checkout, alternating A, B, A, B, ... so the
load of this shared machine falls on both alike. Reports images/s per run and the ratio of medians.

    python benchmarks/cpu_train_ab.py --base 76b077c --rounds 4
    # -> benchmarks/results/cpu_train_ab.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from edgeseg.validate.environment import describe, environment

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

CHILD = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[3]))
from edgeseg.train import TrainConfig, train
cfg = TrainConfig(model="lraspp_mobilenetv3_small", data=("synthetic",),
                  data_options={"size": [128, 256], "length": 400}, size=(128, 256),
                  optimizer="adamw", lr=3e-3, scale_range=(1.0, 1.0), iters=int(sys.argv[2]),
                  batch_size=4, workers=1, eval_limit=4, checkpoint_every=10_000, log_every=10,
                  seed=0, out=sys.argv[1], device="cpu")
result = train(cfg, progress=False)
print("RESULT", json.dumps({"images_per_s": result.images_per_s, "seconds": result.seconds}))
"""


def extract(commit: str, folder: Path) -> Path:
    """The tree of ``commit`` under ``folder``, importable as ``edgeseg`` from PYTHONPATH."""
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    for sub in ("converters", "quantization", "runtime"):  # what pyproject's package-dir maps
        (folder / "edgeseg" / sub).symlink_to(folder / sub)
    return folder


def run(tree: Path, out: Path, iters: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(out), str(iters), str(threads)],
                          env=env, capture_output=True, text=True, cwd=tree)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"training with {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="76b077c")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    runs: dict[str, list[float]] = {"base": [], "head": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "base").mkdir()
        base = extract(args.base, tmp / "base")
        trees = {"base": base, "head": ROOT}
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                result = run(tree, tmp / f"{name}{round_}", args.iters, args.threads)
                runs[name].append(result["images_per_s"])
                print(f"round {round_} {name}: {result['images_per_s']:.2f} images/s", flush=True)
    medians = {k: statistics.median(v) for k, v in runs.items()}
    ratio = medians["head"] / medians["base"]
    payload = {"base": args.base, "head": head, "iters": args.iters, "threads": args.threads,
               "runs_images_per_s": runs, "median_images_per_s": medians, "head_over_base": round(ratio, 3),
               "environment": environment(threads=args.threads)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cpu_train_ab.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [f"# CPU training throughput: {args.base} (before the GPU data path) vs {head}", "",
             f"LR-ASPP MobileNetV3-Small, 128x256 synthetic, batch 4, 1 worker, {args.threads} thread(s), "
             f"{args.iters} steps per run, runs alternated.", "",
             f"Machine: {describe(payload['environment'], ('torch',))}.", "",
             "| code | images/s per run | median |", "|---|---|---|"]
    for name in ("base", "head"):
        lines.append(f"| {name} ({args.base if name == 'base' else head}) | "
                     f"{', '.join(f'{v:.2f}' for v in runs[name])} | {medians[name]:.2f} |")
    lines += ["", f"head / base = **{ratio:.3f}**"]
    (RESULTS / "cpu_train_ab.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
