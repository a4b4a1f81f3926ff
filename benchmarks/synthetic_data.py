"""Synthetic dataset benchmark: generation speed and a per-pixel colour-classifier baseline.

The colour classifier is the best a model can do from one pixel's RGB alone: a Bayes classifier
on a 3-D colour histogram (``BINS`` bins per channel), trained on the train split and scored on
the val split (a seed stream never used for training) with edgeseg.metrics.ConfusionMatrix.
The dataset is only meaningful if a network that sees context scores far above this (the
training benchmark, benchmarks/train_synthetic.py, reports LR-ASPP MobileNetV3-Small).

Run (about 1-2 minutes on one core):
    nice -n 10 taskset -c 0 python benchmarks/synthetic_data.py
Writes benchmarks/results/synthetic_data.md and .json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edgeseg.data.synthetic import SYNTHETIC_DOMAINS, SyntheticDataset
from edgeseg.fileio import write_json_atomic, write_text_atomic
from edgeseg.metrics import IGNORE_INDEX, ConfusionMatrix
from edgeseg.validate.environment import describe, environment

RESULTS = Path(__file__).resolve().parent / "results"
BINS = 32  # per channel: 32^3 colour cells, each with thousands of training pixels


def colour_codes(image: np.ndarray) -> np.ndarray:
    q = (image // (256 // BINS)).astype(np.int64)
    return (q[..., 0] * BINS + q[..., 1]) * BINS + q[..., 2]


def fit_colour_classifier(dataset: SyntheticDataset) -> np.ndarray:
    """Most frequent class of each colour cell over the dataset (unseen cells: overall mode)."""
    counts = np.zeros((BINS**3, dataset.num_classes), np.int64)
    for i in range(len(dataset)):
        sample = dataset[i]
        keep = sample.mask != IGNORE_INDEX
        cell = colour_codes(sample.image)[keep]
        np.add.at(counts, (cell, sample.mask[keep].astype(np.int64)), 1)
    table = counts.argmax(axis=1)
    table[counts.sum(axis=1) == 0] = counts.sum(axis=0).argmax()
    return table


def score_colour_classifier(table: np.ndarray, dataset: SyntheticDataset) -> dict:
    cm = ConfusionMatrix(dataset.num_classes)
    for i in range(len(dataset)):
        sample = dataset[i]
        cm.update(table[colour_codes(sample.image)], sample.mask)
    return cm.scores(dataset.classes).as_dict()


def generation_speed(domain: str, size: tuple[int, int], count: int) -> dict:
    dataset = SyntheticDataset(domain, "train", size=size, length=count + 1, seed=123)
    dataset[count]  # texture bank built outside the timing
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        dataset[i]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"images": count, "wall_s": wall, "cpu_s": cpu, "images_per_s_wall": count / wall, "images_per_s_cpu": count / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=300)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 256), help="classifier image size (the training benchmark's)")
    parser.add_argument("--speed-images", type=int, default=300)
    parser.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the committed .json")
    args = parser.parse_args()
    if args.markdown_only:
        result = json.loads((RESULTS / "synthetic_data.json").read_text())
        write_text_atomic(RESULTS / "synthetic_data.md", to_markdown(result))
        return
    size = tuple(args.size)

    speed = {d: generation_speed(d, (256, 512), args.speed_images) for d in SYNTHETIC_DOMAINS}
    colour = {}
    for domain in SYNTHETIC_DOMAINS:
        table = fit_colour_classifier(SyntheticDataset(domain, "train", size=size, length=args.train_images))
        colour[domain] = score_colour_classifier(table, SyntheticDataset(domain, "val", size=size, length=args.val_images))
        print(f"{domain}: colour classifier val mIoU {100 * colour[domain]['miou']:.1f}, generation "
              f"{speed[domain]['images_per_s_cpu']:.0f} images/s (CPU time, 256x512)")

    result = {
        "generation_256x512": speed,
        "colour_classifier": {"bins_per_channel": BINS, "size": list(size), "train_images": args.train_images, "val_images": args.val_images, "per_domain": colour},
        "environment": environment(threads=1),
        "command": "nice -n 10 taskset -c 0 python benchmarks/synthetic_data.py",
    }
    write_json_atomic(RESULTS / "synthetic_data.json", result)
    write_text_atomic(RESULTS / "synthetic_data.md", to_markdown(result))


def to_markdown(result: dict) -> str:
    cc = result["colour_classifier"]
    lines = [
        "# Synthetic dataset: generation speed and colour-only baseline",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {describe(result['environment'], ('opencv-python-headless',))}"
        if "environment" in result else "Machine: not recorded",
        "",
        "## Generation speed (256x512, one core)",
        "",
        "| domain | images | images/s (CPU time) | images/s (wall) |",
        "|---|---|---|---|",
    ]
    for d, s in result["generation_256x512"].items():
        lines.append(f"| {d} | {s['images']} | {s['images_per_s_cpu']:.0f} | {s['images_per_s_wall']:.0f} |")
    lines += [
        "",
        "Wall time depends on what else runs on the machine (it was shared while measuring);",
        "CPU time is the generator's own cost on one core.",
        "",
        f"## Per-pixel colour classifier ({cc['bins_per_channel']}^3-cell RGB histogram, Bayes decision)",
        "",
        f"Trained on {cc['train_images']} train images, scored on {cc['val_images']} val images "
        f"(its own seed stream), {cc['size'][0]}x{cc['size'][1]}. IoU in %, one table per label space.",
    ]
    by_label_space: dict[tuple[str, ...], list[str]] = {}
    for d, s in cc["per_domain"].items():
        by_label_space.setdefault(tuple(s["per_class_iou"]), []).append(d)
    for classes, domains in by_label_space.items():
        lines += ["", "| domain | mIoU | pixel acc | " + " | ".join(classes) + " |", "|---" * (3 + len(classes)) + "|"]
        for d in domains:
            s = cc["per_domain"][d]
            cells = " | ".join("-" if s["per_class_iou"][c] is None else f"{100 * s['per_class_iou'][c]:.1f}" for c in classes)
            lines.append(f"| {d} | {100 * s['miou']:.1f} | {100 * s['pixel_accuracy']:.1f} | {cells} |")
    bars = ", ".join(f"{d} {100 * s['miou'] + 25:.1f}" for d, s in cc["per_domain"].items())
    lines += [
        "",
        "The issue's bar: a trained LR-ASPP MobileNetV3-Small must beat this colour-only classifier by",
        f"at least 25 mIoU points on the same val split, i.e. reach {bars} (benchmarks/train_synthetic.py).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
