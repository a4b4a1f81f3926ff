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


def reference_model(graph, keep_float: tuple[str, ...] = ()) -> nn.Module:
    """The float network inside an export graph: the layer namespace of ``--keep-float`` and the
    model the gate compares with (:func:`float_source` gives the checkpoint-able whole).

    A multi-domain model exports one file per domain (``--domain``: a single-head view of the
    shared weights) or one file with every head; the latter takes no ``--keep-float``, since its
    layer names would be ambiguous across heads.
    """
    net = graph.module.net
    if not hasattr(net, "metadata"):  # every head of a multi-domain model, in domain order
        if keep_float:
            raise ConfigError(
                "--keep-float on the file with every head of a multi-domain model is not supported "
                "(a layer may belong to one head or to all); convert one domain at a time with "
                "--domain NAME (or --domain all) and --keep-float"
            )
        return net.heads.model
    return net


def float_source(net: nn.Module) -> nn.Module:
    """The model to save as the gate's float reference: a one-domain view's whole multi-domain model."""
    return getattr(net, "parent", net)
