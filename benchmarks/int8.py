"""Int8 benchmark: PTQ and QAT per target beside the float model, on trained LR-ASPP
MobileNetV3-Large and SegFormer-B0 (synthetic street scenes, 128x256).

Stages (``--stages train,quant``; ``control`` fine-tunes the float model exactly as QAT does but
without fake quantization; ``report`` rewrites the report from saved results):
- train: each model for ``--minutes`` on ``synthetic:train`` (edgeseg.train, time-capped);
  checkpoints in runs/bench_int8/<model>/best.safetensors (ignored by git).
- quant: per target that runs here (TFLite, OpenVINO, ONNX Runtime): fp32 file, PTQ int8 file
  and QAT int8 file (``--qat-steps`` of fake-quantized fine-tuning mirroring the target's scheme,
  then converted). Each file is scored by the harness (edgeseg.validate) on the held-out split
  against the float checkpoint; size on disk; latency of the model call (same backend, same
  run, fp32 and int8 interleaved, 1 thread, median).
- latency: the fp32 and int8 (QAT) files converted at each ``--latency-sizes`` input size
  (default 512x512,512x1024, the issue's sizes) and timed round robin; results in
  runs/bench_int8/latency_<model>.json and a second table of the report.

Writes benchmarks/results/int8.{md,json}.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/int8.py --stages train --minutes 7
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/int8.py --stages quant,control,report --eval-images 60
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgeseg.validate.environment import describe, environment

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench_int8"
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("lraspp_mobilenetv3_large", "segformer_b0")
TARGETS = {"tflite": ".tflite", "openvino": ".xml", "onnx": ".onnx"}
SIZE = (128, 256)
HELD_OUT = "synthetic:test"  # the test split: never seen by training, calibration or QAT
# A multi-domain model trains one head per synthetic domain: a fine label space (9 classes) and a
# coarse one (6), so each head is gated on its own classes.
MULTI_DOMAIN_DATA = ("synthetic:night", "synthetic:coarse")


def training_data(name: str) -> tuple[str, ...]:
    return MULTI_DOMAIN_DATA if name.startswith("multidomain_") else ("synthetic",)


def train_models(names: list[str], minutes: float, steps: int | None) -> dict:
    """Train each model. With ``steps`` the poly schedule runs to zero over that many steps (a
    converged, annealed float model: what QAT should be compared against); ``minutes`` caps it."""
    from edgeseg.train import BEST, TrainConfig, train

    out = {}
    for name in names:
        cfg = TrainConfig(
            model=name, data=training_data(name), data_options={"size": list(SIZE), "length": 20_000 if steps else 2000},
            size=SIZE, optimizer="adamw", lr=4e-3 if "lraspp_mobilenetv3" in name else 1e-3, weight_decay=1e-4,
            schedule="poly", warmup_steps=min(100, steps // 20) if steps else 30, scale_range=(0.75, 1.5),
            iters=steps or 100_000, max_minutes=minutes, batch_size=8, workers=0 if steps else 1, eval_every=0,
            eval_limit=50, checkpoint_every=100, seed=0, out=str(RUNS / name),
        )
        result = train(cfg, progress=False)
        out[name] = {"steps": result.step, "planned_steps": steps, "seconds": result.seconds,
                     "checkpoint": str(RUNS / name / BEST), "val": result.final_metrics.get("miou")}
        print(name, out[name], flush=True)
    return out


def quant_model(name: str, checkpoint: Path, args) -> dict:
    """fp32, PTQ and QAT int8 files per target for one model: mIoU, size, latency."""
    from edgeseg.converters import convert
    from edgeseg.errors import EdgesegError
    from edgeseg.quantization.options import QuantOptions
    from edgeseg.quantization.qat import QatConfig, qat_finetune
    out = RUNS / name / "files"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    qat_path = RUNS / name / "qat.safetensors"
    if args.reuse and qat_path.exists():  # --reuse: a run that stopped after QAT picks up here
        qat = _saved_qat(qat_path)
    else:
        qat = qat_finetune(checkpoint, QatConfig("all", epochs=args.qat_epochs, train_images=args.qat_images,
                                                 batch_size=8, lr=args.qat_lr), qat_path)
    row = {"qat": {"steps": qat.steps, "seconds": qat.seconds, "losses": qat.losses, "recipe": qat.recipe},
           "targets": {}}
    print(name, "QAT", row["qat"], f"{time.perf_counter() - t0:.0f} s", flush=True)
    # The benchmark measures: the convert-time gate is opened wide so every file is kept and scored.
    measure = QuantOptions(calib_size=args.calib_size, max_miou_drop=100.0, min_agreement=0.0, gate_images=8)
    for target in args.targets.split(","):
        suffix = TARGETS[target]
        files, errors = {}, {}
        jobs = {"fp32": (checkpoint, "fp32", None), "ptq": (checkpoint, "int8", measure),
                "qat": (qat.checkpoint, "int8", QuantOptions(**{**vars(measure), "reference": str(checkpoint)}))}
        for kind, (source, precision, quant) in jobs.items():
            path = out / f"{target}_{kind}{suffix}"
            if args.reuse and path.exists():
                files[kind] = path
                continue
            try:
                t1 = time.perf_counter()
                result = convert(source, target, precision=precision, quant=quant, out=out / f"{target}_{kind}{suffix}")
                files[kind] = result.files[0].path
                print(name, target, kind, f"{time.perf_counter() - t1:.0f} s", flush=True)
            except EdgesegError as exc:
                errors[kind] = str(exc)[:500]
                print(name, target, kind, "FAILED", str(exc)[:300], flush=True)
        row["targets"][target] = measure_files(files, checkpoint, errors, args)
        save(name, row, args)  # after each target: a run stopped early keeps what it measured
    return row


def latency_sizes(name: str, args) -> dict:
    """int8/fp32 latency at the issue's sizes (``--latency-sizes``, e.g. 512x512,512x1024): the fp32
    file of the float checkpoint and the int8 file of the QAT checkpoint (the float one if there is
    none), both converted at that input size, timed round robin in one run (1 thread, median of the
    model call). Accuracy is the 128x256 table's: these files are only timed (8 calibration images,
    the gate left open)."""
    from edgeseg.converters import convert
    from edgeseg.quantization.options import QuantOptions
    from edgeseg.validate.bench import bench

    checkpoint, qat = RUNS / name / "best.safetensors", RUNS / name / "qat.safetensors"
    source = qat if qat.exists() else checkpoint
    quant = QuantOptions(calib_size=8, max_miou_drop=100.0, min_agreement=0.0, gate_images=4,
                         reference=str(checkpoint) if source == qat else None)
    path = RUNS / f"latency_{name}.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    out = RUNS / name / "files"
    out.mkdir(parents=True, exist_ok=True)
    stride = args.output_stride
    for size in args.latency_sizes.split(","):
        height, width = map(int, size.split("x"))
        key = size if stride == 1 else f"{size}/{stride}"  # /N: files converted with --output-stride N
        for target in args.targets.split(","):
            files = {}
            for kind, src, precision, options in (("fp32", checkpoint, "fp32", None), ("int8", source, "int8", quant)):
                files[kind] = out / f"{target}_{kind}_{key.replace('/', '_os')}{TARGETS[target]}"
                if not (args.reuse and files[kind].exists()):
                    convert(src, target, precision=precision, quant=options, input_size=(height, width),
                            output_stride=stride, out=files[kind])
            timing = bench([files["fp32"], files["int8"]], threads=1, warmup=3, runs=args.runs, cold_start=False)
            fp32, int8 = (timed.model_call.p50 for timed in timing.files)
            predict = [timed.predict.p50 if getattr(timed, "predict", None) else None for timed in timing.files]
            result.setdefault(key, {})[target] = {"fp32_ms": fp32, "int8_ms": int8, "ratio": int8 / fp32,
                                                  "int8_from": source.name, "fp32_predict_ms": predict[0],
                                                  "int8_predict_ms": predict[1]}
            path.write_text(json.dumps(result, indent=1))
            print(name, key, target, result[key][target], flush=True)
    return result


def save(name: str, row: dict, args) -> None:
    path = RUNS / f"quant_{name}.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    targets = {**earlier.get("targets", {}), **row["targets"]}  # a --targets run updates its own rows
    path.write_text(json.dumps({**row, "targets": targets, "settings": vars(args),
                                "environment": environment(threads=1)}, indent=1))
    state_path = RUNS / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    write_report({**state, "quant": collect_quant()}, args)


def float_control(name: str, checkpoint: Path, args) -> dict:
    """The same fine-tuning as QAT (data, steps, lr, frozen BN) without fake quantization: the
    float models here are short CPU runs, so QAT's extra steps also train; this separates the two."""
    import torch

    from edgeseg.checkpoint import load_model, save_checkpoint
    from edgeseg.quantization.qat import QatConfig, fine_tuning_batches, resolve_recipe, train_steps
    from edgeseg.train.device import resolve_device
    from edgeseg.train.distributed import DistInfo
    from edgeseg.validate import validate

    class Heads(torch.nn.Module):  # x -> (logits, ...) per head, as train_steps takes the QAT graph
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.forward_all(x) if hasattr(self.model, "forward_all") else (self.model(x),)

    model = load_model(checkpoint).eval()  # eval: BN frozen, as in QAT
    cfg, recipe = resolve_recipe(checkpoint, QatConfig("all", epochs=args.qat_epochs, train_images=args.qat_images,
                                                       batch_size=8, lr=args.qat_lr))
    setup = resolve_device("cpu", amp="off", channels_last=False)
    batches, per_epoch, steps = fine_tuning_batches(cfg, model.metadata, setup, DistInfo(rank=0, world_size=1, local_rank=0))
    losses = train_steps(Heads(model), batches, cfg, steps, per_epoch, setup)
    path = save_checkpoint(model, RUNS / name / "float_finetuned.safetensors")
    run = validate([path], checkpoint, HELD_OUT, limit=args.eval_images, data_options={"size": SIZE}, threads=1, samples=0)
    result = run.files[0].domains[0]
    by_domain = {d.domain: 100 * d.scores.miou for d in run.files[0].domains}
    return {"steps": steps, "losses": losses, "recipe": recipe, "miou": 100 * result.scores.miou,
            "reference_miou": 100 * result.reference.miou, **({"by_domain": by_domain} if len(by_domain) > 1 else {})}


