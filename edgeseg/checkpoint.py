"""Checkpoints: one ``.safetensors`` file holding the weights, with the model's name, build
config and :class:`~edgeseg.metadata.ModelMetadata` as JSON in the safetensors header.

Loading never unpickles: the tensors are read by :mod:`edgeseg.weights` (safetensors as tensors
only, a PyTorch ``.pt``/``.pth`` state dict with ``torch.load(weights_only=True)``), which the
models also use for foreign weights, so the models never import this module.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.errors import CheckpointError, ConfigError
from edgeseg.fileio import atomic_output
from edgeseg.metadata import MAX_CLASSES, MAX_NAME_LENGTH, METADATA_KEY, ModelMetadata, check_metadata_dict
from edgeseg.weights import CHECKPOINT_KEY, TORCH_STATE_SUFFIXES, existing_file, load_weights

FORMAT_VERSION = 1


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and everything needed to rebuild it, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint path {path} must end in .safetensors")
    header = {
        "format_version": FORMAT_VERSION,
        "model": model.metadata.model,
        "build_config": getattr(model, "build_config", {}),
        "extra": extra or {},
    }
    # safetensors refuses shared storage; clone so tied or sliced tensors save independently.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_output(path) as tmp:
        save_file(
            state,
            str(tmp),
            metadata={
                CHECKPOINT_KEY: json.dumps(header),
                METADATA_KEY: model.metadata.to_json(),
            },
        )
    return path


def read_checkpoint_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], ModelMetadata]:
    """The build header and metadata of a checkpoint, without reading its tensors."""
    from safetensors import safe_open

    if Path(path).is_dir() or Path(path).suffix in TORCH_STATE_SUFFIXES:
        how = (f"`edgeseg import {path}` (a Hugging Face SegFormer folder: config.json + model.safetensors)"
               if Path(path).is_dir() else f"`edgeseg import {path} --model NAME` (a torchvision-layout state dict)")
        raise CheckpointError(
            f"{path} is {'a folder' if Path(path).is_dir() else 'a plain PyTorch state dict'}, not an edgeseg "
            f"checkpoint. Make one first with {how}, then use the .safetensors it writes"
        )
    path = existing_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({exc}); it may be truncated or corrupted"
        ) from exc
    if CHECKPOINT_KEY not in meta or METADATA_KEY not in meta:
        how = (f"`edgeseg import {path.parent}` (a Hugging Face folder: config.json beside it; in Python "
               "edgeseg.models.hf_segformer.load_hf_segformer)" if (path.parent / "config.json").is_file()
               else f"`edgeseg import {path} --model NAME` (in Python: create_model(...) then load_weights)")
        raise CheckpointError(
            f"{path} has no edgeseg header: it holds bare weights. Make an edgeseg checkpoint of them with {how}"
        )
    header = _parse_header(path, meta[CHECKPOINT_KEY])
    try:
        metadata = ModelMetadata.from_json(meta[METADATA_KEY])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    return header, metadata


# Build options that count repeated blocks: each builds modules, so a file's word is bounded
# more tightly than other numbers (a depth of 10**6 would take minutes to build even on "meta").
_COUNT_OPTIONS = {"depths", "num_heads", "num_tokens", "num_adapters", "num_layers", "num_blocks"}
_MAX_COUNT = 64
_MAX_OPTION = 65536


def _parse_header(path: Path, text: str) -> dict[str, Any]:
    """The checkpoint's build header, every field checked before anything is built from it."""
    fix = "the checkpoint was edited or damaged: save it again from the model, or train it again"
    try:
        header = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{path}: its {CHECKPOINT_KEY!r} header is not valid JSON ({exc}); {fix}") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: its {CHECKPOINT_KEY!r} header is a {type(header).__name__}, not a JSON object; {fix}")
    version = header.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: header field 'format_version' is {version!r}, not a positive integer; {fix}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version} is newer than this edgeseg reads ({FORMAT_VERSION}); "
            "upgrade edgeseg (`pip install -U edgeseg`)"
        )
    if "model" not in header:
        raise CheckpointError(f"{path}: its header lacks the field 'model' (the architecture's name); {fix}")
    model = header["model"]
    if not isinstance(model, str) or not model or len(model) > MAX_NAME_LENGTH:
        raise CheckpointError(f"{path}: header field 'model' is {model!r}, not a model name; {fix}")
    config = header.setdefault("build_config", {})
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{path}: header field 'build_config' is a {type(config).__name__}, not an object of "
            f"build options; {fix}"
        )
    if not isinstance(header.setdefault("extra", {}), dict):
        raise CheckpointError(f"{path}: header field 'extra' is not an object; {fix}")
    for key, value in config.items():
        _check_option(path, f"build_config.{key}", key, value, fix)
    return header


