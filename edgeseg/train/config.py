"""One training configuration: a dataclass, loadable from YAML and overridable from CLI flags.

Defaults follow the slides' recipe (momentum SGD, fixed crop size, poly schedule, mIoU per
dataset) at sizes a laptop CPU can train in minutes.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.errors import ConfigError
from edgeseg.metadata import parse_size

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("poly", "cosine")
AMP_MODES = ("auto", "off", "bf16", "fp16")
COMPILE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved into every checkpoint it writes."""

    # Registry name of the architecture (`edgeseg models` lists them); `multidomain_*` models
    # train one head per dataset in `data`.
    model: str = "lraspp_mobilenetv3_small"
    # Extra builder keyword arguments (e.g. width options); classes come from the data.
    model_options: dict[str, Any] = field(default_factory=dict)
    # Dataset specs, one per domain ("synthetic", "synthetic:night", "cityscapes:/data/cs", ...).
    data: tuple[str, ...] = ("synthetic",)
    # Keyword options passed to every build_dataset call (e.g. length=... for synthetic data).
    data_options: dict[str, Any] = field(default_factory=dict)
    # Split names for training and for the per-epoch evaluation.
    train_split: str = "train"
    val_split: str = "val"
    # Momentum SGD is the slides' optimizer; AdamW converges faster from scratch on short runs.
    optimizer: str = "sgd"
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # poly: lr * (1 - t)^power as in DeepLab/LR-ASPP training; cosine: half cosine to zero.
    schedule: str = "poly"
    poly_power: float = 0.9
    # Linear warm-up from 0 over this many steps (keeps BN statistics sane at a high lr).
    warmup_steps: int = 0
    # Length of training: `iters` optimizer steps, or `epochs` passes over the largest domain.
    epochs: int | None = None
    iters: int | None = None
    # Stop early (then evaluate and checkpoint) after this many minutes of training; None = off.
    max_minutes: float | None = None
    # Images per domain per step per process.
    batch_size: int = 8
    # Training crop (height, width); must suit the model's size divisor (32 for the zoo).
    size: tuple[int, int] = (128, 256)
    # Random scale of TrainTransform, relative to the scale at which an image just covers the crop.
    scale_range: tuple[float, float] = (0.5, 2.0)
    # BatchNorm momentum while training; None keeps the model's. MobileNetV3's 0.01 (torchvision,
    # TF) suits 100k-step runs; after a few hundred steps its running statistics still lag the
    # weights (measured at step 200: val mIoU 11 in eval mode vs 43 with batch statistics).
    bn_momentum: float | None = 0.1
    # DataLoader worker processes per domain; 0 loads in the training process.
    workers: int = 2
    # Folder for decoded training images kept downscaled to the largest size the random scale
    # draws (edgeseg.data.cache): decode each large photo once, not once per epoch. None = off.
    cache_dir: str | None = None
    # Evaluate every N steps; 0 = at the end of every epoch (and always at the end of training).
    eval_every: int = 0
    # Cap on evaluation images per domain (None = the whole validation split).
    eval_limit: int | None = None
    # Write last.safetensors + train_state.safetensors every N steps: a kill loses at most N.
    checkpoint_every: int = 200
    # Refresh the progress bar's loss / lr / images-per-second every N steps.
    log_every: int = 10
    # Seeds model init, data order and augmentation; the same seed gives the same run.
    seed: int = 0
    # Output directory: checkpoints, train_state, metrics.csv, config.yaml.
    out: str = "runs/train"
    # "auto" = cuda when available, else cpu; or any torch device string.
    device: str = "auto"
    # auto: bf16 on CUDA where supported, else fp16 (with a GradScaler); off on CPU.
    amp: str = "auto"
    # NHWC memory layout on CUDA (faster convolutions with tensor cores); ignored on CPU.
    channels_last: bool = True
    # SyncBatchNorm across processes under torchrun (CUDA only): BatchNorm statistics over the
    # whole world batch, not each process's share; use it when the per-GPU batch is small (< 8).
    sync_bn: bool = False
    # torch.compile the model: auto = on CUDA for runs of >= 20,000 steps (where it measured faster
    # end to end), off otherwise; or on / off.
    compile: str = "auto"

    def __post_init__(self) -> None:
        data = (self.data,) if isinstance(self.data, str) else tuple(self.data)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "size", _parse_size(self.size))
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))
        if not data:
            raise ConfigError("data is empty; give at least one dataset spec, e.g. --data synthetic")
        if len(set(data)) != len(data):
            raise ConfigError(f"data specs repeat: {list(data)}; list each dataset once")
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("amp", self.amp, AMP_MODES)
        _one_of("compile", self.compile, COMPILE_MODES)
        if (self.epochs is None) == (self.iters is None):
            raise ConfigError("give exactly one of epochs or iters (e.g. --iters 2000)")
        for name in ("epochs", "iters", "batch_size", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        for name in ("workers", "eval_every", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.bn_momentum is not None and not 0 < self.bn_momentum <= 1:
            raise ConfigError(f"bn_momentum must be in (0, 1] or None, got {self.bn_momentum}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"max_minutes must be > 0, got {self.max_minutes}")

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (CLI flags over a YAML file); unknown names raise."""
        _check_known(changes, "override")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["data"] = list(self.data)
        data["size"] = list(self.size)
        data["scale_range"] = list(self.scale_range)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        if not isinstance(data, dict):
            raise ConfigError("a training config must be a mapping of field: value")
        _check_known(data, "config")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], **overrides: Any) -> TrainConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of field: value")
        _check_known(data, f"config file {path}")
        return cls(**{**data, **overrides})

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _check_known(data: dict[str, Any], where: str) -> None:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(known)}")


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} {value!r} is not one of {allowed}")


def _parse_size(size: Any) -> tuple[int, int]:
    if isinstance(size, str):
        return parse_size(size)
    if isinstance(size, int):
        size = (size, size)
    size = tuple(size)
    if len(size) != 2 or not all(isinstance(v, int) and v >= 1 for v in size):
        raise ConfigError(f"size {size!r} must be (height, width), two positive integers")
    return size