def _saved_qat(path: Path):
    from edgeseg.checkpoint import read_checkpoint_header
    from edgeseg.quantization.qat import QatResult

    info = read_checkpoint_header(path)[0]["extra"]["qat"]
    return QatResult(path, info["steps"], float("nan"), info["losses"],
                     recipe=info.get("recipe", f"AdamW, lr {info['lr']:g}"))


def measure_files(files: dict, checkpoint: Path, errors: dict, args) -> dict:
    from edgeseg.validate import validate
    from edgeseg.validate.bench import bench

    if not files:
        return {"errors": errors}
    kinds = list(files)
    run = validate([files[k] for k in kinds], checkpoint, HELD_OUT, limit=args.eval_images,
                   data_options={"size": SIZE}, threads=1, samples=0)
    timing = bench([files[k] for k in kinds], threads=1, warmup=5, runs=args.runs, cold_start=False)
    reference = next(iter(run.reference.values())).scores.miou
    out = {"reference_miou": 100 * reference, "errors": errors}
    if len(run.reference) > 1:  # a multi-domain file: every head scored on its own domain and classes
        out["reference_by_domain"] = {d: 100 * r.scores.miou for d, r in run.reference.items()}
    for kind, scored, timed in zip(kinds, run.files, timing.files):
        domain = scored.domains[0] if scored.domains else None
        out[kind] = {
            "miou": 100 * domain.scores.miou if domain else None,
            "agreement": domain.agreement if domain else None,
            "size_bytes": scored.size_bytes,
            "model_call_p50_ms": timed.model_call.p50 if timed.model_call else None,
            "status": scored.status,
        }
        if "reference_by_domain" in out:
            out[kind]["by_domain"] = {d.domain: {"miou": 100 * d.scores.miou, "agreement": d.agreement}
                                      for d in scored.domains}
    return out


