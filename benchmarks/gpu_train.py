"""GPU training throughput: each model's step ceiling beside ``edgeseg train`` and ``edgeseg qat``.

For LR-ASPP MobileNetV3-Large, SegFormer-B0 and Mobile-Former-151M at 512x1024 (batch 16, bf16
autocast, channels_last), in one run on one GPU:

- ``ceiling``: forward + backward + SGD step on batches already on the GPU (random images and
  masks, drawn once), eager and with ``torch.compile``: what the model itself allows.
- ``train``: :func:`edgeseg.train.train` on the synthetic street scenes (rendered at 256x512 and
  augmented to 512x1024 crops, as ``edgeseg train --data synthetic --size 512x1024`` does), with
  ``--workers`` loader processes; images/s over the steady window (after warm-up and compilation,
  before the final evaluation), timed between two ``torch.cuda.synchronize()`` calls.
- ``qat``: :func:`edgeseg.quantization.qat.qat_finetune` of LR-ASPP-L on the GPU (fake-quantized
  PT2E graph, the same data path), images/s over its steps (first step included).

Then a small accuracy check of QAT on the GPU: LR-ASPP-S trained at 128x256 on the GPU, QAT
fine-tuned on the GPU; both checkpoints are written to ``--out`` so the int8 conversions and their
gates run where the converters are installed (``benchmarks/gpu_qat_gate.py``).

Writes ``gpu_train.json`` (per-model keys ``ceiling_images_per_s`` and ``train_images_per_s``) and
``gpu_train.md`` to ``--out`` (default ``benchmarks/results``), after every part, so a run cut short
still leaves what it measured.

    python benchmarks/gpu_train.py --out benchmarks/results --workers 14
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import torch

from edgeseg.checkpoint import save_checkpoint
from edgeseg.fileio import write_json_atomic, write_text_atomic
from edgeseg.models import create_model
from edgeseg.train import TrainConfig, train
from edgeseg.validate.environment import describe, environment

MODELS = ("lraspp_mobilenetv3_large", "segformer_b0", "mobileformer_lraspp_151m")
SIZE = (512, 1024)
NUM_CLASSES = 9  # the synthetic street scenes' classes


def ceiling(name: str, batch: int, steps: int, compiled: bool) -> float:
    """images/s of forward + backward + SGD on one batch already on the GPU (bf16 autocast)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES).cuda().to(memory_format=torch.channels_last).train()
    if compiled:
        model.compile()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, *SIZE, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (batch, *SIZE), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):  # warm-up (and compilation)
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def profile_step(name: str, batch: int, steps: int = 5, device: str = "cuda", size=SIZE) -> dict:
    """What bounds one training step: torch.profiler over ``steps`` eager steps (after warm-up).

    ``gpu_busy``: summed kernel time / wall time (near 1: the GPU computes; low: the host cannot
    launch kernels fast enough, or waits); ``kernels_per_step``; the top operators by self device
    time and by self CPU time.
    """
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    on_gpu = device == "cuda"
    model = create_model(name, num_classes=NUM_CLASSES).to(device).train()
    if on_gpu:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, *size, device=device)
    y = torch.randint(0, NUM_CLASSES, (batch, *size), device=device)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=on_gpu):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync() -> None:
        if on_gpu:
            torch.cuda.synchronize()

    for _ in range(3):
        step()
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync()
    wall_us = (time.perf_counter() - start) * 1e6
    events = prof.key_averages()

    def device_us(e) -> float:
        return float(getattr(e, "self_device_time_total", 0.0) or getattr(e, "self_cuda_time_total", 0.0) or 0.0)

    kernels = [e for e in prof.events() if on_gpu and getattr(e, "device_type", None) is not None
               and str(e.device_type).endswith("CUDA")]
    # Device-side events (kernels, memcpys) carry their own time range; overlaps (several
    # streams) would count twice, which a single-stream training step does not have.
    busy_us = sum(e.time_range.elapsed_us() for e in kernels) if kernels else sum(device_us(e) for e in events)
    top = lambda key: [{"op": e.key, "ms_per_step": round(key(e) / 1e3 / steps, 3), "calls_per_step": e.count // steps}
                       for e in sorted(events, key=key, reverse=True)[:10]]
    return {"wall_ms_per_step": round(wall_us / 1e3 / steps, 2),
            "gpu_busy": round(busy_us / wall_us, 3) if on_gpu else None,
            "kernels_per_step": len(kernels) // steps if on_gpu else None,
            "top_device_ops": top(device_us) if on_gpu else [],
            "top_cpu_ops": top(lambda e: float(e.self_cpu_time_total))}


def train_throughput(name: str, batch: int, workers: int, warmup: int, steps: int, compile_mode: str,
                     out: Path) -> dict:
    """edgeseg train's images/s between step ``warmup`` and step ``warmup + steps``."""
    marks: dict[int, float] = {}

    def on_step_end(step: int) -> None:
        if step in (warmup, warmup + steps):
            torch.cuda.synchronize()
            marks[step] = time.perf_counter()

    cfg = TrainConfig(
        model=name, data=("synthetic",), data_options={"length": 100_000}, size=SIZE,
        iters=warmup + steps + 1, batch_size=batch, workers=workers, eval_limit=16, log_every=10,
        checkpoint_every=10**9, device="cuda", amp="bf16", compile=compile_mode, out=str(out),
        optimizer="sgd", lr=0.01,
    )
    start = time.perf_counter()
    result = train(cfg, progress=False, on_step_end=on_step_end)
    images = steps * batch
    return {"train_images_per_s": images / (marks[warmup + steps] - marks[warmup]),
            "train_whole_run_images_per_s": result.images_per_s,
            "train_seconds_total": time.perf_counter() - start, "compile": compile_mode,
            "final_loss": result.final_metrics.get("loss")}


def qat_throughput(name: str, batch: int, workers: int, iters: int, out: Path) -> dict:
    from edgeseg.quantization.qat import QatConfig, qat_finetune

    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, input_size=SIZE)
    source = save_checkpoint(model, out / f"{name}_init.safetensors")
    result = qat_finetune(source, QatConfig("tflite", epochs=None, iters=iters, train_images=None,
                                            batch_size=batch, workers=workers, device="cuda",
                                            scale_range=(0.5, 2.0)), out / f"{name}_qat.safetensors")
    return {"qat_images_per_s": result.images_per_s, "qat_steps": result.steps, "qat_seconds": result.seconds,
            "qat_losses": result.losses}


