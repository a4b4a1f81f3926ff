"""What every edgeseg model is: encoder -> decoder -> logits at input resolution.

Encoder contract (every encoder in ``edgeseg/models`` follows it):
    ``encoder(x)`` takes a normalized ``(N, 3, H, W)`` float tensor and returns a ``list`` of
    feature maps, shallow to deep; ``encoder.out_channels[i]`` and ``encoder.strides[i]`` give the
    channels and the stride (relative to the input) of map ``i``.
    ``encoder.adapter_sites()`` lists ``(module path, channels)`` of the residual branches whose
    output a Domain Attention module may re-weight before the residual add (multi-domain models).

Decoder contract: ``decoder(features) -> (N, num_classes, h, w)`` logits at any stride; the
model upsamples them (bilinear) to the input size, so every model's output is one logits tensor
``(N, num_classes, H, W)``: what converters, the runtime and the validation harness expect.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from collections.abc import Sequence

from edgeseg.errors import ConfigError, InputShapeError
from edgeseg.metadata import ModelMetadata, default_classes


class SegmentationModel(nn.Module):
    """Base class: subclasses set ``encoder``, ``decoder`` (attributes or properties) and
    ``metadata``, and may override :attr:`size_divisor`."""

    metadata: ModelMetadata
    #: The keyword arguments it was built with (set by ``create_model``; saved in checkpoints).
    build_config: dict
    #: The input height and width must be multiples of this (the encoder's largest stride,
    #: or more where a layer needs it).
    size_divisor: int = 32
    #: Max |logit| difference accepted between this model and its exported graph in fp32.
    export_atol: float = 1e-4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Shapes are concrete under torch.export at a fixed size, so this check costs no graph op.
        self.check_input_size(x.shape[-2], x.shape[-1], x.shape[1])
        features = self.encoder(x)
        logits = self.decoder(features)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    @property
    def num_classes(self) -> int:
        return self.metadata.num_classes

    def check_input_size(self, height: int, width: int, channels: int = 3) -> None:
        """Refuse a size the model cannot take, saying which sizes work."""
        if channels != 3:
            raise InputShapeError(
                f"{self.metadata.model} takes 3-channel RGB input, got {channels} channels; "
                "convert grayscale or RGBA images to RGB first"
            )
        d = self.size_divisor
        if height < d or width < d or height % d or width % d:
            def near(v: int) -> str:
                lo = max(d, v // d * d)
                return f"{lo}" if lo == v else f"{lo} or {lo + d}"

            raise InputShapeError(
                f"{self.metadata.model} needs height and width that are multiples of {d} "
                f"(at least {d}), got {height}x{width}; use {near(height)} x {near(width)}, "
                "or resize/pad your images to such a size"
            )

    def example_input(self, height: int | None = None, width: int | None = None) -> torch.Tensor:
        h, w = (height, width) if height and width else self.metadata.input_size
        self.check_input_size(h, w)
        return torch.randn(1, 3, h, w)


def resolve_metadata(
    name: str,
    *,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    input_size: Sequence[int] | None = None,
    metadata: ModelMetadata | None = None,
) -> ModelMetadata:
    """The metadata a builder starts from; every zoo builder takes these same keywords.

    The classes come from ``metadata``, ``classes`` or ``num_classes`` (several of them only when
    they agree); ``palette`` and ``input_size`` override what ``metadata`` says. The result is
    named ``name``.
    """
    if metadata is not None:
        if num_classes is not None and int(num_classes) != metadata.num_classes:
            raise ConfigError(
                f"{name}: num_classes={num_classes} but metadata has {metadata.num_classes} classes; "
                "give only metadata, or make them agree"
            )
        if classes is not None and tuple(classes) != metadata.classes:
            raise ConfigError(f"{name}: classes differ from metadata.classes; give only one of them")
        changes: dict = {"model": name}
        if palette:
            changes["palette"] = tuple(tuple(c) for c in palette)
        if input_size is not None:
            changes["input_size"] = tuple(input_size)
        return metadata.replace(**changes)
    if classes is None:
        if num_classes is None or int(num_classes) < 1:
            raise ConfigError(
                f"{name}: give num_classes (>= 1), classes (a list of class names) or metadata, "
                f"got num_classes={num_classes!r}"
            )
        classes = default_classes(int(num_classes))
    elif num_classes is not None and int(num_classes) != len(classes):
        raise ConfigError(
            f"{name}: num_classes={num_classes} but {len(classes)} class names; give one of them, "
            "or make them agree"
        )
    fields: dict = {"model": name, "classes": tuple(classes)}
    if palette:
        fields["palette"] = tuple(tuple(c) for c in palette)
    if input_size is not None:
        fields["input_size"] = tuple(input_size)
    return ModelMetadata(**fields)