def control_miou(row: str, saved: dict | None = None) -> float | None:
    """The float fine-tune control's mIoU for a row of ``domain_rows`` (a head's own for
    ``model [head]``), from runs/bench_int8/control_<model>.json, else from ``saved`` (the
    controls recorded in int8.json)."""
    model, _, head = row.partition(" [")
    path = RUNS / f"control_{model}.json"
    control = json.loads(path.read_text()) if path.exists() else (saved or {}).get(model, {})
    return control.get("by_domain", {}).get(head.rstrip("]")) if head else control.get("miou")


def domain_rows(state: dict):
    """(row name, {target: results}) per model, and per head of a multi-domain model: its mIoUs
    on its own domain (size and latency are the whole file's, shared by its heads)."""
    for name, row in state.get("quant", {}).items():
        targets = row["targets"]
        heads = next((t["reference_by_domain"] for t in targets.values() if t.get("reference_by_domain")), None)
        if not heads:
            yield name, row
            continue
        for head in heads:
            per_head = {}
            for target, t in targets.items():
                view = {**t, "reference_miou": t.get("reference_by_domain", {}).get(head)}
                for kind in ("fp32", "ptq", "qat"):
                    if t.get(kind):
                        view[kind] = {**t[kind], **t[kind].get("by_domain", {}).get(head, {"miou": None})}
                per_head[target] = view
            yield f"{name} [{head}]", {**row, "targets": per_head}


def summary(state: dict) -> list[str]:
    """What this run's numbers say, computed from them (a rerun rewrites it)."""
    def span(values: list[float], fmt: str = "+.2f") -> str:
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        low, high = min(values), max(values)
        return format(low, fmt) if format(low, fmt) == format(high, fmt) else f"{format(low, fmt)} to {format(high, fmt)}"

    lines = ["## Reading the results", ""]
    for name, row in domain_rows(state):
        trained = state.get("train", {}).get(name.partition(" [")[0], {})
        control = control_miou(name, state.get("float_finetune_controls", {}))
        targets = row["targets"].values()
        ref = next((t.get("reference_miou") for t in targets if t.get("reference_miou") is not None), None)
        qat = [t["qat"]["miou"] for t in targets if t.get("qat", {}).get("miou") is not None]
        ptq = [t["ptq"]["miou"] for t in targets if t.get("ptq", {}).get("miou") is not None]
        qat_vs_ptq = [t["qat"]["miou"] - t["ptq"]["miou"] for t in targets
                      if t.get("qat", {}).get("miou") is not None and t.get("ptq", {}).get("miou") is not None]
        sizes = [(t.get("qat") or t.get("ptq", {})).get("size_bytes", 0) / t["fp32"]["size_bytes"]
                 for t in targets if t.get("fp32", {}).get("size_bytes")]
        speed = {target: (t.get("qat") or t.get("ptq", {})).get("model_call_p50_ms", 0) / t["fp32"]["model_call_p50_ms"]
                 for target, t in row["targets"].items()
                 if t.get("fp32", {}).get("model_call_p50_ms") and (t.get("qat") or t.get("ptq", {})).get("model_call_p50_ms")}
        lines.append(
            f"- **{name}**: float held-out mIoU {_f(ref)}"
            + (f" after {trained['steps']} steps ({trained['seconds'] / 60:.0f} min)" if trained.get("seconds") else "")
            + f"; QAT - float {span([q - ref for q in qat] if ref is not None else [])} points"
            + (f", QAT - float fine-tuned like QAT {span([q - control for q in qat])}" if control is not None else "")
            + f"; PTQ - float {span([q - ref for q in ptq] if ref is not None else [])}; QAT - PTQ {span(qat_vs_ptq)}; "
            f"int8 size {span([100 * v for v in sizes], '.0f')}% of fp32; int8/fp32 latency "
            + ", ".join(f"{target} {ratio:.2f}x" for target, ratio in speed.items()) + "."
        )
    return lines + [""]


# Each goal a row misses, with the profile that shows why (benchmarks/results/int8_profile.md, ceiling.md):
# keyed by (model, target, goal); a miss without an entry is reported as unexplained.
_LITERT_S = ("XNNPACK on this x86 CPU (each op timed alone, int8_profile.md, LR-ASPP-S 512x512): int8 "
             "DEPTHWISE_CONV_2D 9.0 ms against 5.2 ms fp32, the int8 hard-swish (ADD + MUL + MUL: XNNPACK has "
             "no int8 HARD_SWISH) 5.9 ms of MUL against 2.2 + 2.6 ms, RESIZE_BILINEAR 3.5 against 2.8 ms; only "
             "CONV_2D gains (4.7 against 14.2 ms), and in LR-ASPP-S it is under half of the fp32 time")
_ORT_S = ("ONNX Runtime 1.32 (profiler, LR-ASPP-S 512x512): QLinearConv 8.8 ms against 16.7 ms of float Conv, "
          "but the head's float Resize (6.8 ms: its input comes from a DequantizeLinear, not the NCHWc layout "
          "of the fp32 file's 4.1 ms Upsample) and the hard-swish QLinearMul (3.7 ms; fused into the conv in "
          "fp32) have no faster int8 kernel")
_OV_S = ("OpenVINO (per-layer counters, LR-ASPP-S 512x512): the two bilinear Interpolates run f32 in the int8 "
         "IR (6.9 ms; 5.1 ms in the fp32 IR at bf16), a third of either file; the 1x1 convolutions take 4.3 + "
         "2.5 ms in AMX int8 against 3.6 ms in AMX bf16, the precision the runtime runs the verified fp32 IR at")

def _size_why(target: str, numbers: str) -> str:
    if target == "tflite":
        return ("format overhead of a small model (measured on the QAT file): a .tflite holds a float32 scale and an "
                f"int64 zero point per output channel, {numbers}; TFLite refuses fewer zero points than scales "
                "(\"QuantizationParam has 1 zero_point values and 128 scale values\", tried)")
    return ("format overhead of a small model (measured on the QAT IR): NNCF's FakeQuantize/Convert/Multiply "
            f"layers in the .xml, {numbers} (whitespace-free .xml: LR-ASPP-S 33.7%, tried)")


