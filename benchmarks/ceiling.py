"""The ceiling of each edgeseg file in ``benchmarks/results/limits.md``: the % of peak it would reach
if every dense matmul-class op ran at the CPU's peak and every other op took the time its
backend's profiler measured. It shows whether a row's miss of the issue's peak goals (int8 >= 50%,
fp32 >= 80%) lies in the matmul kernels or in the rest of the network.

Per file (the ones ``limits.py --files runs/limits`` kept; 1 thread, random input):

- the profile: ONNX Runtime's per-node kernel times, OpenVINO's per-layer counters at the
  precision the limits row ran at, LiteRT's ops each timed alone (``int8_profile.py``);
- dense ops: convolutions with one group, Gemm/FullyConnected and MatMul; every other op
  (depthwise and other grouped convolutions, resizes, elementwise, normalization, softmax,
  layout, (de)quantization, OpenVINO's fused attention Subgraph) is "rest";
- the profile is scaled to the file's wall time when it sums to more (the profiler's own cost;
  LiteRT's ops alone add up to more than the whole file), never scaled up;
- M = the model's multiply-adds (limits.json), M_dense = M less those of grouped convolutions and
  of attention's activation x activation matmuls (which ONNX Runtime and LiteRT run as MatMul /
  BATCH_MATMUL, types their Linear layers share: there their time counts as dense, which only
  raises the ceiling and lowers the dense ops' rate), and the ceiling

      ceiling % of peak = (M / peak) / (M_dense / peak + rest ms)

  an upper bound for the file with its backend's kernels for the rest; "dense ops' rate" =
  M_dense / dense ms against the same peak: how close the matmul-class kernels themselves come
  (where they beat the measured peak, their own rate stands in for the peak in M_dense / peak).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/ceiling.py [--runs 10] [--models ...] [--backends ...]

Writes benchmarks/results/ceiling.{md,json}; ``limits.py --report-only`` then shows the ceiling
beside each row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FILES = ROOT / "runs" / "limits"

DENSE = {
    "onnxruntime": {"Conv", "QLinearConv", "FusedConv", "NhwcFusedConv", "Gemm", "QGemm", "MatMul", "FusedMatMul",
                    "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"},
    "openvino": {"Convolution", "FullyConnected", "FullyConnectedCompressed", "MatMul"},
    "litert": {"CONV_2D", "CONV_2D+PAD", "FULLY_CONNECTED", "BATCH_MATMUL"},
}
CONVS = {"Conv", "QLinearConv", "FusedConv", "NhwcFusedConv"}
GOALS = {"int8": 50, "fp32": 80, "bf16": 80}  # the goals (bf16: the fp32 file run at bf16)
TOP_OPS = 8  # rest ops kept per row


def non_dense_gmacs(name: str, size: tuple[int, int]) -> float:
    """Multiply-adds at ``size`` that no dense op computes: grouped (depthwise and other)
    convolutions, counted by forward hooks, and attention's activation x activation matmuls
    (torch's FLOP counter's ``bmm``; OpenVINO runs them inside its MHA Subgraph, counted as rest)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from edgeseg.models import create_model

    model = create_model(name, classes=tuple(f"c{i}" for i in range(9))).eval()
    grouped = [0]

    def hook(module, _inputs, output):
        if module.groups > 1:
            kh, kw = module.kernel_size
            grouped[0] += output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, *size))
    for handle in handles:
        handle.remove()
    attention = sum(flops for op, flops in counter.get_flop_counts()["Global"].items() if "bmm" in str(op)) / 2
    return (grouped[0] + attention) / 1e9


def _onnx_dense(op: str, group: int) -> bool:
    """A node of ONNX Runtime's optimized graph is dense: a matmul, or a convolution of one group."""
    return op in DENSE["onnxruntime"] and (op not in CONVS or group == 1)


def split(backend: str, profile: dict) -> tuple[float, dict[str, float]]:
    """(dense ms, rest ms by op) of one profile, scaled down to its wall time when it sums to more."""
    rest: dict[str, float] = {}
    dense = 0.0
    if backend == "onnxruntime":
        for op, ms, group in profile["nodes"]:
            if _onnx_dense(op, group):
                dense += ms
            else:
                key = f"{op} (grouped)" if op in CONVS else op
                rest[key] = rest.get(key, 0.0) + ms
    else:
        for key, ms in profile["by_op"].items():
            if key.split(" (")[0] in DENSE[backend]:
                dense += ms
            else:
                rest[key] = rest.get(key, 0.0) + ms
    scale = min(1.0, profile["wall_ms"] / profile["kernel_ms"])
    return dense * scale, {k: v * scale for k, v in sorted(rest.items(), key=lambda kv: -kv[1])}


def file_of(row: dict) -> Path:
    target = {"onnxruntime": "onnx", "openvino": "openvino", "litert": "tflite"}[row["backend"]]
    suffix = {"onnx": ".onnx", "openvino": ".xml", "tflite": ".tflite"}[target]
    return FILES / row["model"] / f"edgeseg_{target}_{row['precision']}{suffix}"


def profile(path: Path, backend: str, precision: str, runs: int) -> dict:
    import int8_profile

    if backend == "onnxruntime":
        return int8_profile.profile_onnx(path, runs, nodes=True)
    if backend == "openvino":  # at the precision the limits row ran at: the bf16 file's, or what the runtime picks
        import edgeseg.runtime as rt

        picked = precision if precision in ("fp32", "bf16") else rt.load(path, threads=1).precision  # int8+bf16
        return int8_profile.profile_openvino(path, runs, "bf16" if "bf16" in picked else "f32")
    return int8_profile.profile_tflite(path, runs)


