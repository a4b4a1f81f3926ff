"""Where an int8 file spends its time, beside its fp32 file: per-op-type kernel time from ONNX
Runtime's profiler and OpenVINO's per-layer counters (1 thread), for the int8 benchmark's files,
and for LiteRT files each op's in-context time (below).

It explains the int8/fp32 rows of ``benchmarks/results/int8.md`` that miss the 0.6x goal: which
op types take the int8 file's time, and which of them run a float kernel. OpenVINO files are
profiled at each inference precision the CPU offers (f32, bf16 where it has it): the runtime runs
an fp32 file at the fastest precision its conversion verified, and an int8 IR at f32.

LiteRT's Python API has no op profiler. So each op of a ``.tflite`` is timed alone: a file of
that one op (a PAD together with the convolution that reads it, which XNNPACK fuses), its other
inputs made the graph's, run by the XNNPACK delegate; times are summed by op type. Alone, the ops
add up to more than the whole file (LR-ASPP-L 512x512: 1.3x for fp32, 1.9x for int8; cutting the
graph into prefixes instead failed: MobileNetV3's residuals and LR-ASPP's 1/8 tap leave no cut
points). So read a row as where the time goes and compare an op type's int8 time with its fp32
time, not the sums with the wall time.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/int8_profile.py \\
        --pair mobileformer_lraspp_151m:onnx_fp32.onnx,onnx_qat.onnx --runs 20

Writes benchmarks/results/int8_profile.{md,json} (rows of earlier runs are kept, by pair).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgeseg.fileio import write_results
from edgeseg.validate.environment import describe, environment

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench_int8"
RESULTS = ROOT / "benchmarks" / "results"
TOP = 8  # op types listed per file


def _input(shape, dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 256, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _median_ms(call, runs: int, warmup: int = 3) -> float:
    """Median wall time of ``call()`` in ms over ``runs`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def profile_onnx(path: Path, runs: int, nodes: bool = False) -> dict:
    """Kernel time per op type; ``nodes``: also per node, with its group (for benchmarks/ceiling.py)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    from edgeseg.runtime.onnx import keep_float_convs, written_int8_by_edgeseg

    plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    if written_int8_by_edgeseg(plain):  # as edgeseg's runtime opens it: float convs stay float
        keep_float_convs(options)
        plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta = plain.get_inputs()[0]
    dtype = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32, "tensor(float16)": np.float16}[meta.type]
    feed = {meta.name: _input([d if isinstance(d, int) else 1 for d in meta.shape], dtype)}
    wall = _median_ms(lambda: plain.run(None, feed), runs)
    groups: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "ort")
        if nodes:  # the graph that ran (ORT's NCHWc rewrite renames nodes): its convolutions' groups
            options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        profiled = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        if nodes:
            groups = {node.name: next((a.i for a in node.attribute if a.name == "group"), 1)
                      for node in onnx.load(options.optimized_model_filepath).graph.node}
        for _ in range(runs):
            profiled.run(None, feed)
        events = json.loads(Path(profiled.end_profiling()).read_text())
    by_op: dict[str, float] = defaultdict(float)
    per_node: dict[str, list] = {}  # node name -> [op type, ms per call, group (convolutions; 1 otherwise)]
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op, ms = event["args"]["op_name"], event["dur"] / 1000 / runs
            by_op[op] += ms
            name = event["name"][: -len("_kernel_time")]
            per_node.setdefault(name, [op, 0.0, groups.get(name, 1)])[1] += ms
    result = {"backend": "onnxruntime", "precision": "as converted", "wall_ms": wall,
              "kernel_ms": sum(by_op.values()), "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]))}
    return {**result, "nodes": list(per_node.values())} if nodes else result


def profile_openvino(path: Path, runs: int, precision: str) -> dict:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", {
        "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERF_COUNT": True, "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY"})
    port = compiled.inputs[0]
    tensor = _input(list(port.get_partial_shape().to_shape()), port.get_element_type().to_dtype())
    request = compiled.create_infer_request()
    for _ in range(3):
        request.infer({0: tensor}, share_inputs=True, share_outputs=True)
    wall = []
    by_op: dict[str, float] = defaultdict(float)
    for _ in range(runs):
        start = time.perf_counter()
        request.infer({0: tensor}, share_inputs=True, share_outputs=True)
        wall.append(time.perf_counter() - start)
        for info in request.profiling_info:
            if info.status == info.Status.EXECUTED:
                key = f"{info.node_type} ({info.exec_type})"
                by_op[key] += info.real_time.total_seconds() * 1000 / runs
    return {"backend": "openvino", "precision": precision, "wall_ms": 1000 * float(np.median(wall)),
            "kernel_ms": sum(by_op.values()), "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]))}


def _single_ops(path: Path):
    """Yield (op type, a .tflite of that op alone) for the main graph's ops (module docstring)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    model.signatureDefs = []  # they name the full graph's inputs and outputs
    ops = list(graph.operators)
    names = [flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) for op in ops]

    def constant(tensor: int) -> bool:
        data = model.buffers[graph.tensors[tensor].buffer].data
        return data is not None and len(data) > 0

    pads = {int(op.outputs[0]): op for op, name in zip(ops, names) if name in ("PAD", "PADV2")}
    for op, name in zip(ops, names):
        if name in ("PAD", "PADV2"):
            continue
        pad = next((pads[int(t)] for t in op.inputs if int(t) in pads), None)
        group = [pad, op] if pad is not None else [op]
        produced = {int(t) for o in group for t in o.outputs}
        graph.operators = group
        graph.inputs = [int(t) for o in group for t in o.inputs
                        if t >= 0 and not constant(int(t)) and int(t) not in produced]
        graph.outputs = [int(t) for t in op.outputs]
        yield name + ("+PAD" if pad is not None else ""), bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _invoke_ms(interpreter, runs: int) -> float:
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], _input(detail["shape"], detail["dtype"]))
    return _median_ms(interpreter.invoke, runs)


def profile_tflite(path: Path, runs: int) -> dict:
    """Each op timed alone (module docstring), summed by op type."""
    from ai_edge_litert.interpreter import Interpreter

    whole = Interpreter(model_path=str(path), num_threads=1)
    whole.allocate_tensors()
    wall = _invoke_ms(whole, runs)
    by_op: dict[str, float] = defaultdict(float)
    for op_type, content in _single_ops(path):
        alone = Interpreter(model_content=content, num_threads=1)
        alone.allocate_tensors()
        by_op[op_type] += _invoke_ms(alone, runs)
    return {"backend": "litert", "precision": "as converted", "wall_ms": wall, "kernel_ms": sum(by_op.values()),
            "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]))}


def profile_pair(model: str, names: list[str], runs: int) -> list[dict]:
    rows = []
    for name in names:
        path = RUNS / model / "files" / name
        if path.suffix == ".onnx":
            results = [profile_onnx(path, runs)]
        elif path.suffix == ".tflite":
            results = [profile_tflite(path, runs)]
        else:
            import openvino as ov

            offered = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            results = [profile_openvino(path, runs, p) for p in ("f32", "bf16") if p == "f32" or "BF16" in offered]
        for result in results:
            rows.append({"model": model, "file": name, **result})
            top = ", ".join(f"{op} {ms:.1f}" for op, ms in list(result["by_op"].items())[:4])
            print(f"{model} {name} {result['precision']}: {result['wall_ms']:.1f} ms; {top}", flush=True)
    return rows


def render(report: dict) -> list[str]:
    lines = [
        "# Int8 profiles: where the int8 files' time goes, beside the fp32 files", "",
        f"{describe(report['environment'], ('onnxruntime', 'openvino'))}; 1 thread; random input of the "
        "file's shape; wall = median of the model call alone, kernel = the profiler's per-op time per "
        "call (summed over op types; ONNX Runtime's kernel_time events, OpenVINO's executed layers' "
        "real_time; LiteRT: each op timed alone in a file of its own, summed: see the script's "
        "docstring). OpenVINO rows name the layer type and the kernel that ran it (its precision: "
        "`_I8`, `_f32`, `_bf16`). Files: runs/bench_int8/MODEL/files (the int8 benchmark's; 128x256 "
        "unless the name says otherwise).", "",
        "| model | file | backend | precision | wall ms | kernel ms | top op types (ms per call) |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for row in report["rows"]:
        top = "; ".join(f"{op} {ms:.2f}" for op, ms in list(row["by_op"].items())[:TOP])
        lines.append(f"| {row['model']} | {row['file']} | {row['backend']} | {row['precision']} | "
                     f"{row['wall_ms']:.1f} | {row['kernel_ms']:.1f} | {top} |")
    lines += ["", *report.get("findings", []), "",
              "Reproduce: `OMP_NUM_THREADS=1 nice -n 10 python benchmarks/int8_profile.py --pair "
              "MODEL:FP32_FILE,INT8_FILE --runs 20` (after `benchmarks/int8.py` wrote the files; .onnx, .xml "
              "or .tflite).", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pair", action="append", default=[],
                        help="MODEL:FILE,FILE (files in runs/bench_int8/MODEL/files), e.g. the fp32 and QAT int8 files")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--findings", help="a JSON list of lines stating what the rows show (kept in the report)")
    args = parser.parse_args()
    previous = RESULTS / "int8_profile.json"
    report = json.loads(previous.read_text()) if previous.exists() else {"rows": []}
    for pair in args.pair:
        model, _, files = pair.partition(":")
        names = files.split(",")
        report["rows"] = [r for r in report["rows"] if not (r["model"] == model and r["file"] in names)]
        report["rows"] += profile_pair(model, names, args.runs)
    if args.pair or "environment" not in report:  # a findings-only call keeps the measuring run's header
        report["environment"] = environment(threads=1)
    if args.findings:
        report["findings"] = json.loads(args.findings)
    write_results(RESULTS, "int8_profile", report, render(report), echo=False)
    print(f"wrote {RESULTS / 'int8_profile.md'}")


if __name__ == "__main__":
    main()