MISS_WHY = {
    ("lraspp_mobilenetv3_large", "tflite", "latency"):
        "XNNPACK on this x86 CPU (each op timed alone, int8_profile.md, 512x512): CONV_2D 18.2 ms int8 against "
        "38.7 ms fp32, but DEPTHWISE_CONV_2D 17.3 against 10.9 ms and the int8 hard-swish MULs 10.8 ms against "
        "4.7 + 3.5 ms of fp32 HARD_SWISH + MUL; the file is one XNNPACK partition, so nothing runs outside it",
    ("lraspp_mobilenetv3_large", "onnx", "latency"):
        "ONNX Runtime 1.32 (profiler, 512x512): QLinearConv 47.6 ms against 89.4 ms of float Conv (0.53x), but "
        "the head's float Resize 13.3 ms (7.0 ms in the fp32 file's NCHWc layout) and the hard-swish QLinearMul "
        "13.0 ms (fused into the conv in fp32) have no faster int8 kernel",
    ("lraspp_mobilenetv3_large", "openvino", "latency"):
        "OpenVINO on this AMX-BF16 CPU (per-layer counters, 512x512): the fp32 IR runs at bf16, the fastest "
        "precision its conversion verified; the 1x1 convolutions take 21.6 + 6.3 ms in AMX int8 against 15.0 ms "
        "in AMX bf16, depthwise convolutions and the Interpolate cost the same in both. Against the same fp32 IR "
        "at f32 the int8 IR is 0.68x",
    ("lraspp_mobilenetv3_small", "tflite", "latency"): _LITERT_S,
    ("lraspp_mobilenetv3_small", "onnx", "latency"): _ORT_S,
    ("lraspp_mobilenetv3_small", "openvino", "latency"): _OV_S,
    ("lraspp_mobilenetv3_small", "tflite", "size"):
        _size_why("tflite", "223 KB of the 1.49 MB file; without them it is 28.4% of fp32"),
    ("lraspp_mobilenetv3_small", "openvino", "size"):
        _size_why("openvino", "9.1% of the fp32 IR; the .bin alone is 25.8%"),
    ("multidomain_lraspp_mobilenetv3_small", "tflite", "size"):
        _size_why("tflite", "247 KB of the 1.80 MB file; without them it is 30.3% of fp32"),
    ("multidomain_lraspp_mobilenetv3_small", "openvino", "size"):
        _size_why("openvino", "12.6% of the fp32 IR (one head per domain); the .bin alone is 25.1%"),
    ("mobileformer_lraspp_151m", "tflite", "size"):
        _size_why("tflite", "989 KB of the 7.16 MB file; without them it is 29.5% of fp32"),
    ("mobileformer_lraspp_151m", "openvino", "size"):
        _size_why("openvino", "9.6% of the fp32 IR; the .bin alone is 25.1%"),
    ("mobileformer_lraspp_151m", "tflite", "latency"):
        "the int8 file is 54 XNNPACK partitions (fp32: 1): the dynamic ReLU's MAXIMUM (22), the attention's "
        "BATCH_MATMUL (20 of 66) and GELU (11) have no int8 XNNPACK kernel and run in TFLite's own kernels "
        "between 100 DEQUANTIZE and 89 QUANTIZE (quantization/tflite_inspect.delegate_report); rewriting the MAXIMUM "
        "into int8 ADD + RELU cut the partitions to 31 but ran slower (20.6 against 18.7 ms)",
    ("mobileformer_lraspp_151m", "onnx", "latency"):
        "ONNX Runtime 1.32 (profiler, 128x256, one run: fp32 11.1 ms, QAT int8 11.8 ms): QGemm on 6-token "
        "matrices takes 3.0 ms against 2.6 ms of float Gemm/FusedGemm, the hard-swish QLinearMul 3.2 ms "
        "against 1.8 ms of Mul, and the QuantizeLinear/DequantizeLinear around the float attention, the "
        "float channel-expanding depthwise convolutions and GELU 4.4 ms; QLinearConv gains (1.4 against "
        "2.9 ms of Conv) but the convolutions are a quarter of the file",
    ("mobileformer_lraspp_151m", "openvino", "latency"):
        "OpenVINO (per-layer counters, 128x256): the int8 IR's Linear layers run as FullyConnectedCompressed, "
        "int8 weights decompressed and computed in f32 (5.7 ms against 3.0 + 2.1 ms of fp32 FullyConnected); "
        "its grouped convolutions run the generic jit_gemm int8 kernel (2.7 ms)",
    ("multidomain_lraspp_mobilenetv3_small", "tflite", "latency"):
        "LR-ASPP-S's backbone and two heads; XNNPACK on this x86 CPU (each op timed alone, int8_profile.md, "
        "512x512): int8 CONV_2D 5.5 ms against 20.5 ms fp32, but DEPTHWISE_CONV_2D 8.5 + 1.2 against 4.3 + "
        "0.9 ms, the int8 hard-swish MULs 5.8 against 3.5 + 2.1 ms of MUL + HARD_SWISH, and the padded "
        "3-channel stem CONV_2D+PAD 4.8 against 1.3 ms",
    ("multidomain_lraspp_mobilenetv3_small", "onnx", "latency"):
        "ONNX Runtime 1.32 (profiler, 512x512): QLinearConv 13.3 ms against 25.7 ms of float Conv (0.52x), but "
        "the two heads' float Resizes take 10.8 ms (6.9 ms of NCHWc Upsample in fp32) and the hard-swish "
        "QLinearMul 5.5 ms (1.2 ms of Mul in fp32): no faster int8 kernel for either",
    ("multidomain_lraspp_mobilenetv3_small", "openvino", "latency"):
        "OpenVINO (per-layer counters, 512x512): the two heads' bilinear Interpolates take 11.0 ms at f32 in "
        "the int8 IR and 10.9 ms at bf16 in the fp32 IR, a third of either file; the 1x1 convolutions take "
        "3.8 + 1.6 ms in AMX int8 against 3.7 ms in AMX bf16, the precision the runtime runs the verified "
        "fp32 IR at",
    ("segformer_b0", "openvino", "latency"):
        "OpenVINO on this AMX-BF16 CPU: the fp32 IR runs at bf16, the precision its conversion verified "
        "(before issue 15 the runtime ran it at f32, against which this row read 0.48x). Per-layer counters "
        "at bf16 (128x256, one run): the int8 IR's 1x1 convolutions take 1.80 ms in AMX int8 against 1.41 ms "
        "in AMX bf16, its Linear layers keep bf16 compute with int8 weights (2.57 against 2.98 ms), and its "
        "Reorders, FakeQuantize and f32 Interpolate add about 1.3 ms; int8 pays on OpenVINO where the CPU has "
        "no AMX-BF16",
    ("segformer_b0", "onnx", "latency"):
        "ONNX Runtime 1.32 (profiler, 128x256, one run: fp32 29.5 ms, QAT int8 18.1 ms, 0.61x): QLinearConv "
        "4.0 ms against 13.6 ms of float Conv and QGemm 3.2 against 5.7 ms of Gemm, but LayerNormalization "
        "(1.4 ms), GELU's Erf (0.8 ms), the attention left float and the QuantizeLinear/DequantizeLinear "
        "around them (3.2 ms) have no int8 kernel",
}


