"""With vs without Domain Attention: one multi-domain model trained with MixLoss on three synthetic
domains (day, night, and coarse = dusk look + 6-class label space), per-domain mIoU on held-out
images. The slides' comparison "multi-domain model with DA vs without DA", at CPU scale.

    nice -n 10 python benchmarks/multidomain_da.py [--steps 400] [--size 64x128] [--seeds 0,1]
    # writes benchmarks/results/multidomain_da.{md,json}

Both variants see the same images in the same order from the same initial encoder weights where
the layouts agree (the seed is reset before each build). Each step draws a batch from every
domain, runs each through the shared encoder and its own head, sums the cross-entropies (MixLoss)
and back-propagates once. AdamW (not the slides' momentum SGD): it converges in a few hundred
steps without a tuned schedule. Validation images come from the synthetic "val" stream, never
used in training. Each seed changes the initial weights and the batch order; the spread between
seeds is the noise level against which to read the DA / no-DA difference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from edgeseg.data.synthetic import SyntheticDataset
from edgeseg.fileio import write_json_atomic, write_text_atomic
from edgeseg.losses import MixLoss
from edgeseg.metadata import IMAGENET_MEAN, IMAGENET_STD, parse_size
from edgeseg.metrics import ConfusionMatrix
from edgeseg.models import create_model
from edgeseg.models.profile import count_params
from edgeseg.validate.environment import describe, environment

MODEL = "multidomain_lraspp_mobilenetv3_small"
DOMAINS = ("day", "night", "coarse")
TRAIN_IMAGES, VAL_IMAGES, BATCH = 384, 64, 8


def load(domain: str, split: str, length: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    data = SyntheticDataset(domain, split, size=size, length=length, seed=0)
    samples = [data[i] for i in range(length)]
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    masks = torch.from_numpy(np.stack([s.mask for s in samples]).astype(np.int64))
    return (images - mean) / std, masks, data.classes


def train_and_evaluate(with_da: bool, data: dict, steps: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    domains = [[d, list(data[d]["classes"])] for d in DOMAINS]
    model = create_model(MODEL, domains=domains, with_domain_attention=with_da)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (1 - s / steps) ** 0.9)
    loss_fn = MixLoss()
    order = torch.Generator().manual_seed(seed)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        batches = {}
        for d in DOMAINS:
            idx = torch.randint(0, TRAIN_IMAGES, (BATCH,), generator=order)
            x, y = data[d]["train"][0][idx], data[d]["train"][1][idx]
            if torch.rand((), generator=order) < 0.5:  # joint horizontal flip
                x, y = x.flip(-1), y.flip(-1)
            batches[d] = (model(x, domain=d), y)
        total, _ = loss_fn(batches)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        schedule.step()
    seconds = time.perf_counter() - start
    model.eval()
    result = {"with_domain_attention": with_da, "seed": seed, "params_m": round(count_params(model) / 1e6, 4),
              "train_seconds": round(seconds, 1),
              "images_per_s": round(steps * BATCH * len(DOMAINS) / seconds, 1), "miou": {}}
    with torch.no_grad():
        for d in DOMAINS:
            x, y = data[d]["val"][:2]
            cm = ConfusionMatrix(len(data[d]["classes"]))
            for i in range(0, len(x), 16):
                cm.update(model(x[i:i + 16], domain=d).argmax(1).numpy(), y[i:i + 16].numpy())
            result["miou"][d] = round(100 * cm.scores().miou, 2)
    result["mean_miou"] = round(float(np.mean(list(result["miou"].values()))), 2)
    return result


def to_markdown(rows: list[dict], env: dict) -> str:
    def line(label: str, seed: str, params: float, miou: dict, mean: float, seconds: str, speed: str) -> str:
        return (f"| {label} | {seed} | {params} | " + " | ".join(f"{miou[d]:.2f}" for d in DOMAINS)
                + f" | {mean:.2f} | {seconds} | {speed} |")

    lines = [
        "# Multi-domain model with vs without Domain Attention (synthetic domains, CPU)",
        "",
        f"Setting: {json.dumps({k: v for k, v in env.items() if k != 'environment'})}",
        "",
        f"Machine: {describe(env['environment'], ('torch',))}",
        "",
        "| variant | seed | params (M) | " + " | ".join(f"mIoU {d}" for d in DOMAINS)
        + " | mean mIoU | train s | images/s |",
        "|---|---|---:|" + "---:|" * (len(DOMAINS) + 3),
    ]
    for with_da in (False, True):
        label = "with DA" if with_da else "without DA"
        runs = [r for r in rows if r["with_domain_attention"] == with_da]
        for r in runs:
            lines.append(line(label, str(r["seed"]), r["params_m"], r["miou"], r["mean_miou"],
                              str(r["train_seconds"]), str(r["images_per_s"])))
        if len(runs) > 1:
            avg = {d: float(np.mean([r["miou"][d] for r in runs])) for d in DOMAINS}
            lines.append(line(f"**{label}, mean of seeds**", "all", runs[0]["params_m"], avg,
                              float(np.mean([r["mean_miou"] for r in runs])), "", ""))
    lines += ["", "Reproduce: `nice -n 10 python benchmarks/multidomain_da.py "
              f"--steps {env['steps']} --seeds {','.join(str(s) for s in env['seeds'])}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    parser.add_argument("--size", default="64x128", help="HxW of the synthetic images")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    size = parse_size(args.size)
    seeds = [int(v) for v in args.seeds.split(",")]
    torch.set_num_threads(1)
    data = {}
    for d in DOMAINS:
        train = load(d, "train", TRAIN_IMAGES, size)
        val = load(d, "val", VAL_IMAGES, size)
        data[d] = {"train": train[:2], "val": val[:2], "classes": train[2]}
    env = {"model": MODEL, "domains": DOMAINS, "size": size, "steps": args.steps, "seeds": seeds,
           "batch_per_domain": BATCH, "train_images_per_domain": TRAIN_IMAGES,
           "val_images_per_domain": VAL_IMAGES, "optimizer": "AdamW lr 2e-3 poly 0.9",
           "threads": 1, "environment": environment(threads=1)}
    rows = [train_and_evaluate(with_da, data, args.steps, seed) for seed in seeds for with_da in (False, True)]
    write_json_atomic(args.out / "multidomain_da.json", {"setting": env, "rows": rows})
    write_text_atomic(args.out / "multidomain_da.md", to_markdown(rows, env))
    print(to_markdown(rows, env))


if __name__ == "__main__":
    main()