def qat_gate_checkpoints(out: Path, workers: int, minutes: float) -> dict:
    """LR-ASPP-S trained, then QAT fine-tuned, both on the GPU (checkpoints for the CPU gate)."""
    from edgeseg.quantization.qat import QatConfig, qat_finetune

    run = Path(tempfile.mkdtemp(prefix="gate_")) / "lraspp_small_128x256"
    result = train(TrainConfig(model="lraspp_mobilenetv3_small", data=("synthetic",), size=(128, 256),
                               iters=3000, max_minutes=minutes, batch_size=32, workers=workers,
                               optimizer="adamw", lr=6e-3, eval_limit=64, device="cuda", out=str(run),
                               checkpoint_every=10**9), progress=False)
    float_checkpoint = out / "lraspp_small_float_gpu.safetensors"
    shutil.copyfile(run / "best.safetensors", float_checkpoint)
    qat = qat_finetune(float_checkpoint, QatConfig("tflite", epochs=2, train_images=512, batch_size=16,
                                                   workers=workers, device="cuda"),
                       out / "lraspp_small_qat_gpu.safetensors")
    return {"float_miou": result.final_metrics.get("miou"), "float_steps": result.step,
            "float_images_per_s": result.images_per_s, "qat_steps": qat.steps,
            "qat_images_per_s": qat.images_per_s, "qat_losses": qat.losses}


