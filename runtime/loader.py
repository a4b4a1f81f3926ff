"""``load``: pick the backend from the file (one suffix -> backend table), read the metadata,
and check the file is what its name says before any native library parses it."""

from __future__ import annotations

import importlib
import os
import struct
from pathlib import Path

from edgeseg import integrity
from edgeseg.errors import ConfigError as MetadataConfigError
from edgeseg.metadata import ModelMetadata
from edgeseg.runtime.backend import Backend
from edgeseg.runtime.errors import (
    ConfigError,
    ModelFileError,
    ModelFileNotFoundError,
    UnsupportedModelError,
)
from edgeseg.runtime.foreign import apply_overrides, check_overrides, foreign_metadata
from edgeseg.runtime.session import SegmentationSession

# Backend name -> "module:class"; modules are imported only when a file needs them.
BACKENDS: dict[str, str] = {
    "onnxruntime": "edgeseg.runtime.onnx:OnnxBackend",
    "litert": "edgeseg.runtime.tflite:TfliteBackend",
    "openvino": "edgeseg.runtime.openvino:OpenVinoBackend",
    "coreml": "edgeseg.runtime.coreml:CoremlBackend",
    "torch": "edgeseg.runtime.torch_ref:TorchBackend",
}
# File suffix -> backend name: the one place the runtime decides how to run a file.
SUFFIX_BACKENDS: dict[str, str] = {
    ".onnx": "onnxruntime",
    ".tflite": "litert",
    ".xml": "openvino",
    ".mlpackage": "coreml",
    ".mlmodel": "coreml",
    ".safetensors": "torch",
}
# Other names people use for a backend.
BACKEND_ALIASES = {"onnx": "onnxruntime", "ort": "onnxruntime", "tflite": "litert", "pytorch": "torch"}


def load(
    path: str | os.PathLike[str],
    backend: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    device: str | None = None,
    metadata: dict | None = None,
) -> SegmentationSession:
    """Open a converted model file (or an edgeseg checkpoint, the PyTorch reference).

    ``backend``: force a backend (``onnxruntime``, ``litert``, ``openvino``, ``coreml``,
    ``torch``) instead of the one the suffix names. ``threads``: CPU threads the backend may use.
    ``precision``: OpenVINO inference precision (``fp32``/``fp16``/``bf16``; by default every
    file computes at fp32, as the converter verified it); other backends run the file as stored
    and refuse it. ``device``: where the graph runs (see :mod:`edgeseg.runtime.devices`):
    ``None``/``"cpu"`` the CPU, ``"auto"`` the best accelerator available, or one by name
    (``"cuda"``, ``"tensorrt"``, ``"qnn"`` ONNX Runtime providers; ``"gpu"``, ``"npu"`` OpenVINO
    devices; ``"gpu"``, ``"delegate:/path/lib.so"`` LiteRT delegates). ``seg.device`` says what
    actually runs it. ``metadata``: ModelMetadata fields by name that replace what the file says
    (``{"classes": (...), "mean": (...), "std": (...)}``), e.g. for a file edgeseg did not write.
    """
    path = Path(path)
    overrides = check_overrides(metadata)
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"threads={threads!r} must be a positive integer, or None for the default")
    name = _backend_name(path, backend)
    _check_file(path, name)
    backend_class = _backend_class(name)
    checksum = _verify_checksum(path, backend_class)
    if device is not None:
        backend_obj = backend_class(path, threads=threads, precision=precision, device=device)
    else:  # backends from elsewhere (tests, plug-ins) may not take device=
        backend_obj = backend_class(path, threads=threads, precision=precision)
    metadata = read_metadata(backend_obj, overrides)
    if integrity.stamped(metadata.checksum) and metadata.checksum != checksum:
        raise ModelFileError(
            f"{path}: its metadata records a checksum, but the file's bytes hold no readable copy "
            "of it; the file was damaged after conversion or edited: copy or convert it again"
        )
    return SegmentationSession(backend_obj, metadata)


