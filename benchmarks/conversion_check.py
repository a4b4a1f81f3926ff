"""What the conversion check costs now that it runs the new file through ``edgeseg.runtime``
(``load`` with its file and checksum checks, the Preprocessor, the backend; issue 13), beside the
raw library loaders the converters used before (an ONNX Runtime session, a LiteRT signature runner,
an OpenVINO compiled model at f32; one thread each), on the same files and the same four images.

    python benchmarks/conversion_check.py [--rounds 5]

Both columns include the PyTorch reference on the images; "before" leaves out the converters'
separate metadata read of the file (a second parse), so it flatters the old path a little.
Writes ``benchmarks/results/conversion_check.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = ("onnx", "tflite", "openvino")  # the targets that run here (CoreML: macOS only)


def raw_runner(target: str, files: tuple[Path, ...], graph):
    """The file on its library as the converters' removed ``load`` functions opened it."""
    names = list(graph.output_names)
    if target == "onnx":
        import onnxruntime as ort

        settings = ort.SessionOptions()
        settings.intra_op_num_threads = 1
        session = ort.InferenceSession(str(files[0]), settings, providers=["CPUExecutionProvider"])
        return lambda x: session.run(names, {graph.input_name: x})
    if target == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=str(files[0]), num_threads=1).get_signature_runner()
        return lambda x: [runner(**{graph.input_name: x})[n] for n in names]
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(files[0]), str(files[1])), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    request = compiled.create_infer_request()
    ports = [compiled.output(n) for n in names]
    return lambda x: [np.array(request.infer({graph.input_name: x})[p]) for p in ports]


def main() -> None:
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from convert_helpers import TinySegModel

    from edgeseg.converters import TARGETS as TABLE
    from edgeseg.converters import convert
    from edgeseg.converters.options import ExportOptions
    from edgeseg.converters.verify import graph_input, opened_with_runtime, sample_images, verify_file
    from edgeseg.converters.wrapper import build_graphs
    from edgeseg.fileio import write_json_atomic, write_text_atomic
    from edgeseg.validate.environment import describe, environment

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TinySegModel()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for target in TARGETS:
            spec = TABLE[target]
            converted = convert(model, target, out=Path(folder) / f"m{spec.suffix}").files[0]
            files = (converted.path, *converted.companions)
            options = ExportOptions(target, "fp32", None, spec.default_layout, spec.default_preprocess)
            graph = build_graphs(model, options, spec)[0]
            graph.metadata = converted.metadata  # with the checksum the file records
            images = sample_images(*graph.metadata.input_size)
            before, now = [], []
            for _ in range(args.rounds):  # interleaved, so machine load hits both alike
                start = time.perf_counter()
                run = raw_runner(target, files, graph)
                with torch.no_grad():
                    [graph.module(torch.from_numpy(graph_input(i, graph.metadata))) for i in images]
                [run(graph_input(i, graph.metadata)) for i in images]
                before.append(time.perf_counter() - start)
                start = time.perf_counter()
                with opened_with_runtime(files, spec, converted.path.name) as session:
                    report = verify_file(session, graph.module, graph.metadata, graph.output_names,
                                         target=target, metadata_read=session.metadata)
                now.append(time.perf_counter() - start)
                assert report.passed, report.summary()
            rows.append({"target": target, "before_ms": round(1000 * float(np.median(before)), 1),
                         "now_ms": round(1000 * float(np.median(now)), 1)})
            print(rows[-1], file=sys.stderr)
    env = environment(threads=1)
    write_json_atomic(RESULTS / "conversion_check.json", {"rounds": args.rounds, "environment": env, "rows": rows})
    lines = [
        "# Conversion check: edgeseg.runtime vs the raw library loaders",
        "",
        f"Tiny 5-class model, 32x32, 4 images, medians of {args.rounds} interleaved rounds; {describe(env)}.",
        "",
        "| target | before: raw loader (ms) | now: edgeseg.runtime (ms) | now / before |",
        "|---|---|---|---|",
        *(f"| {r['target']} | {r['before_ms']} | {r['now_ms']} | {r['now_ms'] / r['before_ms']:.2f} |" for r in rows),
        "",
    ]
    write_text_atomic(RESULTS / "conversion_check.md", "\n".join(lines))


if __name__ == "__main__":
    main()
