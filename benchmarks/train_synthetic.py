"""Training benchmark on the synthetic street scenes, on this machine's CPU.

Part A: LR-ASPP MobileNetV3-Small at 128x256 on ``synthetic`` (the day domain) for at most
``--minutes`` of training, then mIoU on a held-out split drawn from a base seed the training
never used. Goal: >= 70 mIoU within 10 minutes.
Part B: a multi-domain model (shared encoder + one head per domain, MixLoss over all four domains)
against one single-domain model per domain trained for the same number of steps, each scored on
its own domain's held-out split (smaller images and batches so it fits a few minutes).
Part C: training throughput in images/s (from part A).

Writes benchmarks/results/train_synthetic.{md,json}; checkpoints go to runs/bench_train_synthetic/
(ignored by git): ``lraspp_small/best.safetensors`` is the trained model other benchmarks use.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/train_synthetic.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from edgeseg.checkpoint import load_model
from edgeseg.data.synthetic import SYNTHETIC_DOMAINS, SyntheticDataset
from edgeseg.data.transforms import EvalTransform
from edgeseg.fileio import write_json_atomic, write_text_atomic
from edgeseg.metrics import ConfusionMatrix
from edgeseg.train import BEST, TrainConfig, train
from edgeseg.validate.environment import describe, environment

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench_train_synthetic"
RESULTS = ROOT / "benchmarks" / "results"
HELD_OUT_SEED = 9_001  # base seed of the held-out images: training uses seed 0 (its train split)


def held_out_miou(checkpoint: Path, domain: str, size: tuple[int, int], length: int, head: str | None = None) -> dict:
    """mIoU of a checkpoint on ``length`` images of ``domain`` generated from HELD_OUT_SEED."""
    model = load_model(checkpoint)
    meta = model.metadata if head is None else model.metadata.for_domain(head)
    data = SyntheticDataset(domain, "test", size=size, length=length, seed=HELD_OUT_SEED)
    assert tuple(data.classes) == tuple(meta.classes), (data.classes, meta.classes)
    transform = EvalTransform(size, meta.mean, meta.std)
    matrix = ConfusionMatrix(len(data.classes))
    with torch.no_grad():
        for start in range(0, length, 16):
            pairs = [transform(data[i]) for i in range(start, min(start + 16, length))]
            images = torch.stack([p[0] for p in pairs])
            logits = model(images) if head is None else model(images, domain=head)
            matrix.update(logits.argmax(1).numpy(), torch.stack([p[1] for p in pairs]).numpy())
    return matrix.scores(tuple(data.classes)).as_dict()


def fresh(out: Path) -> str:
    """An empty output directory (a training run refuses to overwrite an earlier one)."""
    shutil.rmtree(out, ignore_errors=True)
    return str(out)


def seconds_per_step(cfg: TrainConfig, steps: int = 12) -> float:
    """Measure the step time on this (shared, noisy) machine to size the schedule: the training
    throughput of a short run (its evaluation and start-up excluded)."""
    probe = train(cfg.replace(iters=steps, out=fresh(RUNS / "probe"), eval_limit=8, checkpoint_every=10_000),
                  progress=False)
    return cfg.batch_size / probe.history[-1]["images_per_s"]


def part_a(minutes: float, size: tuple[int, int], lr: float, run_name: str) -> dict:
    data_options = {"size": list(size), "length": 2000}
    cfg = TrainConfig(
        model="lraspp_mobilenetv3_small", data=("synthetic",), data_options=data_options, size=size,
        optimizer="adamw", lr=lr, weight_decay=1e-4, schedule="poly", warmup_steps=50,
        # Under 2 epochs nothing overfits: no random scale (flip and colour jitter stay).
        scale_range=(1.0, 1.0),
        iters=1, batch_size=4, workers=1, eval_every=0, eval_limit=100, checkpoint_every=200,
        seed=0, out=str(RUNS / run_name),
    )
    per_step = seconds_per_step(cfg)
    # Size the schedule to end inside the budget (evaluations included); max_minutes is the hard cap.
    iters = max(50, int(0.97 * 60 * minutes / per_step))
    cfg = cfg.replace(iters=iters, max_minutes=minutes, out=fresh(cfg.out_dir))
    t0 = time.perf_counter()
    result = train(cfg, progress=True)
    wall = time.perf_counter() - t0
    held = held_out_miou(cfg.out_dir / BEST, "day", size, 200)
    return {
        "minutes": minutes, "config": cfg.to_dict(), "probe_seconds_per_step": per_step, "steps_done": result.step,
        "train_seconds": result.seconds, "wall_seconds": wall, "images_per_s": result.images_per_s,
        "history": result.history, "held_out": held, "checkpoint": str((cfg.out_dir / BEST).relative_to(ROOT)),
    }


def part_b(steps: int, size: tuple[int, int]) -> dict:
    data_options = {"size": list(size), "length": 1000}
    common = dict(data_options=data_options, size=size, optimizer="adamw", lr=3e-3, weight_decay=1e-4, scale_range=(0.75, 1.5),
                  schedule="poly", warmup_steps=20, iters=steps, batch_size=4, workers=1,
                  eval_every=steps, eval_limit=50, checkpoint_every=steps, seed=0)
    specs = tuple(f"synthetic:{d}" for d in SYNTHETIC_DOMAINS)
    multi_cfg = TrainConfig(model="multidomain_lraspp_mobilenetv3_small", data=specs,
                            out=fresh(RUNS / "multidomain"), **common)
    multi = train(multi_cfg, progress=True)
    rows = {}
    for domain in SYNTHETIC_DOMAINS:
        head = f"synthetic_{domain}"
        single_cfg = TrainConfig(model="lraspp_mobilenetv3_small", data=(f"synthetic:{domain}",),
                                 out=fresh(RUNS / f"single_{domain}"), **common)
        single = train(single_cfg, progress=True)
        rows[domain] = {
            "multidomain_miou": held_out_miou(multi_cfg.out_dir / "last.safetensors", domain, size, 100, head)["miou"],
            "single_miou": held_out_miou(single_cfg.out_dir / "last.safetensors", domain, size, 100)["miou"],
            "single_seconds": single.seconds,
        }
    return {"steps": steps, "size": list(size), "batch_per_domain": 4, "multidomain_seconds": multi.seconds,
            "per_domain": rows}


def write_report(results: dict) -> None:
    a, b = results["part_a"], results.get("part_b")
    lines = [
        "# Training on synthetic street scenes (CPU)", "",
        f"Machine: {describe(results['environment'], ('torch',)) if 'environment' in results else results.get('machine')}; "
        f"torch threads: {results['threads']}; shared with other jobs, so "
        "times are noisy. Command: `OMP_NUM_THREADS=1 nice -n 10 python benchmarks/train_synthetic.py` "
        "(`--parts a` or `--parts b` re-runs one part and keeps the other's results).", "",
        "## A. LR-ASPP MobileNetV3-Small, 128x256, time-capped", "",
        f"- budget {a['minutes']} min; trained {a['steps_done']} steps of batch {a['config']['batch_size']} in "
        f"{a['train_seconds'] / 60:.1f} min (loop incl. evaluations), AdamW lr {a['config']['lr']:g} poly, warm-up 50, flip + colour jitter (no random scale), BN momentum 0.1",
        f"- **held-out mIoU {100 * a['held_out']['miou']:.1f}** (200 images, seed {HELD_OUT_SEED}, never used "
        f"in training), pixel accuracy {100 * a['held_out']['pixel_accuracy']:.1f}; goal >= 70",
        f"- training throughput **{np.mean([r['images_per_s'] for r in a['history']]):.1f} images/s** on CPU "
        f"between evaluations ({a['images_per_s']:.1f} images/s over the whole loop with evaluations and "
        "checkpoints); 1 torch thread + 1 data-loader worker",
        f"- checkpoint: `{a['checkpoint']}` (ignored by git; re-run the benchmark to recreate it)", "",
        "| class | IoU |", "|---|---|",
        *[f"| {k} | {'-' if v is None else f'{100 * v:.1f}'} |" for k, v in a["held_out"]["per_class_iou"].items()],
        "", "Validation during training (100 val images):", "", "| step | loss | val mIoU |", "|---|---|---|",
        *[f"| {r['step']} | {r['loss']:.3f} | {100 * r['miou']:.1f} |" for r in a["history"]],
    ]
    if b:
        lines += [
            "", f"## B. Multi-domain (MixLoss) vs single-domain, {b['steps']} steps each, "
            f"{b['size'][0]}x{b['size'][1]}, batch {b['batch_per_domain']} per domain", "",
            "Multi-domain: `multidomain_lraspp_mobilenetv3_small` (shared encoder with Domain Attention, one "
            "head per domain), each step one batch from every domain, CE summed (MixLoss), one backward. "
            "Single: one `lraspp_mobilenetv3_small` per domain, same steps and batch. Held-out mIoU "
            f"(100 images per domain, seed {HELD_OUT_SEED}).", "",
            "| domain | multi-domain mIoU | single-domain mIoU |", "|---|---|---|",
            *[f"| {d} | {100 * r['multidomain_miou']:.1f} | {100 * r['single_miou']:.1f} |"
              for d, r in b["per_domain"].items()],
            "", f"Multi-domain training took {b['multidomain_seconds'] / 60:.1f} min; the {len(b['per_domain'])} single-domain "
            f"runs {sum(r['single_seconds'] for r in b['per_domain'].values()) / 60:.1f} min together.",
        ]
    wall = {k: round(v["wall_minutes"], 1) for k, v in results.items() if k.startswith("part_") and "wall_minutes" in v}
    lines += ["", f"Wall time per part (minutes, probe and held-out scoring included): {wall}."]
    write_text_atomic(RESULTS / "train_synthetic.md", "\n".join(lines) + "\n")
    write_json_atomic(RESULTS / "train_synthetic.json", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="part A training budget")
    parser.add_argument("--multi-steps", type=int, default=300, help="part B steps")
    parser.add_argument("--lr", type=float, default=6e-3, help="part A learning rate (AdamW)")
    parser.add_argument("--run-name", default="lraspp_small", help="part A output folder under runs/bench_train_synthetic/")
    parser.add_argument("--parts", default="a,b", help="parts to run; the others keep their last results")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    torch.set_num_threads(1)  # 2 shared cores: one for the model, one for the data worker
    previous = RESULTS / "train_synthetic.json"
    results = json.loads(previous.read_text()) if previous.is_file() else {}
    results.update({"environment": environment(threads=torch.get_num_threads()), "threads": torch.get_num_threads()})
    for part, run in (("a", lambda: part_a(args.minutes, (128, 256), args.lr, args.run_name)), ("b", lambda: part_b(args.multi_steps, (64, 128)))):
        if part in parts:
            part_start = time.perf_counter()
            results[f"part_{part}"] = run()
            results[f"part_{part}"]["wall_minutes"] = (time.perf_counter() - part_start) / 60
            write_report(results)
    print((RESULTS / "train_synthetic.md").read_text())


if __name__ == "__main__":
    main()
