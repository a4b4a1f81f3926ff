"""The graph a converter exports: the model plus the I/O the options ask for.

:class:`ExportWrapper` adds, around a segmentation network, what the device would otherwise do
by hand: uint8 -> normalized float (mean/std folded into one multiply-add), NHWC <-> NCHW
permutes, and argmax -> uint8 mask. :func:`build_graphs` turns a model and
:class:`~converters.options.ExportOptions` into one :class:`ExportGraph` per file to write.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.metadata import ModelMetadata

INPUT_NAME = "image"
ALL_DOMAINS = "all"


class ExportWrapper(nn.Module):
    """``image`` -> ``net`` -> logits or masks, in the layout and dtypes of the file contract."""

    def __init__(self, net: nn.Module, metadata: ModelMetadata, *, argmax_channels_last: bool = False) -> None:
        super().__init__()
        self.net = net
        self.nhwc = metadata.layout == "nhwc"
        self.include_preprocess = metadata.include_preprocess
        self.argmax = metadata.argmax
        # Reduce over the last axis of the NHWC view (same mask): for backends that are NHWC inside.
        self.argmax_channels_last = argmax_channels_last
        self.mask_dtype = getattr(torch, metadata.extra.get("mask_dtype", "uint8"))
        std = torch.tensor(metadata.std).view(1, 3, 1, 1)
        mean = torch.tensor(metadata.mean).view(1, 3, 1, 1)
        # (x / 255 - mean) / std  ==  x * scale + shift: one multiply-add inside the graph.
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)

        # --output-stride: logits at 1/output_stride of the input (the head's own resolution), the
        # net's final upsample left out; the runtime upsamples once, to the caller's frame.
        self.output_size = metadata.output_size if metadata.output_stride > 1 else None

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = image.permute(0, 3, 1, 2) if self.nhwc else image
        if self.include_preprocess:
            x = x.to(torch.float32) * self.scale + self.shift
        heads = self.net(x) if self.output_size is None else head_logits(self.net, x)
        if isinstance(heads, torch.Tensor):
            return self._finish(heads)
        return tuple(self._finish(logits) for logits in heads)

    def _finish(self, logits: torch.Tensor) -> torch.Tensor:
        if self.output_size is not None and tuple(logits.shape[-2:]) != self.output_size:
            # A stride finer than the head's: the graph upsamples part of the way.
            logits = nn.functional.interpolate(logits, size=self.output_size, mode="bilinear", align_corners=False)
        if self.argmax and self.argmax_channels_last:
            return logits.permute(0, 2, 3, 1).argmax(dim=-1).to(self.mask_dtype)
        if self.argmax:
            return logits.argmax(dim=1).to(self.mask_dtype)
        return logits.permute(0, 2, 3, 1) if self.nhwc else logits


class _HeadsInDomainOrder(nn.Module):
    """A multi-head model's outputs as a tuple in ``metadata.domains`` order (dicts do not export
    with stable names on every target)."""

    def __init__(self, heads: nn.Module, domains: tuple[str, ...]) -> None:
        super().__init__()
        self.heads = heads
        self.domains = domains

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.heads(x)
        if isinstance(out, dict):
            return tuple(out[d] for d in self.domains)
        return tuple(out)


def head_logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """``net(x)`` without its final upsample: the logits at the head's own resolution.

    Every zoo model is encoder -> decoder -> one bilinear upsample (``SegmentationModel``); a
    multi-head graph runs the shared encoder and neck once and every domain's head."""
    from edgeseg.models.base import SegmentationModel

    if isinstance(net, _HeadsInDomainOrder):
        model = net.heads.model  # MultiHeadSegmentationModel -> the multi-domain model
        shared = model.neck(model.encoder(x))
        return tuple(model.heads[d](shared) for d in net.domains)
    if isinstance(net, SegmentationModel):
        net.check_input_size(x.shape[-2], x.shape[-1], x.shape[1])
        return net.decoder(net.encoder(x))
    raise ConfigError(
        f"--output-stride needs an edgeseg model (encoder -> decoder -> upsample); {type(net).__name__} "
        "is not one: leave --output-stride out"
    )


def head_stride(net: nn.Module, meta: ModelMetadata) -> int:
    """The stride of the net's logits before its final upsample, from one run at the file's size."""
    height, width = meta.input_size
    with torch.no_grad():
        out = head_logits(net, torch.zeros(1, 3, height, width))
    h, w = (out if isinstance(out, torch.Tensor) else out[0]).shape[-2:]
    if height % h or width % w or height // h != width // w:
        raise ConfigError(
            f"{meta.model}'s head gives {h}x{w} logits for a {height}x{width} input, not one stride on "
            "both sides; leave --output-stride out"
        )
    return height // h


