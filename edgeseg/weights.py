"""Raw weight files: the tensors of a ``.safetensors`` file or of a PyTorch state dict.

Below both the model zoo and :mod:`edgeseg.checkpoint`: the models read foreign weights through
it (``edgeseg import``, Hugging Face SegFormer), and checkpoints are built from the models, so
neither needs the other. Loading never unpickles: safetensors is read as tensors only, and a
``.pt``/``.pth``/``.bin``/``.ckpt`` state dict with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.errors import CheckpointError

# The safetensors header key under which an edgeseg checkpoint keeps its build header (the model
# name and build config); see edgeseg.checkpoint.
CHECKPOINT_KEY = "edgeseg.checkpoint"
# Suffixes of plain PyTorch state dicts (read with weights_only=True).
TORCH_STATE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def existing_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, refused with a typed error when it is missing or a folder."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; give the .safetensors file in it")
    return path


def safetensors_header(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """The string metadata in a safetensors file's header ({} when it has none); None when the
    file cannot be read as safetensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # safetensors raises several types for corrupt files
        return None


def read_state_dict(path: str | os.PathLike[str], *, map_location: str = "cpu") -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a ``.pt``/``.pth``/``.bin`` state dict, never unpickled."""
    path = existing_file(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=map_location)
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    if path.suffix in TORCH_STATE_SUFFIXES:
        try:
            state: Any = torch.load(path, map_location=map_location, weights_only=True)
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
