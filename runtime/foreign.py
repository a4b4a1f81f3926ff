"""Metadata for files edgeseg did not write, and ``load(path, metadata={...})`` overrides.

A file without the ``edgeseg`` entry is described from three sources, first found wins per field:
the caller's override, the file's own standard metadata (TFLite Metadata, OpenVINO Model API
``model_info``: see each backend's ``declared_metadata``), then the graph and edgeseg's defaults.
The warning names every field that came from a default, with its value.

A graph whose segmentation output has one channel is a binary segmenter: foreground where the
output passes 0.5 when the graph ends in a sigmoid (a probability), 0 otherwise (a logit).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

from edgeseg.errors import ConfigError as MetadataConfigError
from edgeseg.metadata import IMAGENET_MEAN, IMAGENET_STD, ModelMetadata
from edgeseg.runtime.backend import Backend
from edgeseg.runtime.errors import MetadataError, MissingMetadataWarning, UnsupportedModelError

FIELDS = tuple(f.name for f in dataclasses.fields(ModelMetadata))
BINARY_CLASSES = ("background", "foreground")
# extra["binary_threshold"]: a single-channel output's foreground threshold (processing.py).
BINARY_THRESHOLD = "binary_threshold"


def check_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The override as a dict, refusing names that are not ModelMetadata fields."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise MetadataError(
            f"metadata={overrides!r} must be a dict of ModelMetadata fields, e.g. "
            "{'classes': ('background', 'person'), 'mean': (0.5, 0.5, 0.5)}"
        )
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise MetadataError(
            f"metadata override: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"ModelMetadata fields are {', '.join(FIELDS)}"
        )
    return dict(overrides)


def apply_overrides(metadata: ModelMetadata, overrides: dict[str, Any], path, backend: Backend | None = None) -> ModelMetadata:
    """``metadata`` with the override's fields replaced, validated as ModelMetadata validates
    (and, given the backend, the class count against the graph's output)."""
    if not overrides:
        return metadata
    if backend is not None and "classes" in overrides and not overrides.get("argmax", metadata.argmax):
        name, output = next(iter(backend.outputs.items()))
        layout = overrides.get("layout", metadata.layout)
        channels = output.shape[1 if layout == "nchw" else 3] if len(output.shape) == 4 else -1
        if channels > 0 and len(overrides["classes"]) != channels and not metadata.output_names:
            raise MetadataError(
                f"{path.name}: the override names {len(overrides['classes'])} classes but the graph output "
                f"{name!r} {output.shape} has {channels} class channels; give {channels} class names"
            )
    changes = dict(overrides)
    if "classes" in changes and "palette" not in changes and len(changes["classes"]) != metadata.num_classes:
        changes["palette"] = ()  # default colours for the new class count
    try:
        return metadata.replace(**changes)
    except (MetadataConfigError, TypeError, ValueError) as exc:
        raise MetadataError(
            f"{path.name}: metadata override {sorted(overrides)} is invalid: {exc}"
        ) from exc


def foreign_metadata(backend: Backend, overrides: dict[str, Any]) -> ModelMetadata:
    """The metadata of a file without an edgeseg entry, with a warning naming the defaults."""
    declared, source = backend.declared_metadata() or ({}, "")
    declared = dict(declared)
    fields: dict[str, Any] = {}
    origin: dict[str, str] = {}

    def take(name: str, default, note: str | None = None):
        if name in overrides:
            fields[name], origin[name] = overrides[name], "override"
        elif name in declared:
            fields[name], origin[name] = declared[name], "file"
        else:
            fields[name], origin[name] = default, note or "default"
        return fields[name]

    path = backend.path
    shape = tuple(backend.input.shape)
    if len(shape) != 4 or (shape[1] != 3 and shape[3] != 3):
        raise UnsupportedModelError(
            f"{path} has no edgeseg metadata and its input {shape} is not one RGB image "
            "(1, 3, H, W) or (1, H, W, 3); convert the model with edgeseg"
        )
    layout = take("layout", "nchw" if shape[1] == 3 else "nhwc", "graph")
    size = tuple(shape[2:4] if layout == "nchw" else shape[1:3])
    input_size = take("input_size", size if min(size) >= 1 else None, "graph")
    if input_size is None:
        raise UnsupportedModelError(
            f"{path} has no edgeseg metadata and a dynamic input size {shape}; the runtime cannot "
            "guess the size it was trained at. Give it: load(path, metadata={'input_size': (H, W)})"
        )
    if min(size) >= 1 and tuple(input_size) != size and origin["input_size"] == "file":
        raise MetadataError(
            f"{path}: {source} gives the image size {tuple(input_size)} (ImageProperties default_size) "
            f"but the graph input is {shape}; the metadata contradicts the graph. Fix the file's "
            f"metadata, or override it: load(path, metadata={{'input_size': {size}}})"
        )
    output_name, output = next(iter(backend.outputs.items()))
    argmax = take("argmax", len(output.shape) == 3 or (output.dtype.kind in "iu" and not output.quantized), "graph")
    channels = 256 if argmax else output.shape[1 if layout == "nchw" else 3]
    if channels < 1 and "classes" not in overrides and "classes" not in declared:
        raise UnsupportedModelError(
            f"{path} has no edgeseg metadata and its output {output.shape} has a dynamic class count; "
            "give the class names: load(path, metadata={'classes': (...)})"
        )
    binary = not argmax and channels == 1
    extra = dict(declared.get("extra", {}))
    if extra:
        origin["extra"] = "file"
    if binary:
        activation = backend.output_activation(output_name)
        threshold = 0.5 if activation == "sigmoid" else 0.0
        extra.setdefault(BINARY_THRESHOLD, threshold)
        default_classes = BINARY_CLASSES
    else:
        default_classes = tuple(f"class_{i}" for i in range(channels))
    classes = tuple(take("classes", default_classes))
    if binary and len(classes) == 1:  # labels that name only the foreground
        classes = fields["classes"] = ("background", classes[0])
    expected = 2 if binary else channels
    if not argmax and channels >= 1 and len(classes) != expected:
        where = "the override" if origin["classes"] == "override" else source
        raise MetadataError(
            f"{path}: {where} names {len(classes)} classes (labels {list(classes)[:6]}"
            f"{'...' if len(classes) > 6 else ''}) but the graph output {output_name!r} {output.shape} has "
            f"{channels} class channel{'s' if channels != 1 else ''}; give {expected} class names"
            + (" (a single-channel output is background/foreground)" if binary else "")
            + ": load(path, metadata={'classes': (...)})"
        )
    take("include_preprocess", backend.input.dtype.kind in "iu" and not backend.input.quantized, "graph")
    take("mean", IMAGENET_MEAN)
    take("std", IMAGENET_STD)
    take("resize", "stretch")
    take("model", "unknown")
    take("palette", ())
    for name in ("precision", "domain", "domains", "output_names", "checksum"):
        if name in overrides:
            fields[name], origin[name] = overrides[name], "override"
    fields["extra"] = {**extra, **overrides.get("extra", {})}
    try:
        metadata = ModelMetadata(**fields)
    except (MetadataConfigError, TypeError, ValueError) as exc:
        culprits = sorted(k for k in ("mean", "std", "classes", "palette", "resize", "layout", "input_size")
                          if origin.get(k) in ("override", "file"))
        raise MetadataError(
            f"{path}: the metadata from {source or 'the override'} is invalid ({exc}); fields given: "
            f"{culprits}. Override the bad one: load(path, metadata={{...}})"
        ) from exc
    _warn(path.name, metadata, origin, source, binary)
    return metadata


def _warn(name: str, metadata: ModelMetadata, origin: dict[str, str], source: str, binary: bool) -> None:
    h, w = metadata.input_size
    assumed = {
        "classes": f"{metadata.num_classes} classes named {metadata.classes[0]}..{metadata.classes[-1]}",
        "mean": f"mean {metadata.mean}",
        "std": f"std {metadata.std} (ImageNet, pixels in [0, 1])",
        "resize": f"resize {metadata.resize}",
        "palette": "default palette",
    }
    defaults = [text for field, text in assumed.items() if origin.get(field) == "default"]
    from_file = sorted(field for field, where in origin.items() if where == "file")
    given = sorted(field for field, where in origin.items() if where == "override")
    graph = (f"{h}x{w} {metadata.layout} input, normalization "
             f"{'inside the graph (uint8 pixels in)' if metadata.include_preprocess else 'in numpy'}, "
             f"{'argmax in graph' if metadata.argmax else 'logits out'}")
    if metadata.extra.get("channel_order") == "bgr":
        graph += ", the model takes BGR"
    if binary:
        graph += (f", one output channel: binary segmenter, foreground where it passes "
                  f"{metadata.extra[BINARY_THRESHOLD]} "
                  f"({'a sigmoid ends the graph' if metadata.extra[BINARY_THRESHOLD] == 0.5 else 'no sigmoid: logits'})")
    parts = [f"read off the graph: {graph}"]
    if from_file:
        parts.append(f"read from {source}: {', '.join(from_file)}")
    if given:
        parts.append(f"given by metadata=: {', '.join(given)}")
    if defaults:
        parts.append(f"assumed defaults: {'; '.join(defaults)}")
    warnings.warn(
        f"{name} carries no edgeseg metadata; " + ". ".join(parts)
        + ". Convert with edgeseg, or pass load(path, metadata={...}), to set what was assumed",
        MissingMetadataWarning,
        stacklevel=4,
    )