def _goal_measures(t: dict) -> tuple[float | None, float | None, float | None]:
    """(QAT - float mIoU, int8/fp32 size, int8/fp32 latency) of one target's results, None where
    not measured; the int8 file is the QAT one, the PTQ one without it."""
    fp32, qat = t.get("fp32", {}), t.get("qat", {})
    best = qat or t.get("ptq", {})
    ref = t.get("reference_miou")
    size = best.get("size_bytes", 0) / fp32["size_bytes"] if fp32.get("size_bytes") and best else None
    lat = (best.get("model_call_p50_ms") / fp32["model_call_p50_ms"]
           if fp32.get("model_call_p50_ms") and best.get("model_call_p50_ms") else None)
    drop = (qat["miou"] - ref) if qat.get("miou") is not None and ref is not None else None
    return drop, size, lat


def _head(row: str) -> str:
    """"[head] " of a multi-domain row's name, "" for a single-head model's."""
    return row[row.index("["):] + " " if "[" in row else ""


def misses(state: dict, latency: dict) -> list[str]:
    """Every goal a row misses, the best the run achieved for it and why (MISS_WHY)."""
    found: dict[tuple, list[str]] = {}
    for name, row in domain_rows(state):
        base = name.partition(" [")[0]
        for target, t in row["targets"].items():
            ptq, qat = t.get("ptq", {}), t.get("qat", {})
            drop, size, lat = _goal_measures(t)
            if size is not None and size > 0.30:
                found.setdefault((base, target, "size"), []).append(f"{100 * size:.0f}%")
            if drop is not None and drop < -0.5:
                found.setdefault((base, target, "accuracy"), []).append(f"{_head(name)}QAT - float {drop:+.2f}")
            if qat.get("miou") is not None and ptq.get("miou") is not None and qat["miou"] < ptq["miou"]:
                found.setdefault((base, target, "ptq"), []).append(f"{_head(name)}QAT {qat['miou']:.2f} < PTQ {ptq['miou']:.2f}")
            if lat is not None and lat > 0.6:
                found.setdefault((base, target, "latency"), []).append(f"{lat:.2f}x at {SIZE[0]}x{SIZE[1]}")
    for name, sizes in latency.items():
        for size, targets in sizes.items():
            for target, t in targets.items():
                if t["ratio"] > 0.6:
                    found.setdefault((name, target, "latency"), []).append(f"{t['ratio']:.2f}x at {size}")
    if not found:
        return []
    goal = {"latency": "int8/fp32 latency <= 0.6x", "size": "size <= 30% of fp32", "ptq": "QAT not below PTQ",
            "accuracy": "QAT within 0.5 mIoU of float"}
    lines = ["## The goals missed, each with its profile", "",
             "Each miss with the run's results for it (deduplicated over a model's heads) and what the "
             "profiles show holds it (benchmarks/results/int8_profile.md; limits.md and ceiling.md for the "
             "peaks):", ""]
    grouped: dict[tuple[str, str], list[str]] = {}  # (model, why) -> its misses: one bullet per cause
    for (model, target, kind), results in found.items():
        why = MISS_WHY.get((model, target, kind), "NOT EXPLAINED: no profile of it yet")
        grouped.setdefault((model, why), []).append(f"{target}, {goal[kind]}: {', '.join(dict.fromkeys(results))}")
    for (model, why), items in grouped.items():
        lines.append(f"- {model}; {'; '.join(items)}. {why}.")
    return lines + [""]