def _check_option(path: Path, field: str, key: str, value: Any, fix: str, depth: int = 0) -> None:
    """A build option from a file: JSON scalars and containers of bounded size and depth."""
    def refuse(problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: header field {field!r} {problem}; {fix}")

    if key == "metadata":
        try:
            check_metadata_dict(value)
        except ConfigError as exc:
            raise refuse(f"is not valid metadata ({exc})") from exc
        return
    if depth > 4:
        raise refuse("nests too deep")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        low = 1 if key == "num_classes" else 0
        high = MAX_CLASSES if key == "num_classes" else _MAX_COUNT if key in _COUNT_OPTIONS else _MAX_OPTION
        if not low <= value <= high:
            raise refuse(f"is {value}, outside {low}..{high}")
        return
    if isinstance(value, float):
        if not math.isfinite(value) or not 0 <= value <= _MAX_OPTION:
            raise refuse(f"is {value}, not a finite number in 0..{_MAX_OPTION}")
        return
    if isinstance(value, str):
        if len(value) > MAX_NAME_LENGTH:
            raise refuse(f"is a string of {len(value)} characters (at most {MAX_NAME_LENGTH})")
        return
    if isinstance(value, list):
        if len(value) > MAX_CLASSES:
            raise refuse(f"is a list of {len(value)} items")
        for i, item in enumerate(value):
            _check_option(path, f"{field}[{i}]", key, item, fix, depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            _check_option(path, f"{field}.{k}", k, item, fix, depth + 1)
        return
    raise refuse(f"is a {type(value).__name__}")


def load_model(path: str | os.PathLike[str], *, map_location: str = "cpu") -> nn.Module:
    """Rebuild the model a checkpoint was saved from and load its weights (in eval mode).

    The model is first built on the "meta" device (no memory) and its tensor shapes compared with
    the file's, so a header that asks for a huge model is refused before anything is allocated."""
    header, metadata = read_checkpoint_header(path)
    config = dict(header["build_config"])
    built = _check_shapes(Path(path), header["model"], config).metadata
    counts = [len(d.classes) for d in metadata.domains] or [metadata.num_classes]
    if counts != ([len(d.classes) for d in built.domains] or [built.num_classes]):
        raise CheckpointError(
            f"{path}: its metadata names {counts} classes but the weights predict "
            f"{[len(d.classes) for d in built.domains] or [built.num_classes]}; the header was "
            "edited or belongs to other weights: save the checkpoint again"
        )
    model = _build(Path(path), header["model"], config)
    load_weights(model, path, map_location=map_location)
    model.metadata = metadata
    model.build_config = config
    return model.eval()


def _build(path: Path, name: str, config: dict[str, Any], device: str | None = None) -> nn.Module:
    """``create_model(name, **config)`` from a file's header; any failure is the file's."""
    from edgeseg.models import create_model

    try:
        if device is None:
            return create_model(name, **config)
        with torch.device(device):
            return create_model(name, **config)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its header cannot build a model ({exc})") from exc
    except Exception as exc:  # a builder given odd values can fail in many ways
        raise CheckpointError(
            f"{path}: its header's build_config cannot build {name!r} ({type(exc).__name__}: {exc}); "
            "the checkpoint was edited or damaged: save it again"
        ) from exc


def _check_shapes(path: Path, name: str, config: dict[str, Any]) -> nn.Module:
    """Refuse a header whose model (built on "meta", no memory) does not match the file's tensors."""
    from safetensors import safe_open

    model = _build(path, name, config, device="meta")
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if own != stored:
        differ = sorted(k for k in set(own) | set(stored) if own.get(k) != stored.get(k))
        raise CheckpointError(
            f"{path}: the model its header describes ({name}) does not match the tensors "
            f"stored in it ({len(differ)} differ, e.g. {differ[:3]}); the header was edited or "
            "belongs to other weights: save the checkpoint again"
        )
    return model