def read_metadata(backend: Backend, overrides: dict | None = None) -> ModelMetadata:
    """The file's edgeseg metadata (with ``overrides`` applied); for a file without it, what its
    standard metadata declares and the graph shows, with a warning naming every default assumed
    (see :mod:`edgeseg.runtime.foreign`)."""
    overrides = check_overrides(overrides)
    text = backend.metadata_json()
    if text is None:
        return foreign_metadata(backend, overrides)
    try:
        metadata = ModelMetadata.from_json(text)
    except (MetadataConfigError, TypeError, KeyError, ValueError, AttributeError) as exc:
        # from_dict on damaged JSON can fail on any field
        raise ModelFileError(
            f"{backend.path}: its edgeseg metadata is invalid ({exc}); convert the model again"
        ) from exc
    return apply_overrides(metadata, overrides, backend.path, backend)


def _backend_name(path: Path, backend: str | None) -> str:
    if backend is not None:
        name = BACKEND_ALIASES.get(backend, backend)
        if name not in BACKENDS:
            raise ConfigError(f"backend {backend!r} is not one of {sorted(BACKENDS)}")
        return name
    suffix = path.suffix.lower()
    if suffix not in SUFFIX_BACKENDS:
        looks = _sniff(path) if path.is_file() else None
        hint = f" Its content looks like {_article(looks)} file: rename it to {_SUFFIX_OF[looks]}." if looks else ""
        raise UnsupportedModelError(
            f"{path}: no backend reads {suffix or 'files without a suffix'!r} files; known suffixes "
            f"are {sorted(SUFFIX_BACKENDS)}.{hint}"
        )
    return SUFFIX_BACKENDS[suffix]


def _backend_class(name: str) -> type[Backend]:
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


# --- what a file's bytes say it is -----------------------------------------------------------
_SUFFIX_OF = {"TFLite": ".tflite", "OpenVINO IR": ".xml", "safetensors": ".safetensors"}
_FORMAT_OF_BACKEND = {"litert": "TFLite", "openvino": "OpenVINO IR", "torch": "safetensors"}


def _sniff(path: Path) -> str | None:
    """The format a file's first bytes identify with certainty, or None (ONNX and CoreML
    protobufs have no magic number)."""
    with path.open("rb") as f:
        head = f.read(16)
    if head[4:8] == b"TFL3":
        return "TFLite"
    if head.lstrip().startswith((b"<?xml", b"<net")):
        return "OpenVINO IR"
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000:
        return "safetensors"
    return None


def _verify_checksum(path: Path, backend: type[Backend]) -> str | None:
    """Check a converted file against the checksum it records (edgeseg.integrity), before any
    native library parses it. Returns the checksum, or None where the file records none."""
    if not backend.checksummed:
        return None
    companions = [path.with_suffix(s) for s in backend.companions]
    if not all(c.is_file() for c in companions):
        return None  # the backend names the missing file
    try:
        return integrity.verify(path.read_bytes(), companions)
    except integrity.ChecksumError as exc:
        files = " or ".join(p.name for p in [path, *companions])
        raise ModelFileError(
            f"{path}: {exc}. {files} changed after conversion (an interrupted copy, a storage "
            "fault, an edit): the weights cannot be trusted. Copy the file again from the "
            "original, or convert the model again"
        ) from exc


# Formats by backend, for messages about files whose bytes have no magic number to check.
_FORMAT_NAMES = {"onnxruntime": "ONNX", "coreml": "CoreML"}


def _article(name: str) -> str:
    """``"an ONNX"``, ``"a TFLite"``: the article a format or backend name is read with."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _check_file(path: Path, backend: str) -> None:
    if not path.exists():
        raise ModelFileNotFoundError(f"model file {path} does not exist")
    if backend == "coreml":
        return  # .mlpackage is a directory; CoreML checks its own files
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory; give the model file inside it")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes): the copy or conversion failed; redo it")
    looks = _sniff(path)
    expected = _FORMAT_OF_BACKEND.get(backend)
    if looks is not None and looks != expected:
        raise ModelFileError(
            f"{path} is named like {_article(expected or _FORMAT_NAMES.get(backend, backend))} file but its content is {_article(looks)} file; "
            f"it was renamed: give it the suffix {_SUFFIX_OF[looks]}"
        )
    if expected is not None and looks is None:
        raise ModelFileError(
            f"{path} does not start like {_article(expected)} file; it is truncated, corrupted or another "
            "format renamed: convert or copy it again"
        )