# Why the numbers are what they are: the investigations behind them, made when the committed run was
# written (profiles, other quantizer settings) and not re-run by this script.
NOTES = [
    "Investigations behind the latency numbers (made when the committed run was written; not re-run by "
    "this script):",
    "",
    "- LR-ASPP MobileNetV3 (depthwise convolutions, hard-swish, squeeze-excitation) is where int8 gains "
    "least. OpenVINO: the runtime runs an int8 IR's float ops at f32, as they were calibrated and gated, "
    "not at the bf16 this CPU would pick. ONNX Runtime: the int8 activations are uint8 (U8S8, the "
    "pair its x86 kernels take; int8 activations ran at 1.43x); before issue 15 the float islands around "
    "hard-swish (HardSigmoid + Mul), the squeeze-excitation ReduceMean and the resizes, with their "
    "DequantizeLinear/QuantizeLinear, took about 40% of the int8 file's time (next bullet). LiteRT: see its own bullet below.",
    "- LiteRT, issue 15 (quantization/tflite_quantizer.py): XNNPACK has no int8 HARD_SWISH, so each "
    "hard-swish split the delegate (LR-ASPP-L int8: 21 partitions, LR-ASPP-S: 19; fp32: 1) and ran in "
    "TFLite's own kernel, and litert-torch lowered the squeeze-excitation hard-sigmoid to float ops between "
    "DEQUANTIZE/QUANTIZE (18 of them in LR-ASPP-L). edgeseg now rewrites both before PT2E into int8 "
    "ops XNNPACK has (hard-sigmoid = relu6(x + 3) * 1/6: an ADD with a fused RELU6 and a MUL by a "
    "1x1x1x1 constant; hard-swish = x * hard-sigmoid(x)), float outputs unchanged "
    "(tests/test_quant_tflite_rewrite.py): the int8 file is one XNNPACK partition, QUANTIZE/DEQUANTIZE "
    "only at its input and output (quantization/tflite_inspect.py). Activation rewrite alone, untrained-weight files at 512x512, "
    "a loaded machine, round robin, p50: LR-ASPP-L int8/fp32 1.66x -> 0.70x, LR-ASPP-S 2.69x -> 1.11x "
    "(512x1024: L 1.60x -> 0.71x, S 2.28x -> 1.11x). Profiled by timing prefixes of the graph and "
    "ablations of the file: int8 loses in the high-resolution front of the network, where the input "
    "normalization's per-channel MUL/ADD ([1,1,1,3] constants broadcast over a 3-channel image) took "
    "~47 ms of LR-ASPP-S's 170 ms in int8 (~23 ms in fp32; measured by making the constants scalars); "
    "edgeseg now folds it into one 3-channel 1x1 depthwise convolution (int8 files only). Both rewrites, "
    "untrained-weight files, 512x512, quiet machine, p50 of 21 round-robin runs: LR-ASPP-L fp32 69.2 ms, "
    "int8 before 123.5 (1.79x), activations rewritten 53.8 (0.78x), plus the fold 48.0 ms (0.69x); "
    "LR-ASPP-S 1.29x -> 0.96x from the fold (loaded machine); the previous run's QAT files (915-step "
    "checkpoint): LR-ASPP-S 1.02x at 512x512 and 0.84x at 512x1024; this run's are in the table above. Segment profile before the fold "
    "(min of 9-11 runs, 512x512, a loaded machine): up to the first 1/8-resolution block int8 took 97 vs 31 "
    "ms (S) and 169 vs 93 ms (L), the rest of the backbone 0.76x (S) and 0.52x (L) of fp32, and the head "
    "with the final logits upsample to 512x512x9 (RESIZE_BILINEAR, then DEQUANTIZE) as long in int8 as in "
    "fp32 (S: 53 vs 52 ms): what keeps LR-ASPP-S above the 0.6x goal on this CPU.",
    "- ONNX Runtime, issue 15 (quantization/onnx.py): SE ReduceMean -> GlobalAveragePool (a float rewrite, "
    "same outputs: QLinearGlobalAveragePool), hard-sigmoid and hard-swish as an Add quantized onto the clip "
    "range (scale 1/(255 alpha), zero point 0) read back on a 1/255 grid (QLinearAdd, then QLinearMul for "
    "hard-swish), the final logits upsample without its Q/DQ round trip, the RGB stem conv float (ORT's "
    "3-channel int8 conv ran at 2x its float NCHWc time, 18% of the int8 file), all-zero weight zero points "
    "dropped and short tensor names (LR-ASPP-S file 31% -> 28% of fp32). ORT's optimized graph now has no "
    "DequantizeLinear -> float op -> QuantizeLinear but the head's bilinear Resize (ORT keeps the Q/DQ of a "
    "linear Resize even with equal scales, and its uint8 linear Resize ran 4x slower than the float one: "
    "92 vs 24 ms, 19x64x64 -> 512x512). Random-init LR-ASPP-L 512x512: 1.40x -> 0.78x of fp32 (loaded "
    "machine). What keeps LR-ASPP-S at 0.81x (ORT profiler, 512x512, 1 thread, quiet moment, kernel time): "
    "int8 43.1 ms = QLinearConv 34%, final float bilinear upsample 22% (9.7 ms; the fp32 file's NCHWc "
    "upsample + reorder 12.7 ms: the same work), QLinearMul 15% (hard-swish multiply; fused into the conv in "
    "fp32; MLAS's QLinearMul ran 3x slower than QLinearAdd per element), QuantizeLinear of the float stem's "
    "output 7%; fp32 50.1 ms = Conv (with its fused activations) 59%, upsample 17%, reorders 16%. The int8 "
    "convolutions are 2x faster than the float ones (14.5 vs 29.5 ms); the rest has no faster int8 kernel "
    "in ORT 1.32, so 0.6x is out of reach there.",
    "- Rows: every model was trained for this run (steps above, each schedule annealed to zero), after "
    "issue 15's LiteRT, ONNX and OpenVINO int8 changes; segformer_b0 last, with all of them (its earlier "
    "rows, from a run of 2026-11-21, predated the TFLite input-normalization fold, the ONNX stem, zero-point "
    "and attention changes and the OpenVINO bf16 baseline: QAT +0.47 to +0.54, int8/fp32 0.45x TFLite, "
    "0.53x ONNX, 0.48x OpenVINO against f32). The multi-domain "
    "model is not converged in 650 steps (its float fine-tune control gains as much as QAT on the night head).",
    "- QAT recipe: every QAT and control row of this run fine-tunes with the optimizer its checkpoint "
    "trained with at 1% of that lr (quantization/qat.py resolve_recipe; AdamW 4e-5 for the LR-ASPP models, "
    "1e-5 for SegFormer-B0 and Mobile-Former). The previous run, the same checkpoints and PTQ files, used a "
    "fixed AdamW 1e-4, 10% of SegFormer's and Mobile-Former's training lr: SegFormer-B0's QAT files were "
    "0.22-0.48 points below PTQ on every target (QAT - float -0.35 to -0.51; its QAT checkpoint scored 64.29 "
    "in float) and Mobile-Former's ONNX file 0.04 below; at 1% they are 0.23-0.38 (SegFormer) and 0.59-0.91 "
    "(Mobile-Former) above. On the LR-ASPP models 1e-4 was 2.5% of their lr and QAT gained 0.1-0.2 points "
    "more than at 1% (QAT - PTQ: LR-ASPP-L +0.41 to +0.50 then, +0.32 to +0.36 now; LR-ASPP-S +0.99 to "
    "+1.08 then, +0.77 to +0.95 now), as the float control did: these short CPU runs keep learning, so "
    "QAT's steps also train (the control column).",
    "- OpenVINO baseline: the runtime runs an IR at the fastest inference precision its conversion verified "
    "(issue 15): an fp32 IR at bf16 on this CPU, which has AMX-BF16, and an int8 IR's float ops at bf16 when "
    "its int8 gate passed again there (every OpenVINO int8 row of this run: the scores above are at bf16; "
    "the bf16 agreement with PyTorch is in each file's precision_checks). Against that baseline int8 is about "
    "1.0x on LR-ASPP-L; against the same fp32 IR at f32 it is 0.68x (LR-ASPP-L 512x512, "
    "benchmarks/results/int8_profile.md, which also shows why: the 1x1 convolutions run as fast in AMX bf16 "
    "as in AMX int8, the depthwise convolutions and the upsample cost the same in both). int8 pays on "
    "OpenVINO where the CPU has no AMX-BF16.",
    "- Mobile-Former-151M: int8 is slower than fp32 on all three backends at 128x256 (its token Linear "
    "layers, attention and dynamic ReLU gain nothing from int8 there: ONNX Runtime's QGemm on 6-token matrices is "
    "no faster than its float Gemm, OpenVINO decompresses their weights to f32, LiteRT's XNNPACK splits "
    "into 54 partitions around int8 MAXIMUM, BATCH_MATMUL and GELU); per-op profiles in "
    "benchmarks/results/int8_profile.md. Its 3x3 depthwise convolutions that also expand the channels (2-6 "
    "outputs per group) ran ONNX Runtime's slow generic int8 path (all int8 convs 12.2 ms against 2.5 ms for "
    "every float Conv); they now stay float in the ONNX int8 file (quantization/onnx.py) and edgeseg's runtime "
    "keeps ORT from quantizing them back: ONNX int8/fp32 2.2-2.3x -> 1.48x. The Linear layers' weights then "
    "keep their zero points, without which ORT ran them as float Gemm and dequantized their weights on every "
    "call: 1.48x -> 1.26x. On OpenVINO the same convolutions cost the QAT IR 2.66 mIoU points (NNCF's "
    "accuracy control, asked for 0.5, put exactly two of them back to float); their inputs now stay float: "
    "-0.14 points, PTQ -0.4, and 1.45x -> 1.30x of fp32.",
    "- OpenVINO, issue 15 (PERF_COUNT profile of the int8 IR, LR-ASPP-S 512x512, f32 hint, 1 thread): every "
    "convolution, group convolution, SE ReduceMean/Multiply and residual Add runs int8 (AMX/VNNI "
    "kernels); f32 are the two bilinear Interpolates (31% of the int8 time; the head Add's output is "
    "already FakeQuantized by NNCF and the CPU plugin still interpolates in f32), the final blocked -> "
    "planar Reorder of the logits (15%) and the input FakeQuantize: the upsample + reorder are the same work "
    "in the fp32 file (38% of it), which bounds the ratio. Kernel time int8/fp32 0.56x; the compiled models "
    "alone (shared I/O) 0.76x at 512x512 and 0.65x at 512x1024, through edgeseg's runtime 0.78x and 0.66x "
    "(table above). The bilinear upsample of 9 classes runs in the channels-last layout (acdb) in both files "
    "and dominates at 128x256 (73% of the int8 kernel time: the 128x256 row's 1.00x); forcing planar "
    "layouts through the CPU plugin's InputMemoryFormats/OutputMemoryFormats rt_info changed nothing. NNCF's PERFORMANCE preset (symmetric activations) "
    "was no faster; with a bf16 hint the fp32 file runs AMX bf16 and int8 is 0.99x of it. With 19 classes "
    "the logits reorder falls to OpenVINO's reference kernel (19 pads to 32): 140 ms, 44% of LR-ASPP-L int8 "
    "at 512x512, in both files.",
    "- OpenVINO int8 leaves matmul inputs float (weights int8): with int8 linear inputs SegFormer lost 4.9 "
    "points (quantization/openvino.py), and the int8 graph comes from torch.export like the fp32 file "
    "(from the TorchScript frontend's ScaledDotProductAttention op it ran at 0.79x instead of 0.48x).",
    "- Timings: 1 thread, median of the model call, fp32 and int8 files of a target round robin in one run; "
    "the machine (above) is shared with other jobs, so ratios within a target are the numbers to read.",
    "- Anchors for scale: NNCF's QAT UNet/CamVid -0.06, TF-Model-Garden DeepLabV3+ QAT -0.35.",
]


