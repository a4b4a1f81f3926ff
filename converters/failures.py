"""Turn a backend's conversion failure into an error that names the op, the layer and a way out.

Backends name the operator they refused in their own words (``aten::linalg_inv``,
``aten.linalg_inv.default``, ``linalg_inv``). We export the graph with torch.export, look for
each operator of the graph in the backend's message, and map the nodes that call it back to the
``nn.Module`` path through the node meta ``nn_module_stack``.
"""

from __future__ import annotations

import re

import torch

from edgeseg.converters.errors import ConversionError, UnsupportedOpError
from edgeseg.runtime.formats import TableView, targets

# Per target, what to try instead when it refuses an operator (each row's way_out).
WAYS_OUT = TableView(lambda: {name: f.way_out for name, f in targets().items()})


# Attribute paths of the export wrappers (wrapper.py), removed so paths name the model's layers.
_WRAPPER_PREFIXES = ("net.heads.", "net.")


def graph_ops(module: torch.nn.Module, sample: torch.Tensor) -> dict[str, list[str]]:
    """Every operator of the exported graph, before and after the core ATen decompositions
    (backends see either), -> the module paths of the layers that call it."""
    program = torch.export.export(module, (sample,), strict=False)
    ops: dict[str, list[str]] = {}
    for graph in (program.graph, program.run_decompositions().graph):
        for node in graph.nodes:
            if node.op != "call_function":
                continue
            paths = ops.setdefault(str(node.target), [])
            if _layer_path(node) not in paths:
                paths.append(_layer_path(node))
    return ops


def _layer_path(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "<top level>"
    # The innermost entry is the layer that made the call; its first item is the module path.
    path = list(stack.values())[-1][0]
    for prefix in _WRAPPER_PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def _base(op: str) -> str:
    """``aten.linalg_inv.default`` -> ``linalg_inv``."""
    return op.split(".")[1] if op.startswith("aten.") else op.split(".")[0]


def _mentions(message: str, op: str) -> bool:
    """Does a backend message name ``op`` (``aten.linalg_inv.default``) in any usual spelling?"""
    base = _base(op)
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(base)}(?![A-Za-z0-9_])", message) is not None


def explain_failure(exc: Exception, graph, target: str) -> ConversionError:
    """The error to raise for a backend failure ``exc`` while converting ``graph`` to ``target``."""
    message = f"{type(exc).__name__}: {exc}"
    try:
        ops = graph_ops(graph.module, graph.sample)
    except Exception as export_exc:  # torch.export itself fails: that is the op to report
        message = f"{message}\n(torch.export: {export_exc})"
        ops = {}
    # torch.export's own checks (``_assert_tensor_metadata`` after a dtype cast, ``_assert_scalar``)
    # are dropped before any backend sees the graph; a message that quotes the graph is not about them.
    named = [op for op in ops if _mentions(message, op) and not op.startswith("<")
             and not _base(op).startswith("_assert")]
    way_out = WAYS_OUT.get(target, "try another target")
    if named:
        # Messages also name common ops in passing (``%add``); the most specific name is the
        # culprit (``linalg_inv_ex`` over ``add``).
        op = max(named, key=lambda o: len(_base(o)))
        layers = tuple(ops[op])
        return UnsupportedOpError(
            f"{target} cannot convert operator {op} used by layer(s) {', '.join(layers)} of "
            f"{graph.metadata.model}; {way_out}. No file was written. Backend said: {_short(message)}",
            target=target,
            op=op,
            layers=layers,
        )
    return ConversionError(
        f"{target} conversion of {graph.metadata.model} failed; {way_out}. No file was written. "
        f"Backend said: {_short(message)}"
    )


def _short(message: str, limit: int = 1500) -> str:
    message = re.sub(r"\x1b\[[0-9;]*m", "", message).strip()  # terminal colour codes
    return message if len(message) <= limit else message[:limit] + " ..."
