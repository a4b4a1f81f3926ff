"""``load``: pick the backend from the file (one suffix -> backend table), read the metadata,
and check the file is what its name says before any native library parses it."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from edgeseg import integrity
from edgeseg.errors import ConfigError
from edgeseg.metadata import ModelMetadata
from edgeseg.runtime import formats
from edgeseg.runtime.backend import Backend
from edgeseg.runtime.errors import (
    ModelFileError,
    ModelFileNotFoundError,
    UnsupportedModelError,
)
from edgeseg.runtime.foreign import apply_overrides, check_overrides, foreign_metadata
from edgeseg.runtime.session import SegmentationSession

# Backend name -> "module:class", file suffix -> backend name, other names of a backend: read
# from the format table (edgeseg.runtime.formats) at each access, the one place formats are known.
BACKENDS = formats.TableView(lambda: {f.backend_name: f.backend for f in formats.FORMATS.values()})
SUFFIX_BACKENDS = formats.TableView(
    lambda: {s: f.backend_name for f in formats.FORMATS.values() for s in f.read_suffixes})
BACKEND_ALIASES = formats.TableView(
    lambda: {a: f.backend_name for f in formats.FORMATS.values() for a in f.aliases})


def load(
    path: str | os.PathLike[str],
    backend: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    device: str | None = None,
    metadata: dict | None = None,
    spinning: bool | None = None,
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
    ``precision=None`` (OpenVINO): the fastest precision the converter verified the file at and
    the device has (``seg.precision`` says which; fp32 for files without that record).
    ``spinning``: ONNX Runtime only, whether its intra-op threads spin-wait for work between calls
    (``session.intra_op.allow_spinning``); None = edgeseg's default, off (see
    :mod:`edgeseg.runtime.onnx`): spinning threads take the CPU from the caller's own work.
    """
    path = Path(path)
    overrides = check_overrides(metadata)
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"threads={threads!r} must be a positive integer, or None for the default")
    name = _backend_name(path, backend)
    fmt = formats.by_backend(name)
    _check_file(path, fmt)
    backend_class = _backend_class(name)
    checksum = _verify_checksum(path, fmt)
    if spinning is not None and not isinstance(spinning, bool):
        raise ConfigError(f"spinning={spinning!r} must be True, False or None (the default)")
    if spinning is not None and name != "onnxruntime":
        raise ConfigError(
            f"spinning={spinning!r} is an ONNX Runtime option (its thread pool's spin-wait); the "
            f"{name} backend has none: leave spinning out"
        )
    extra = {"spinning": spinning} if spinning is not None else {}
    if device is not None:
        backend_obj = backend_class(path, threads=threads, precision=precision, device=device, **extra)
    else:  # backends from elsewhere (tests, plug-ins) may not take device=
        backend_obj = backend_class(path, threads=threads, precision=precision, **extra)
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
    except (ConfigError, TypeError, KeyError, ValueError, AttributeError) as exc:
        # from_dict on damaged JSON can fail on any field
        raise ModelFileError(
            f"{backend.path}: its edgeseg metadata is invalid ({exc}); convert the model again"
        ) from exc
    return apply_overrides(metadata, overrides, backend.path, backend)


def _backend_name(path: Path, backend: str | None) -> str:
    if backend is not None:
        fmt = formats.by_backend(backend)
        if fmt is None:
            raise ConfigError(f"backend {backend!r} is not one of {sorted(BACKENDS)}")
        return fmt.backend_name
    suffix = path.suffix.lower()
    fmt = formats.by_suffix(suffix)
    if fmt is None:
        looks = _sniff(path) if path.is_file() else None
        hint = f" Its content looks like {_article(looks.title)} file: rename it to {looks.suffix}." if looks else ""
        raise UnsupportedModelError(
            f"{path}: no backend reads {suffix or 'files without a suffix'!r} files; known suffixes "
            f"are {sorted(SUFFIX_BACKENDS)}.{hint}"
        )
    return fmt.backend_name


def _backend_class(name: str) -> type[Backend]:
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def _sniff(path: Path) -> formats.Format | None:
    """The format a file's first bytes identify with certainty, or None (ONNX and CoreML
    protobufs have no magic number)."""
    with path.open("rb") as f:
        return formats.sniff(f.read(16))


def _verify_checksum(path: Path, fmt: formats.Format) -> str | None:
    """Check a converted file against the checksum it records (edgeseg.integrity), before any
    native library parses it. Returns the checksum, or None where the file records none."""
    if not fmt.checksummed:
        return None
    companions = [path.with_suffix(s) for s in fmt.companions]
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


def _article(name: str) -> str:
    """``"an ONNX"``, ``"a TFLite"``: the article a format or backend name is read with."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _check_file(path: Path, fmt: formats.Format) -> None:
    if not path.exists():
        raise ModelFileNotFoundError(f"model file {path} does not exist")
    if fmt.is_dir:
        return  # .mlpackage is a directory; CoreML checks its own files
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory; give the model file inside it")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes): the copy or conversion failed; redo it")
    looks = _sniff(path)
    if looks is not None and looks is not fmt:
        raise ModelFileError(
            f"{path} is named like {_article(fmt.title)} file but its content is {_article(looks.title)} file; "
            f"it was renamed: give it the suffix {looks.suffix}"
        )
    if fmt.magic is not None and looks is None:
        raise ModelFileError(
            f"{path} does not start like {_article(fmt.title)} file; it is truncated, corrupted or another "
            "format renamed: convert or copy it again"
        )
