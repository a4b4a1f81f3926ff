"""What a conversion is asked to produce: :class:`ExportOptions`, one request, checked against
what the target accepts (its row of the format table, ``edgeseg.runtime.formats.Format``).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeseg.errors import ConfigError
from edgeseg.metadata import LAYOUTS


@dataclass(frozen=True)
class ExportOptions:
    """One conversion request (the CLI flags, validated)."""

    target: str
    precision: str = "fp32"  # fp32 | fp16 | int8 (int8 targets: those with an int8 module)
    input_size: tuple[int, int] | None = None  # (H, W); None = the model metadata's input_size
    layout: str | None = None  # image input (and logits output) layout; None = the target's default_layout
    include_preprocess: bool | None = None  # graph takes uint8 RGB and normalizes inside; None = target default
    argmax: bool = False  # graph outputs the uint8 class mask instead of logits
    domain: str | None = None  # multi-domain: a domain name, "all" (one file each) or None (one file)
    quant: object | None = None  # int8 only: edgeseg.quantization.QuantOptions (calibration, I/O, gate)
    # CoreML only: "image" (ImageType: Vision passes camera pixel buffers; needs NCHW and the
    # normalization inside) or "tensor" (a MultiArray); None = "image" for CoreML.
    coreml_input: str | None = None
    # The file's logits (or mask) at 1/output_stride of the input: the head's own resolution, no
    # final upsample in the graph (the runtime upsamples once, to the frame). 1 = full resolution.
    output_stride: int = 1

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

    def check(self, spec) -> None:
        """Refuse what ``spec`` (the target's Format row) does not accept."""
        if self.precision not in spec.precisions:
            raise ConfigError(
                f"target {spec.name} does not convert precision {self.precision!r}; it takes "
                f"{', '.join(spec.precisions)}"
                + (f" (int8 files come from targets with an int8 module: {_int8_targets()})"
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
        stride = self.output_stride
        if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= 64:
            raise ConfigError(
                f"--output-stride {stride!r} must be an integer from 1 (full resolution) to 64; the "
                "head's own stride (8 for LR-ASPP, 4 for SegFormer) drops the graph's final upsample"
            )
        if stride > 1 and self.argmax:
            # A mask at the head's resolution can only be enlarged by nearest neighbour: blocky
            # (LR-ASPP-S 1/8 -> 720p: 94.9% of pixels agree with the full-resolution file).
            raise ConfigError(
                "--argmax with --output-stride would give a mask at the head's resolution, which the "
                "runtime can only enlarge blockily (95% agreement with full resolution); leave "
                "--argmax out (the runtime takes the argmax from the low-resolution logits exactly)"
            )
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 1):
            raise ConfigError(f"input size {self.input_size} must be (height, width), both >= 1")


def _int8_targets() -> str:
    from edgeseg.runtime.formats import targets

    return ", ".join(name for name, fmt in targets().items() if "int8" in fmt.precisions)
