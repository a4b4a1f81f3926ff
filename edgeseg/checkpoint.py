"""Checkpoints: one ``.safetensors`` file holding the weights, with the model's name, build
config and :class:`~edgeseg.metadata.ModelMetadata` as JSON in the safetensors header.

Loading never unpickles: safetensors is read as tensors only, and a PyTorch ``.pt``/``.pth``
state dict (for example one saved by torchvision) is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.errors import CheckpointError
from edgeseg.fileio import atomic_output
from edgeseg.metadata import METADATA_KEY, ModelMetadata

CHECKPOINT_KEY = "edgeseg.checkpoint"
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

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({exc}); it may be truncated or corrupted"
        ) from exc
    if CHECKPOINT_KEY not in meta or METADATA_KEY not in meta:
        raise CheckpointError(
            f"{path} has no edgeseg header: it holds bare weights. Build the model with "
            "create_model(...) and call load_weights(model, path) instead"
        )
    return json.loads(meta[CHECKPOINT_KEY]), ModelMetadata.from_json(meta[METADATA_KEY])


def load_model(path: str | os.PathLike[str], *, map_location: str = "cpu") -> nn.Module:
    """Rebuild the model a checkpoint was saved from and load its weights (in eval mode)."""
    from edgeseg.models import create_model

    header, metadata = read_checkpoint_header(path)
    config = dict(header.get("build_config", {}))
    model = create_model(header["model"], **config)
    load_weights(model, path, map_location=map_location)
    model.metadata = metadata
    model.build_config = config
    return model.eval()


def read_state_dict(path: str | os.PathLike[str], *, map_location: str = "cpu") -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a ``.pt``/``.pth``/``.bin`` state dict, never unpickled."""
    path = _existing(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=map_location)
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    if path.suffix in {".pt", ".pth", ".bin", ".ckpt"}:
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:
            raise CheckpointError(
                f"{path} could not be read as a plain state dict with weights_only=True ({exc}). "
                "edgeseg never unpickles arbitrary objects: save the weights with "
                "torch.save(model.state_dict(), path) or as safetensors"
            ) from exc
        for key in ("state_dict", "model", "model_state"):  # common training wrappers
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path} does not hold a dict of tensors (a state dict)")
        return state
    raise CheckpointError(
        f"{path}: unknown weights format {path.suffix!r}; use .safetensors, .pt, .pth or .bin"
    )


def load_weights(model: nn.Module, path: str | os.PathLike[str], *, map_location: str = "cpu", strict: bool = True) -> None:
    """Load a state dict into ``model`` with a report of missing, unexpected and mis-shaped keys."""
    state = read_state_dict(path, map_location=map_location)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if mis_shaped or (strict and (missing or unexpected)):
        def head(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {head(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {head(unexpected)}")
        if mis_shaped:
            parts.append(f"shape mismatches: {head(mis_shaped)}")
        raise CheckpointError(
            f"{path} does not match {type(model).__name__}: " + "; ".join(parts)
            + ". Check the model name, num_classes and width options the weights were trained with"
        )
    model.load_state_dict(state, strict=strict)


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; give the .safetensors file in it")
    return path