@dataclass
class ExportGraph:
    """One file's worth of graph: the module to export, a sample input and the file's metadata."""

    module: nn.Module  # ExportWrapper, eval mode
    sample: torch.Tensor  # an input of the exact shape and dtype of the graph's "image" input
    metadata: ModelMetadata  # what the file will carry (and describes its I/O exactly)
    output_names: tuple[str, ...]  # graph output names, in the module's output order
    suffix_tag: str = ""  # added to the file name when one conversion writes several files
    gate: object = None  # int8: the accuracy gate's edgeseg.quantization.gate.GateReport, set by the exporter

    @property
    def input_name(self) -> str:
        return INPUT_NAME


def build_graphs(model: nn.Module, options, spec) -> list[ExportGraph]:
    """One :class:`ExportGraph` per file the options ask for (several for ``domain="all"``)."""
    base = model.metadata
    extra = dict(base.extra)
    preprocess = options.include_preprocess
    if preprocess is None:
        preprocess = spec.default_preprocess and getattr(options, "coreml_input", None) != "tensor"
    if preprocess and spec.pixel_dtype != "uint8":
        # The file takes pixel values 0..255 in another dtype: say so, the runtime reads it.
        extra["image_dtype"] = spec.pixel_dtype
    if options.argmax and spec.mask_dtype != "uint8":
        extra["mask_dtype"] = spec.mask_dtype
    height, width = options.input_size or base.input_size
    model.check_input_size(height, width)
    meta = base.replace(
        input_size=(height, width),
        layout=options.layout or spec.default_layout,
        include_preprocess=preprocess,
        argmax=options.argmax,
        precision=options.precision,
        output_names={},
        extra=extra,
    )
    stride = getattr(options, "output_stride", 1) or 1
    if stride > 1:
        natural = head_stride(model, meta)
        if natural % stride:
            finer = [s for s in range(2, natural + 1) if natural % s == 0 and height % s == 0 and width % s == 0]
            raise ConfigError(
                f"--output-stride {stride}: {base.model}'s head gives logits at 1/{natural} of the input, "
                f"so the stride must divide {natural} (one of {finer or [natural]}), or leave it out for "
                "full-resolution output"
            )
        meta = meta.replace(output_stride=stride)
    domains = tuple(d.name for d in base.domains)
    out_kind = "mask" if options.argmax else "logits"
    if not domains:
        if options.domain is not None:
            raise ConfigError(
                f"--domain {options.domain} was given but {base.model} is a single-domain model; "
                "leave --domain out"
            )
        return [_graph(model, meta, (out_kind,), spec=spec)]
    if options.domain is None:  # one file, one named output per domain
        names = tuple(f"{out_kind}_{d}" for d in domains)
        heads = _HeadsInDomainOrder(model.multi_head_model(), domains)
        one_file = meta.replace(output_names=dict(zip(domains, names)))
        return [_graph(heads, one_file, names, spec=spec)]
    wanted = domains if options.domain == ALL_DOMAINS else (options.domain,)
    for name in wanted:
        base.domain_info(name)  # unknown domain -> ConfigError listing the known ones
    return [
        _graph(model.domain_model(name), meta.for_domain(name), (out_kind,), f"_{name}" if len(wanted) > 1 else "",
               spec=spec)
        for name in wanted
    ]


def _graph(net: nn.Module, meta: ModelMetadata, output_names: tuple[str, ...], tag: str = "", *, spec) -> ExportGraph:
    for classes in [meta.classes, *(d.classes for d in meta.domains)]:
        if meta.argmax and len(classes) > 256:
            raise ConfigError(
                f"--argmax writes a uint8 mask, which holds at most 256 classes; {meta.model} has "
                f"{len(classes)}. Export logits (leave --argmax out) and take the argmax on device"
            )
    module = ExportWrapper(net.eval(), meta, argmax_channels_last=spec.channels_last).eval()
    return ExportGraph(module, sample_input(meta), meta, output_names, tag)


def sample_input(meta: ModelMetadata, seed: int = 0) -> torch.Tensor:
    """A random input with the exact shape and dtype of a file's ``image`` input."""
    height, width = meta.input_size
    shape = (1, height, width, 3) if meta.layout == "nhwc" else (1, 3, height, width)
    gen = torch.Generator().manual_seed(seed)
    if meta.include_preprocess:
        pixels = torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
        return pixels.to(getattr(torch, meta.extra.get("image_dtype", "uint8")))
    return torch.randn(shape, generator=gen)
