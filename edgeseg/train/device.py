"""Device, mixed precision and memory layout: CUDA when present, CPU otherwise."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeseg.errors import ConfigError


@dataclass(frozen=True)
class DeviceSetup:
    device: torch.device
    amp_dtype: torch.dtype | None  # None = full fp32
    channels_last: bool

    @property
    def needs_grad_scaler(self) -> bool:
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range.
        return self.amp_dtype == torch.float16


def requested_device_type(requested: str) -> str:
    """"cuda" or "cpu" (or another torch device type) for a --device value, before any process
    group exists (it picks the distributed backend: NCCL for CUDA, gloo otherwise)."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return torch.device(requested).type
    except RuntimeError as exc:
        raise ConfigError(f"device {requested!r} is not a torch device (use auto, cpu, cuda, cuda:1)") from exc


def resolve_device(requested: str, *, amp: str, channels_last: bool, local_rank: int = 0) -> DeviceSetup:
    if requested == "auto":
        device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            device = torch.device(requested)
        except RuntimeError as exc:
            raise ConfigError(f"device {requested!r} is not a torch device (use auto, cpu, cuda, cuda:1)") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {requested!r} asked for CUDA but no GPU is visible; use --device cpu")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
    on_cuda = device.type == "cuda"
    if amp == "auto":
        amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if on_cuda else None
    elif amp == "off":
        amp_dtype = None
    elif not on_cuda:
        raise ConfigError(f"amp {amp!r} needs a CUDA device; on CPU use --amp off (or auto)")
    else:
        amp_dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    if on_cuda:
        torch.cuda.set_device(device)
    return DeviceSetup(device=device, amp_dtype=amp_dtype, channels_last=channels_last and on_cuda)
