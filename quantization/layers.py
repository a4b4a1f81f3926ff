"""Layer names for ``--keep-float``: the model's module paths (``backbone.12``, ``decoder``), as the
sensitivity report prints them, checked against the model and mapped into the export graph."""

from __future__ import annotations

import difflib

from torch import nn

from edgeseg.errors import ConfigError

# ExportWrapper holds the network as ``net``: a model path ``backbone.3`` is ``net.backbone.3`` in the graph.
GRAPH_PREFIX = "net."


def check_layers(model: nn.Module, layers: tuple[str, ...]) -> None:
    """Raise a ConfigError naming every ``--keep-float`` layer the model does not have."""
    known = [name for name, _ in model.named_modules() if name]
    for layer in layers:
        if layer not in known:
            close = difflib.get_close_matches(layer, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; run `edgeseg int8-report` for the names"
            raise ConfigError(f"--keep-float {layer!r} is not a layer of {type(model).__name__}{hint}")


def in_layers(path: str, layers: tuple[str, ...]) -> bool:
    """Is module path ``path`` (model-relative) one of ``layers`` or inside one?"""
    return any(path == layer or path.startswith(layer + ".") for layer in layers)


def graph_path(layer: str) -> str:
    return GRAPH_PREFIX + layer


def reference_model(graph) -> nn.Module:
    """The float network inside an export graph (the gate's reference and the layer namespace)."""
    net = graph.module.net
    if not hasattr(net, "metadata") or getattr(net, "metadata").domains:
        raise ConfigError(
            "int8 conversion takes a single-domain model; multi-domain models are not supported "
            "for int8 yet, neither as one file nor one domain at a time (--domain): export them "
            "in fp32 or fp16"
        )
    return net