def render(report: dict) -> list[str]:
    from edgeseg.validate.environment import describe

    lines = [
        "# Ceilings: what each edgeseg file of limits.md could reach with its backend's kernels", "",
        f"{describe(report['environment'], ('onnxruntime', 'openvino', 'ai-edge-litert'))}; 1 thread; "
        f"{report['runs']} profiled calls per file; the files and peaks of limits.md (random weights, 512x512). "
        "dense = convolutions with one group, Gemm/FullyConnected, MatMul; rest = everything else "
        "(depthwise convolutions, resizes, elementwise, normalization, softmax, layout, (de)quantization, "
        "OpenVINO's fused attention Subgraph); the dense MACs leave out grouped convolutions and attention's "
        "activation x activation matmuls. "
        "Ceiling = % of peak if the dense ops ran at the peak and the rest took its measured time: the "
        "most the file can reach with these kernels for the rest (script docstring).", "",
        "| model | backend | precision | wall ms | dense ms | rest ms | rest share | dense ops' rate (% of peak) "
        "| achieved in this run (% of peak) | ceiling (% of peak) | goal | largest rest ops (ms) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in report["rows"]:
        goal = GOALS[r["peak"]]
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['precision']} | {r['wall_ms']:.1f} | {r['dense_ms']:.1f} | "
            f"{r['rest_ms']:.1f} | {100 * r['rest_ms'] / (r['dense_ms'] + r['rest_ms']):.0f}% | "
            f"{r['dense_rate_percent']:.0f}% ({r['peak']}) | {r['achieved_percent']:.0f}% | "
            f"{r['ceiling_percent']:.0f}% | {goal}%: {'reachable' if r['ceiling_percent'] >= goal else 'out of reach'} | "
            + "; ".join(f"{op} {ms:.1f}" for op, ms in list(r["rest_by_op"].items())[:4]) + " |")
    lines += ["", *report.get("findings", []), "",
              "Reproduce: `OMP_NUM_THREADS=1 nice -n 10 python benchmarks/limits.py --files runs/limits` (the "
              "files), then `OMP_NUM_THREADS=1 nice -n 10 python benchmarks/ceiling.py --runs 10` and "
              "`python benchmarks/limits.py --report-only`.", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--models", nargs="*", help="default: every model of limits.json")
    parser.add_argument("--backends", nargs="*", help="default: every backend (onnxruntime, openvino, litert)")
    parser.add_argument("--findings", help="a JSON list of lines stating what the rows show (kept in the report)")
    parser.add_argument("--verbose", action="store_true", help="show the backends' own logs")
    args = parser.parse_args()

    from edgeseg.fileio import write_results
    from edgeseg.quiet import native_output_captured, quiet_third_party
    from edgeseg.validate.environment import environment

    quiet_third_party(args.verbose)

    limits = json.loads((RESULTS / "limits.json").read_text())
    peaks, size = limits["peaks"], tuple(limits["input_size"])
    previous = RESULTS / "ceiling.json"
    report = json.loads(previous.read_text()) if previous.exists() else {"rows": []}
    wanted = [r for r in limits["rows"] if r["recipe"] == "edgeseg" and (not args.models or r["model"] in args.models)
              and (not args.backends or r["backend"] in args.backends)]
    not_dense = {name: non_dense_gmacs(name, size) for name in {r["model"] for r in wanted}}
    rows = []
    for r in wanted:
        path = file_of(r)
        if not path.exists():
            print(f"{path} is missing: run `benchmarks/limits.py --files runs/limits` first", file=sys.stderr)
            continue
        with native_output_captured():
            measured = profile(path, r["backend"], r["precision"], args.runs)
        dense_ms, rest = split(r["backend"], measured)
        rest_ms = sum(rest.values())
        peak = peaks[r["peak"]]
        dense_gmacs = r["gmacs"] - not_dense[r["model"]]
        # A backend whose dense ops beat the measured peak (a depressed peak measurement, or kernels
        # faster than the microbenchmark's library) sets the peak for its own ceiling: an upper bound still.
        fastest = max(peak, dense_gmacs / (dense_ms / 1000))
        ceiling = (r["gmacs"] / peak) / (dense_gmacs / fastest + rest_ms / 1000)
        rows.append({"model": r["model"], "backend": r["backend"], "precision": r["precision"], "peak": r["peak"],
                     "file": str(path.relative_to(ROOT)), "wall_ms": measured["wall_ms"], "dense_ms": dense_ms,
                     "rest_ms": rest_ms, "gmacs": r["gmacs"], "dense_gmacs": dense_gmacs,
                     "dense_rate_percent": 100 * dense_gmacs / (dense_ms / 1000) / peak,
                     "achieved_percent": 100 * r["gmacs"] / (measured["wall_ms"] / 1000) / peak,
                     "limits_percent": r["percent_of_peak"], "ceiling_percent": 100 * ceiling,
                     "rest_by_op": dict(list(rest.items())[:TOP_OPS])})
        print(f"{r['model']} {r['backend']} {r['precision']}: dense {dense_ms:.1f} ms, rest {rest_ms:.1f} ms, "
              f"ceiling {100 * ceiling:.0f}% of the {r['peak']} peak", flush=True)
    done = {(r["model"], r["backend"], r["precision"]) for r in rows}
    report["rows"] = [r for r in report["rows"] if (r["model"], r["backend"], r["precision"]) not in done] + rows
    if rows:  # a findings-only call keeps the header of the run that measured the rows
        report.update(runs=args.runs, environment=environment(threads=1), peaks=peaks)
    if args.findings:
        report["findings"] = json.loads(args.findings)
    write_results(RESULTS, "ceiling", report, render(report), echo=False)
    print(f"wrote {RESULTS / 'ceiling.md'}")


if __name__ == "__main__":
    main()
