"""Resumable training state in ONE safetensors file, never pickled.

``train_state.safetensors`` holds the model weights and every optimizer tensor (momentum, Adam
moments) and RNG state as tensors; the step, epoch, optimizer hyper-parameters, scaler state,
Python/NumPy RNG state and metric history go as JSON into the same file's header. One file means
one atomic rename: a kill can never leave weights from one step beside optimizer state from
another.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeseg.errors import CheckpointError
from edgeseg.fileio import atomic_output

STATE_KEY = "edgeseg.train_state"
STATE_VERSION = 1
_MODEL = "model."
_OPTIM = "optimizer."
_RNG_TORCH = "rng.torch"
_RNG_CUDA = "rng.cuda."
_RNG_NUMPY = "rng.numpy"


@dataclass
class TrainState:
    """Counters restored on resume (the tensors go straight back into model and optimizer)."""

    step: int  # optimizer steps done
    epoch: int  # epoch the next step belongs to
    history: list[dict[str, Any]]  # one row per evaluation (what metrics.csv holds)
    best_miou: float  # best mean-over-domains mIoU so far (selects best.safetensors)
    config: dict[str, Any]  # the TrainConfig the run was started with


def save_train_state(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler_state: dict[str, Any],
    state: TrainState,
) -> Path:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {
        _MODEL + k: v for k, v in model.state_dict().items()
    }
    opt = optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for param_id, slots in opt["state"].items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIM}{param_id}.{slot}"] = value
            else:
                plain_state.setdefault(str(param_id), {})[slot] = value
    tensors[_RNG_TORCH] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"{_RNG_CUDA}{i}"] = rng
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    tensors[_RNG_NUMPY] = torch.from_numpy(np.asarray(np_keys, dtype=np.int64))
    header = {
        "version": STATE_VERSION,
        "step": state.step,
        "epoch": state.epoch,
        "history": state.history,
        "best_miou": state.best_miou,
        "config": state.config,
        "optimizer_param_groups": opt["param_groups"],
        "optimizer_plain_state": plain_state,
        "scaler": scaler_state,
        "rng_python": _python_rng_to_json(random.getstate()),
        "rng_numpy": [np_kind, int(np_pos), int(np_has_gauss), float(np_gauss)],
    }
    # safetensors refuses shared storage; clone so every tensor saves on its own.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={STATE_KEY: json.dumps(header)})
    return Path(path)


def load_train_state(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    map_location: str | torch.device = "cpu",
) -> tuple[TrainState, dict[str, Any]]:
    """Restore model, optimizer and RNGs in place; return the counters and the scaler state."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"cannot resume: {path} does not exist. Resume needs the output directory of an "
            "earlier run (it writes train_state.safetensors every checkpoint_every steps)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {})[STATE_KEY])
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"cannot resume: {path} is not a readable training state ({exc})") from exc
    if header.get("version", 0) > STATE_VERSION:
        raise CheckpointError(f"{path} was written by a newer edgeseg; upgrade to resume it")

    model_state = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"cannot resume: the model in {path} does not match this run's model ({exc}). "
            "Resume with the same model and data as the interrupted run"
        ) from exc

    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(_OPTIM):
            param_id, slot = key[len(_OPTIM):].split(".", 1)
            opt_state.setdefault(int(param_id), {})[slot] = value.to(map_location)
    for param_id, slots in header["optimizer_plain_state"].items():
        opt_state.setdefault(int(param_id), {}).update(slots)
    optimizer.load_state_dict({"state": opt_state, "param_groups": header["optimizer_param_groups"]})

    torch.set_rng_state(tensors[_RNG_TORCH])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith(_RNG_CUDA)]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    np_kind, np_pos, np_has_gauss, np_gauss = header["rng_numpy"]
    np.random.set_state((np_kind, tensors[_RNG_NUMPY].numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    random.setstate(_python_rng_from_json(header["rng_python"]))

    state = TrainState(
        step=int(header["step"]),
        epoch=int(header["epoch"]),
        history=list(header["history"]),
        best_miou=float(header["best_miou"]),
        config=dict(header["config"]),
    )
    return state, dict(header.get("scaler") or {})


def read_train_state_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON part of a training state (step, epoch, history, config) without its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {})[STATE_KEY])


def _python_rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_rng_from_json(data: list) -> tuple:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)
