"""Sensitivity report: which layers cost the most when they alone run in int8.

One layer at a time, in PyTorch: its weight is rounded to int8 per output channel (symmetric) and
its output to int8 per tensor over the range it had on the calibration images (asymmetric), as
every target's int8 scheme does; everything else stays float. The logits are compared with the
float model's: SQNR in dB (higher is better) and the fraction of pixels whose class changes. The
layers at the top of the report are the ``--keep-float`` candidates. Attention blocks are also
scored as a whole (their softmax is functional, not a module), which is where SegFormer's int8
error concentrates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

# Modules scored on their own: leaves with an output worth rounding, and whole attention blocks.
_SKIP = (nn.Dropout, nn.Identity)


@dataclass(frozen=True)
class LayerSensitivity:
    layer: str  # module path, as --keep-float takes it
    kind: str  # module class
    sqnr_db: float  # 10 log10(|float logits|^2 / |error|^2) with only this layer in int8
    changed_pixels: float  # fraction of pixels whose argmax class differs from the float model

    def as_dict(self) -> dict:
        return asdict(self)


def candidate_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    out = []
    for name, module in model.named_modules():
        if not name or isinstance(module, _SKIP):
            continue
        is_leaf = next(module.children(), None) is None
        if is_leaf or "Attention" in type(module).__name__:
            out.append((name, module))
    return out


def fake_int8_per_tensor(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-12)
    zero = round(-128 - lo / scale)
    return (torch.clamp(torch.round(x / scale) + zero, -128, 127) - zero) * scale


def fake_int8_per_channel(w: torch.Tensor) -> torch.Tensor:
    scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-12) / 127.0
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


def layer_sensitivity(model: nn.Module, inputs: list[np.ndarray], *, layers: list[str] | None = None,
                      progress=None) -> list[LayerSensitivity]:
    """Score every candidate layer (or ``layers``); worst first. ``progress(done, total, layer)``
    is called after each layer (the CLI prints it: a big model takes minutes)."""
    model = model.eval()
    batch = torch.from_numpy(np.concatenate(inputs))
    candidates = [(n, m) for n, m in candidate_layers(model) if layers is None or n in layers]
    ranges = _output_ranges(model, batch, candidates)
    with torch.no_grad():
        reference = model(batch)
        results = []
        for name, module in candidates:
            results.append(_score(model, batch, reference, name, module, ranges.get(name)))
            if progress is not None:
                progress(len(results), len(candidates), name)
    return sorted(results, key=lambda r: r.sqnr_db)


def _output_ranges(model, batch, candidates) -> dict[str, tuple[float, float]]:
    ranges: dict[str, tuple[float, float]] = {}

    def recorder(name):
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                ranges[name] = (float(output.min()), float(output.max()))
        return hook

    handles = [m.register_forward_hook(recorder(n)) for n, m in candidates]
    with torch.no_grad():
        model(batch)
    for h in handles:
        h.remove()
    return ranges


def _score(model, batch, reference, name, module, out_range) -> LayerSensitivity:
    weight = getattr(module, "weight", None)
    saved = None
    if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
        saved = weight.detach().clone()
        weight.data.copy_(fake_int8_per_channel(weight.data))
    handle = None
    if out_range is not None:
        handle = module.register_forward_hook(lambda _m, _i, out: fake_int8_per_tensor(out, *out_range))
    try:
        logits = model(batch)
    finally:
        if handle is not None:
            handle.remove()
        if saved is not None:
            weight.data.copy_(saved)
    error = (logits - reference).pow(2).sum().item()
    signal = reference.pow(2).sum().item()
    sqnr = float("inf") if error == 0 else 10.0 * np.log10(signal / error)
    changed = (logits.argmax(1) != reference.argmax(1)).float().mean().item()
    return LayerSensitivity(name, type(module).__name__, sqnr, changed)


def report_markdown(results: list[LayerSensitivity], top: int = 15) -> str:
    lines = [
        "| rank | layer | kind | SQNR (dB) | pixels changed |",
        "|---|---|---|---|---|",
        *[f"| {i + 1} | `{r.layer}` | {r.kind} | {r.sqnr_db:.1f} | {100 * r.changed_pixels:.2f}% |"
          for i, r in enumerate(results[:top])],
    ]
    return "\n".join(lines)
