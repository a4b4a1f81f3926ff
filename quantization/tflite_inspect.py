"""What LiteRT's XNNPACK delegate makes of a ``.tflite``: partitions, ops it leaves to TFLite's own
kernels, and QUANTIZE/DEQUANTIZE ops that are not at the file's boundary.

An int8 file is fast on XNNPACK only when the delegate takes the whole graph as one partition: an
op it has no int8 kernel for (HARD_SWISH, for one) runs in TFLite's reference-style kernel between
two partitions, and a float island costs a DEQUANTIZE/QUANTIZE pair. Used by the tests and by
``benchmarks/int8.py`` (reads the interpreter's node list, ``_get_ops_details``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE", "CAST")


@dataclass
class DelegateReport:
    partitions: int  # XNNPACK delegate nodes after delegation
    ops: Counter  # op name -> count in the file
    outside: Counter  # ops left to TFLite's own kernels
    inner_qdq: list[str] = field(default_factory=list)  # QUANTIZE/DEQUANTIZE away from the boundary

    def as_dict(self) -> dict:
        return {"partitions": self.partitions, "ops": dict(self.ops), "outside": dict(self.outside),
                "inner_qdq": list(self.inner_qdq)}


def delegate_report(path: str | Path) -> DelegateReport:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()  # applies the default XNNPACK delegate
    nodes = interpreter._get_ops_details()
    ops = [n for n in nodes if n["op_name"] != "DELEGATE"]
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    producer = {int(t): op for op in ops for t in op["outputs"]}
    delegated: set[int] = set()
    for node in delegates:  # walk back from each partition's outputs to its inputs
        inputs = {int(t) for t in node["inputs"]}
        stack = [producer[int(t)] for t in node["outputs"] if int(t) in producer]
        while stack:
            op = stack.pop()
            if op["index"] in delegated:
                continue
            delegated.add(op["index"])
            stack += [producer[int(t)] for t in op["inputs"] if int(t) in producer and int(t) not in inputs]
    graph_inputs = {int(d["index"]) for d in interpreter.get_input_details()}
    graph_outputs = {int(d["index"]) for d in interpreter.get_output_details()}
    # The boundary: the ops from a graph input through CAST/QUANTIZE, and a DEQUANTIZE/QUANTIZE
    # that writes a graph output.
    boundary, frontier = set(), set(graph_inputs)
    for op in ops:
        if op["op_name"] in BOUNDARY_OPS and {int(t) for t in op["inputs"]} & frontier:
            boundary.add(op["index"])
            frontier |= {int(t) for t in op["outputs"]}
        elif op["op_name"] in BOUNDARY_OPS and {int(t) for t in op["outputs"]} <= graph_outputs:
            boundary.add(op["index"])
    inner = [f"{op['op_name']} #{op['index']}" for op in ops
             if op["op_name"] in ("QUANTIZE", "DEQUANTIZE") and op["index"] not in boundary]
    return DelegateReport(
        partitions=len(delegates),
        ops=Counter(op["op_name"] for op in ops),
        outside=Counter(op["op_name"] for op in ops if op["index"] not in delegated),
        inner_qdq=inner,
    )
