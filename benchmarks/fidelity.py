"""Fidelity of converted files: every zoo model x every target that runs here, vs PyTorch.

For each model (full size; a trained checkpoint from runs/ when one exists, else random init),
each target (ONNX Runtime, LiteRT, OpenVINO; CoreML cannot run off macOS and is left out) and
each precision (fp32, fp16): convert with ``edgeseg.converters.convert`` (which runs its own
gate), then run the file on held-out synthetic street scenes (``SyntheticDataset`` test split,
day and night) and on natural photos (scikit-image's samples), and report per image set the
argmax pixel agreement with PyTorch and the max |logit error|. OpenVINO is measured at f32
inference precision and at the CPU plugin's default (bf16 on CPUs with it; named in the table).

Targets (issue 4): fp32 agreement >= 99.9%, fp16 >= 99.5%.

    nice -n 10 python benchmarks/fidelity.py                # all models, 256x512
    python benchmarks/fidelity.py --models lraspp_mobilenetv3_small --size 128x256

Writes benchmarks/results/fidelity.md and .json after every model (a partial run keeps what it
measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TARGETS_HERE = ("onnx", "tflite", "openvino")
PRECISIONS = ("fp32", "fp16")
NATURAL = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def natural_photos(size: tuple[int, int]) -> list[np.ndarray]:
    import cv2
    from skimage import data

    height, width = size
    return [cv2.resize(getattr(data, name)(), (width, height), interpolation=cv2.INTER_AREA) for name in NATURAL]


def synthetic_images(size: tuple[int, int], count: int) -> list[np.ndarray]:
    from edgeseg.data.synthetic import SyntheticDataset

    per_domain = max(1, count // 2)
    images = []
    for domain in ("day", "night"):
        dataset = SyntheticDataset(domain, "test", size=size, length=per_domain, seed=1234)
        images += [dataset[i].image for i in range(per_domain)]
    return images


def representatives_first(names: list[str]) -> list[str]:
    """One model per architecture (model class + encoder class) first, then the width variants,
    so a run cut short still covers every architecture."""
    from edgeseg.models import create_model, tiny_config

    seen, first, rest = set(), [], []
    for name in names:
        model = create_model(name, num_classes=5, **tiny_config(name))
        key = (type(model).__name__, type(model.encoder).__name__)
        (rest if key in seen else first).append(name)
        seen.add(key)
    return first + rest


def trained_checkpoint(name: str, runs: Path) -> Path | None:
    """The newest ``best.safetensors`` under ``runs`` saved from model ``name``, if any."""
    from edgeseg.checkpoint import read_checkpoint_header

    found = []
    for path in runs.rglob("best.safetensors"):
        try:
            header, _ = read_checkpoint_header(path)
        except Exception:
            continue
        if header.get("model") == name:
            found.append(path)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def build(name: str, runs: Path):
    from edgeseg.checkpoint import load_model
    from edgeseg.models import create_model

    checkpoint = trained_checkpoint(name, runs)
    if checkpoint is not None:
        return load_model(checkpoint), str(checkpoint)
    return create_model(name, num_classes=19).eval(), "random init (no trained checkpoint under runs/)"


def measure(model, source: str, target: str, precision: str, size, image_sets, workdir: Path) -> list[dict]:
    import torch

    from edgeseg.converters import TARGETS, convert, target_module
    from edgeseg.converters.options import ExportOptions
    from edgeseg.converters.verify import verify_file
    from edgeseg.converters.wrapper import build_graphs

    spec = TARGETS[target]
    row = {"model": model.metadata.model, "source": source, "target": target, "precision": precision}
    start = time.perf_counter()
    try:
        result = convert(model, target, precision=precision, input_size=size, out=workdir / f"m{spec.suffixes[0]}")
    except Exception as exc:  # a refused op or a failed gate is a result, not a crash
        return [{**row, "runtime_precision": "-", "error": f"{type(exc).__name__}: {str(exc)[:400]}"}]
    row["convert_s"] = round(time.perf_counter() - start, 1)
    converted = result.files[0]
    files = (converted.path, *converted.companions)
    row["file_mb"] = round(sum(p.stat().st_size for p in files) / 1e6, 2)
    options = ExportOptions(target, precision, size)
    graph = build_graphs(model, options, spec)[0]
    backend = target_module(spec)
    runners = [("default", backend.load(files, graph))]
    if target == "openvino":
        runners = [("f32", backend.load(files, graph, precision_hint="f32")),
                   (f"CPU default ({backend.default_cpu_precision()})", backend.load(files, graph, precision_hint=None))]
    rows = []
    for runtime_precision, run in runners:
        out = {**row, "runtime_precision": runtime_precision}
        for set_name, images in image_sets.items():
            with torch.no_grad():
                report = verify_file(run, graph.module, graph.metadata, graph.output_names, target=target,
                                     metadata_read=converted.metadata.to_json(), images=images)
            out[f"{set_name}_agreement"] = report.min_agreement
            out[f"{set_name}_max_abs_err"] = report.max_abs_error
            out[f"{set_name}_max_abs_logit"] = max(o.max_abs_reference for o in report.outputs)
            out[f"{set_name}_pass"] = report.passed
        rows.append(out)
    return rows


def merged(rows: list[dict], meta: dict) -> list[dict]:
    """The committed rows of other models (re-read at every write, so runs over disjoint models
    can proceed side by side) followed by this run's rows; the commands are listed together."""
    path = RESULTS / "fidelity.json"
    if not path.exists():
        return rows
    old = json.loads(path.read_text())
    if tuple(old["meta"]["size"]) != tuple(meta["size"]):
        raise SystemExit(f"--append: the committed rows are at {old['meta']['size']}, this run at {meta['size']}")
    measured = {r["model"] for r in rows}
    commands = [c for c in old["meta"]["command"].split(" ; ") if c != meta["command"].split(" ; ")[-1]]
    meta["command"] = " ; ".join([*commands, meta["command"].split(" ; ")[-1]])
    return [r for r in old["rows"] if r["model"] not in measured] + rows