def write_report(state: dict, args) -> None:
    from edgeseg.fileio import write_json_atomic, write_text_atomic

    lines = [
        "# Int8: PTQ and QAT per target (CPU)", "",
        f"Machine: {describe(_measured_on(state), ('torch', 'onnxruntime', 'ai-edge-litert', 'openvino', 'nncf', 'torchao', 'litert-torch'))}; "
        f"shared with other jobs (timings are noisy); 1 thread per backend. Models trained on `synthetic:train` at {SIZE[0]}x{SIZE[1]} (AdamW, poly schedule annealed "
        "to zero over the steps below: converged float models, so QAT is compared with a finished model), "
        f"scored on {args.eval_images} images of `{HELD_OUT}` (never used for training, "
        "calibration or QAT) by the harness (edgeseg.validate) against the float checkpoint in PyTorch. "
        f"Multi-domain models train one head per domain ({', '.join(MULTI_DOMAIN_DATA)}: 9 and 6 classes) "
        "with MixLoss, and QAT fine-tunes every head the same way; each head gets its own rows, scored on "
        "its own domain's held-out images and classes (size and latency: the file with every head).",
        f"PTQ: {args.calib_size} calibration images of `synthetic:train`. QAT: one QAT checkpoint per model "
        "(PT2E fake quantization, per-channel int8 weights, per-tensor int8 activations, BN folded and frozen; "
        "batch 8, 1 epoch; optimizer, lr and steps per model below: the recipe's default is the "
        "optimizer the checkpoint trained with at 1% of its lr), then each target's "
        "int8 path re-calibrated on it. Latency: p50 of the model call, fp32 and int8 files of a target timed "
        "round robin in the same run.", "",
        *[f"- {n}: trained {t['steps']} steps of batch 8 in {t['seconds'] / 60:.1f} min; QAT "
          f"{state.get('quant', {}).get(n, {}).get('qat', {}).get('steps', '-')} steps"
          f"{_recipe(state.get('quant', {}).get(n, {}).get('qat', {}))}"
          for n, t in state.get("train", {}).items()],
        "",
        "Commands of this run, in order (`python benchmarks/int8.py` with; recorded by the script in "
        f"{RUNS.relative_to(ROOT)}/commands.json): "
        + ("; ".join(f"`{c}`" for c in _commands()) or "not recorded (a run before the command log)") + ".", "",
        "| model | target | float mIoU | fp32 file mIoU | PTQ mIoU | QAT mIoU | QAT - float | float fine-tuned like QAT | int8/fp32 size | int8/fp32 latency | goals (0.5 / 30% / 0.6x) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in domain_rows(state):
        control = control_miou(name)
        for target, t in row["targets"].items():
            fp32, ptq, qat = t.get("fp32", {}), t.get("ptq", {}), t.get("qat", {})
            ref = t.get("reference_miou")
            drop, size, lat = _goal_measures(t)
            goals = [drop is not None and drop >= -0.5, size is not None and size <= 0.30, lat is not None and lat <= 0.6]
            lines.append(
                f"| {name} | {target} | {_f(ref)} | {_f(fp32.get('miou'))} | {_f(ptq.get('miou'))} | {_f(qat.get('miou'))} | "
                f"{_f(drop, '+.2f')} | {_f(control)} | {_f(size and 100 * size, '.0f')}% | {_f(lat, '.2f')}x | "
                f"{' / '.join('yes' if g else 'MISS' for g in goals)} |"
            )
    latency = {path.stem[len("latency_"):]: json.loads(path.read_text()) for path in sorted(RUNS.glob("latency_*.json"))}
    if latency:
        lines += ["", "Latency at the issue's sizes (fp32 file of the float checkpoint, int8 file of the QAT "
                  "checkpoint, each converted at that size; 1 thread, median model call, round robin; "
                  "`--stages latency --latency-sizes 512x512,512x1024`; an input marked /8: both files "
                  "converted with `--output-stride 8`, logits at the head's 1/8 resolution and the runtime's exact "
                  "upsample in predict). predict: the whole `seg.predict` on an image of "
                  "the input's size (pre, model call, post), median, same run:", "",
                  "| model | input | target | fp32 ms | int8 ms | int8/fp32 | fp32 predict ms | int8 predict ms | predict int8/fp32 | goal 0.6x |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, sizes in latency.items():
            for size, targets in sizes.items():
                for target, t in targets.items():
                    fp32_p, int8_p = t.get("fp32_predict_ms"), t.get("int8_predict_ms")
                    lines.append(f"| {name} | {size} | {target} | {t['fp32_ms']:.1f} | {t['int8_ms']:.1f} | "
                                 f"{t['ratio']:.2f}x | {_f(fp32_p)} | {_f(int8_p)} | "
                                 f"{f'{int8_p / fp32_p:.2f}x' if fp32_p and int8_p else '-'} | "
                                 f"{'yes' if t['ratio'] <= 0.6 else 'MISS'} |")
    lines += ["", "Raw numbers (sizes in bytes, latencies in ms, errors of files that failed): `int8.json`.", ""]
    lines += misses(state, latency) + summary(state) + NOTES
    write_text_atomic(RESULTS / "int8.md", "\n".join(lines) + "\n")
    controls = {path.stem[len("control_"):]: json.loads(path.read_text()) for path in sorted(RUNS.glob("control_*.json"))}
    write_json_atomic(RESULTS / "int8.json", {**state, "float_finetune_controls": controls, "latency_sizes": latency})


def _commands() -> list[str]:
    path = RUNS / "commands.json"
    return json.loads(path.read_text()) if path.exists() else []


def _log_command() -> None:
    """Append this invocation's arguments to the run's command log, which the report lists."""
    import sys

    RUNS.mkdir(parents=True, exist_ok=True)
    command = " ".join(sys.argv[1:]) or "(defaults)"
    (RUNS / "commands.json").write_text(json.dumps(_commands() + [command], indent=1))


def _measured_on(state: dict) -> dict:
    """The machine the quant rows were measured on (recorded with them), else this one."""
    for row in state.get("quant", {}).values():
        if row.get("environment"):
            return row["environment"]
    return environment(threads=1)


def _recipe(qat: dict) -> str:
    """A model's QAT optimizer and lr as its report line gives them ('' for a run that predates them)."""
    return f" ({qat['recipe']})" if qat.get("recipe") else ""


def _f(value, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stages", default="train,quant")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--steps", type=int, default=None,
                        help="Train for this many steps (schedule annealed to zero); --minutes then only caps it.")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--calib-size", type=int, default=64)
    parser.add_argument("--qat-images", type=int, default=256)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--qat-lr", type=float, default=None,
                        help="QAT and control lr (default: the QAT recipe's, 1%% of the checkpoint's training lr)")
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--reuse", action="store_true", help="Keep files (and the QAT checkpoint) an earlier run wrote.")
    parser.add_argument("--output-stride", type=int, default=1,
                        help="Stage latency: convert the files with --output-stride N (logits at the head's resolution).")
    parser.add_argument("--latency-sizes", default="512x512,512x1024",
                        help="Stage latency: HxW input sizes the fp32 and int8 files are converted at and timed.")
    args = parser.parse_args()
    stages = args.stages.split(",")
    state_path = RUNS / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    _log_command()
    if "control" in stages:
        for name in args.models.split(","):
            control = float_control(name, RUNS / name / "best.safetensors", args)
            print(name, "float fine-tune control", control, flush=True)
            (RUNS / f"control_{name}.json").write_text(json.dumps(control, indent=1))
    if "report" in stages:  # rewrite the report from the saved results (parallel runs)
        write_report({**state, "quant": collect_quant()}, args)
    if "train" in stages:
        RUNS.mkdir(parents=True, exist_ok=True)
        trained = train_models(args.models.split(","), args.minutes, args.steps)
        # Read again: a parallel run over other models may have written its own entries meanwhile.
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        state["train"] = {**state.get("train", {}), **trained}
        state_path.write_text(json.dumps(state, indent=1))
    if "quant" in stages:
        for name in args.models.split(","):
            # One file per model (apart from state.json): models may be benchmarked by parallel runs.
            quant_model(name, RUNS / name / "best.safetensors", args)
    if "latency" in stages:
        for name in args.models.split(","):
            latency_sizes(name, args)
        write_report({**state, "quant": collect_quant()}, args)


def collect_quant() -> dict:
    """Every model's quant results (quant.json from a run over several models, quant_<model>.json)."""
    merged = json.loads((RUNS / "quant.json").read_text()) if (RUNS / "quant.json").exists() else {}
    for path in sorted(RUNS.glob("quant_*.json")):
        merged[path.stem[len("quant_"):]] = json.loads(path.read_text())
    return merged


if __name__ == "__main__":
    main()
