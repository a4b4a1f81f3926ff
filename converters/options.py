"""What a conversion is asked to produce, and what each target accepts.

:class:`TargetSpec` is one row of the target table in ``edgeseg.converters``; :class:`ExportOptions`
is one request. Int8 (issue 7) plugs in by adding ``"int8"`` to a target's ``precisions`` and
its calibration fields to :class:`ExportOptions`; the exporters' signature does not change.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from edgeseg.errors import ConfigError
from edgeseg.metadata import LAYOUTS


@dataclass(frozen=True)
class TargetSpec:
    """One target: where its exporter lives and what it accepts."""

    name: str  # the --target value
    module: str  # module with export / load / read_metadata (same signature for every target)
    suffixes: tuple[str, ...]  # the main file's suffix first, then companions (OpenVINO .bin)
    precisions: tuple[str, ...]  # values of --precision this target converts
    extra: str  # the pip extra that installs its libraries
    is_dir: bool = False  # the "file" is a directory (CoreML .mlpackage)
    runs_on: tuple[str, ...] = ()  # sys.platform prefixes where the backend runs; () = everywhere
    # dtype of the image input with --include-preprocess: uint8 per the file contract, except
    # where the converter cannot take uint8 inputs (coremltools' torch.export frontend).
    pixel_dtype: str = "uint8"
    mask_dtype: str = "uint8"  # dtype of the --argmax mask output; same rule (CoreML: int32)
    # The backend lays tensors out NHWC inside (TFLite): --argmax is taken over the channel-last
    # view, so the file has one ARG_MAX over the innermost axis instead of TRANSPOSE + a strided
    # ARG_MAX (LR-ASPP-S 512x512, 1 thread: the mask file's invoke 36 ms -> 22 ms; logits: 21 ms).
    channels_last: bool = False
    # Image input layout when --layout is left out: what the target's own consumers expect
    # (every TFLite consumer, MediaPipe and the Task Library included, takes NHWC images).
    default_layout: str = "nchw"
    # Whether the file normalizes inside (uint8 RGB input) when --include-preprocess is left out.
    # TFLite: yes, because MediaPipe refuses per-channel NormalizationOptions ("Per-channel image
    # normalization is not available"), and ImageNet mean/std differ per channel.
    default_preprocess: bool = False
    int8_module: str | None = None  # module with the same interface that writes int8 (edgeseg.quantization)

    def runs_here(self) -> bool:
        return not self.runs_on or sys.platform.startswith(self.runs_on)


@dataclass(frozen=True)
class ExportOptions:
    """One conversion request (the CLI flags, validated)."""

    target: str
    precision: str = "fp32"  # fp32 | fp16 | int8 (int8 targets: those with an int8_module)
    input_size: tuple[int, int] | None = None  # (H, W); None = the model metadata's input_size
    layout: str | None = None  # image input (and logits output) layout; None = the target's default_layout
    include_preprocess: bool | None = None  # graph takes uint8 RGB and normalizes inside; None = target default
    argmax: bool = False  # graph outputs the uint8 class mask instead of logits
    domain: str | None = None  # multi-domain: a domain name, "all" (one file each) or None (one file)
    quant: object | None = None  # int8 only: edgeseg.quantization.QuantOptions (calibration, I/O, gate)
    # CoreML only: "image" (ImageType: Vision passes camera pixel buffers; needs NCHW and the
    # normalization inside) or "tensor" (a MultiArray); None = "image" for CoreML.
    coreml_input: str | None = None

    def _check_coreml_input(self) -> None:
        kind = self.coreml_input or "image"
        if kind not in ("image", "tensor"):
            raise ConfigError(f"--coreml-input {kind!r} is not one of image, tensor")
        if kind == "image" and (self.layout == "nhwc" or self.include_preprocess is False):
            raise ConfigError(
                "a CoreML image input (ImageType) is NCHW with the normalization inside the graph "
                f"(ImageType has one scale for every channel); {'--layout nhwc' if self.layout == 'nhwc' else '--no-include-preprocess'} "
                "needs --coreml-input tensor"
            )

    def check(self, spec: TargetSpec) -> None:
        if self.precision not in spec.precisions:
            raise ConfigError(
                f"target {spec.name} does not convert precision {self.precision!r}; it takes "
                f"{', '.join(spec.precisions)}"
                + (" (int8 comes with `edgeseg convert --precision int8` from edgeseg.quantization)"
                   if self.precision == "int8" else "")
            )
        if self.precision == "int8" and self.quant is not None:
            self.quant.check_target(spec.name)
        if self.coreml_input is not None and spec.name != "coreml":
            raise ConfigError(f"--coreml-input is a CoreML option; leave it out for --target {spec.name}")
        if spec.name == "coreml":
            self._check_coreml_input()
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ConfigError(f"layout {self.layout!r} is not one of {LAYOUTS}")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 1):
            raise ConfigError(f"input size {self.input_size} must be (height, width), both >= 1")