def write(rows: list[dict], meta: dict) -> None:
    from edgeseg.fileio import write_json_atomic, write_text_atomic

    write_json_atomic(RESULTS / "fidelity.json", {"meta": meta, "rows": rows})
    lines = [
        "# Fidelity: converted files vs PyTorch",
        "",
        f"Command: `{meta['command']}`  ",
        f"Input {meta['size'][0]}x{meta['size'][1]}; images: {meta['synthetic']} synthetic (test split, day+night), "
        f"{meta['natural']} natural photos (scikit-image: {', '.join(NATURAL)}).  ",
        f"Machine: {meta['machine']}; OpenVINO CPU default inference precision: {meta['openvino_default']}.  ",
        "Gate (issue 4): fp32 argmax agreement >= 99.9% and max |logit err| <= 1e-3 x max(1, max |logit|); "
        "fp16 agreement >= 99.5%. `pass` = both image sets meet the gate for the file's precision.  ",
        "Agreement = fraction of pixels whose argmax class equals PyTorch's (worst output for multi-head files).",
        "",
        "| model | weights | target | precision | runs at | synthetic agreement | synthetic max err | natural agreement | natural max err | max logit | pass | convert s | MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {_src(r)} | {r['target']} | {r['precision']} | - | conversion failed: {r['error'][:120]} |||||||")
            continue
        lines.append(
            f"| {r['model']} | {_src(r)} | {r['target']} | {r['precision']} | {r['runtime_precision']} | "
            f"{r['synthetic_agreement']:.4%} | {r['synthetic_max_abs_err']:.2e} | {r['natural_agreement']:.4%} | "
            f"{r['natural_max_abs_err']:.2e} | {max(r['synthetic_max_abs_logit'], r['natural_max_abs_logit']):.2f} | "
            f"{'yes' if r['synthetic_pass'] and r['natural_pass'] else 'NO'} | {r['convert_s']} | {r['file_mb']} |"
        )
    write_text_atomic(RESULTS / "fidelity.md", "\n".join(lines) + "\n")


def _src(row: dict) -> str:
    return "random" if row["source"].startswith("random") else "trained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", help="default: every registered model")
    parser.add_argument("--size", default="256x512", help="input HxW")
    parser.add_argument("--synthetic", type=int, default=8, help="held-out synthetic images")
    parser.add_argument("--runs", default="runs", help="where to look for trained checkpoints")
    parser.add_argument("--append", action="store_true",
                        help="keep the committed rows of the models not measured now (same size and images)")
    args = parser.parse_args()

    import torch

    from edgeseg.cli.options import parse_size
    from edgeseg.converters.openvino import default_cpu_precision
    from edgeseg.models import list_models

    torch.set_num_threads(1)
    size = parse_size(args.size)
    image_sets = {"synthetic": synthetic_images(size, args.synthetic), "natural": natural_photos(size)}
    meta = {
        "command": "python " + " ".join(sys.argv),
        "size": size,
        "synthetic": len(image_sets["synthetic"]),
        "natural": len(image_sets["natural"]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), 1 thread",
        "openvino_default": default_cpu_precision(),
    }
    rows: list[dict] = []
    for name in args.models or representatives_first(list_models()):
        model, source = build(name, Path(args.runs))
        for target in TARGETS_HERE:
            for precision in PRECISIONS:
                with tempfile.TemporaryDirectory() as workdir:
                    new = measure(model, source, target, precision, size, image_sets, Path(workdir))
                rows += new
                for r in new:
                    print(json.dumps(r), flush=True)
                write(merged(rows, meta) if args.append else rows, meta)


if __name__ == "__main__":
    main()