def gpu_environment() -> dict:
    """The machine (edgeseg.validate.environment) and its GPU."""
    return {**environment(), "gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        "# GPU training throughput at 512x1024",
        "",
        f"{env.get('gpu')} (CUDA {env.get('cuda')}); {describe(env, ('torch',)) if 'libraries' in env else env}; "
        f"batch {results['batch']}, bf16 autocast, channels_last, {results['workers']} loader workers.",
        "Command: `python benchmarks/gpu_train.py --workers 14`.",
        "",
        "| model | ceiling | train | train / ceiling | ceiling compiled | train compiled | compiled ratio | qat |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results["models"].items():
        def cell(key: str) -> str:
            value = row.get(key)
            return f"{value:.1f}" if isinstance(value, (int, float)) else "-"
        def ratio(key: str) -> str:
            value = row.get(key)
            return f"{value:.2f}" if value else "-"
        lines.append(f"| {name} | {cell('ceiling_images_per_s')} | {cell('train_images_per_s')} | "
                     f"{ratio('train_over_ceiling')} | {cell('ceiling_compiled_images_per_s')} | "
                     f"{cell('train_compiled_images_per_s')} | {ratio('train_compiled_over_ceiling')} | "
                     f"{cell('qat_images_per_s')} |")
    lines += ["", "images/s. `ceiling`: forward + backward + SGD on batches already on the GPU; `train`: edgeseg "
              "train (eager, its default below 20,000 steps), steady window; `compiled`: both with torch.compile."]
    lines += [f"- {note}" for note in results.get("notes", [])]
    for name, prof in results.get("profiles", {}).items():
        lines += ["", f"## Profile: {name} (eager, batch {results['batch']})", "",
                  f"{prof['wall_ms_per_step']} ms per step; GPU busy {prof['gpu_busy']}; "
                  f"{prof['kernels_per_step']} kernels per step.", "",
                  "| top by device time | ms / step | calls / step | top by CPU time | ms / step | calls / step |",
                  "|---|---:|---:|---|---:|---:|"]
        for d, c in zip(prof["top_device_ops"] or [{}] * len(prof["top_cpu_ops"]), prof["top_cpu_ops"]):
            lines.append(f"| {d.get('op', '-')} | {d.get('ms_per_step', '-')} | {d.get('calls_per_step', '-')} | "
                         f"{c['op']} | {c['ms_per_step']} | {c['calls_per_step']} |")
    if results.get("errors"):
        lines += ["", "## Errors", ""] + [f"- {k}: `{v}`" for k, v in results["errors"].items()]
    if results.get("qat_gate"):
        lines += ["", "## QAT on the GPU (checkpoints for the int8 gates)", "",
                  "```", json.dumps(results["qat_gate"], indent=1), "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=14)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--no-compile-for", nargs="*", default=["mobileformer_lraspp_151m"],
                        help="models measured eager only (compilation time)")
    parser.add_argument("--gate-minutes", type=float, default=1.0)
    parser.add_argument("--profile", nargs="*", default=["mobileformer_lraspp_151m", "lraspp_mobilenetv3_large"],
                        help="models whose training step is profiled (what bounds it)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gpu_train_"))
    results: dict = {"environment": gpu_environment(), "batch": args.batch, "workers": args.workers,
                     "size": list(SIZE), "models": {}, "errors": {}, "profiles": {}}

    def save() -> None:
        write_json_atomic(out / "gpu_train.json", results)
        write_text_atomic(out / "gpu_train.md", markdown(results))

    def attempt(key: str, fn, *a, **k):
        t0 = time.perf_counter()
        try:
            value = fn(*a, **k)
        except Exception as exc:  # a benchmark records what failed and goes on
            results["errors"][key] = f"{type(exc).__name__}: {exc}"[:800]
            traceback.print_exc()
            value = None
        print(f"[{time.strftime('%H:%M:%S')}] {key}: {value} ({time.perf_counter() - t0:.0f} s)", flush=True)
        save()
        return value

    def measure_model(name: str) -> None:
        row = results["models"].setdefault(name, {})
        # Eager (edgeseg train's default below 20,000 steps) against the eager ceiling, and
        # compiled against compiled: like with like.
        row["ceiling_images_per_s"] = attempt(f"{name} ceiling eager", ceiling, name, args.batch, 30, False)
        save()
        eager = attempt(f"{name} train eager", train_throughput, name, args.batch, args.workers, 10, args.steps,
                        "off", scratch / f"{name}_eager")
        if eager:
            row.update(eager)
        if row.get("train_images_per_s") and row.get("ceiling_images_per_s"):
            row["train_over_ceiling"] = row["train_images_per_s"] / row["ceiling_images_per_s"]
        save()
        if name in args.no_compile_for:
            return
        row["ceiling_compiled_images_per_s"] = attempt(f"{name} ceiling compiled", ceiling, name, args.batch, 30, True)
        save()
        compiled = attempt(f"{name} train compiled", train_throughput, name, args.batch, args.workers, 15,
                           args.steps, "on", scratch / f"{name}_compiled")
        if compiled:
            row["train_compiled_images_per_s"] = compiled["train_images_per_s"]
            row["train_compiled_seconds_total"] = compiled["train_seconds_total"]
            if row.get("ceiling_compiled_images_per_s"):
                row["train_compiled_over_ceiling"] = compiled["train_images_per_s"] / row["ceiling_compiled_images_per_s"]
        save()

    # Most important first: a run cut short by its time limit keeps what it measured.
    for name in args.profile:
        prof = attempt(f"{name} profile", profile_step, name, args.batch)
        if prof:
            results["profiles"][name] = prof
    for name in [m for m in args.models if m != "mobileformer_lraspp_151m"]:
        measure_model(name)
    if args.gate_minutes > 0:
        results["qat_gate"] = attempt("qat gate checkpoints", qat_gate_checkpoints, out, args.workers, args.gate_minutes)
    if "lraspp_mobilenetv3_large" in args.models:
        qat = attempt("lraspp_mobilenetv3_large qat", qat_throughput, "lraspp_mobilenetv3_large", args.batch,
                      args.workers, 30, scratch)
        if qat:
            results["models"]["lraspp_mobilenetv3_large"].update(qat)
    if "mobileformer_lraspp_151m" in args.models:
        measure_model("mobileformer_lraspp_151m")
    save()
    print(markdown(results))


if __name__ == "__main__":
    main()
