"""What an int8 conversion is asked for: calibration, I/O types, layers kept in float, the gate.

Torch-free: the CLI and ``edgeseg.converters`` build a :class:`QuantOptions` before any
quantization library is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from edgeseg.errors import ConfigError

IO_TYPES = ("float", "int8", "uint8")
COREML_MODES = ("w8a8", "weights", "palette")


@dataclass(frozen=True)
class QuantOptions:
    """One int8 request (the ``--calibration``/``--calib-size``/``--io``/... flags, validated)."""

    # Calibration images (train split): a labelled build_dataset spec, or unlabelled images
    # (images:PATH, folder:PATH without masks/); see edgeseg.quantization.calibration.
    calibration: str = "synthetic:train"
    calib_size: int = 64  # calibration images; NNCF's default subset is 300, 64 is enough for BN-free ranges here
    # io, accuracy_control and coreml_mode belong to one target's int8 module each (the format
    # table's int8_options): check_target refuses them elsewhere, the module checks their meaning.
    io: str = "float"  # TFLite: image input / logits output as float, int8 or uint8 (full int8)
    keep_float: tuple[str, ...] = ()  # module paths (``net.decoder``) left in float, from the sensitivity report
    accuracy_control: bool = False  # OpenVINO: nncf.quantize_with_accuracy_control instead of nncf.quantize
    coreml_mode: str = "w8a8"  # CoreML: w8a8 (weights + activations), weights (int8 weights only), palette (6-bit LUT)
    gate_data: str | None = None  # images of the gate; None = the calibration spec's val (held-out) split
    gate_images: int = 32  # images of the gate; the benchmark uses the whole held-out split
    # Gate on labelled images: mIoU points the int8 file may lose against the float reference. One
    # default with `edgeseg validate` (edgeseg.validate.Gates), so a file convert keeps passes validate.
    max_miou_drop: float = 0.5
    min_agreement: float = 0.90  # gate: fraction of pixels whose class equals the float reference's
    reference: str | None = None  # float checkpoint the gate compares with (QAT: the model before QAT)

    def __post_init__(self) -> None:
        if self.io not in IO_TYPES:
            raise ConfigError(f"--io {self.io!r} is not one of {IO_TYPES}")
        if self.coreml_mode not in COREML_MODES:
            raise ConfigError(f"--coreml-mode {self.coreml_mode!r} is not one of {COREML_MODES}")
        if self.calib_size < 1:
            raise ConfigError(f"--calib-size {self.calib_size} must be >= 1 (64..300 images is usual)")
        if self.gate_images < 1:
            raise ConfigError(f"--gate-images {self.gate_images} must be >= 1")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ConfigError(f"min_agreement={self.min_agreement} is a fraction of pixels in [0, 1] (e.g. 0.9)")
        if self.max_miou_drop < 0:
            raise ConfigError(f"max_miou_drop={self.max_miou_drop} must be >= 0 mIoU points (e.g. 0.5)")
        object.__setattr__(self, "keep_float", tuple(self.keep_float))

    def check_target(self, target: str) -> None:
        """Refuse options the target's int8 scheme does not have: a target-specific field set on
        a target whose int8 module does not own it (the format table's ``int8_options``), then
        what the target's int8 module itself checks (its ``check_options``)."""
        import importlib

        from edgeseg.runtime.formats import FORMATS

        owned = {name for fmt in FORMATS.values() for name in fmt.int8_options}
        for f in fields(self):
            if f.name not in owned or f.name in FORMATS[target].int8_options or getattr(self, f.name) == f.default:
                continue
            owners = [fmt for fmt in FORMATS.values() if f.name in fmt.int8_options]
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            given = flag if isinstance(value, bool) else f"{flag} {value}"
            titles = " / ".join(fmt.title for fmt in owners)
            raise ConfigError(
                f"{given} is {'an' if titles[:1] in 'AEIOU' else 'a'} {titles} option (--target "
                f"{' or '.join(fmt.name for fmt in owners)} only); {target} int8 files do not take it. "
                f"Leave {flag} out, or use --target {owners[0].name}"
            )
        try:
            module = importlib.import_module(FORMATS[target].int8)
        except ImportError:
            return  # converting names the extra to install
        if hasattr(module, "check_options"):
            module.check_options(self)

    @property
    def labelled(self) -> bool:
        """Whether the gate images carry masks (mIoU gate) or not (int8-vs-float agreement gate)."""
        from edgeseg.quantization.calibration import is_unlabelled

        return not is_unlabelled(self.gate_spec)

    @property
    def gate_spec(self) -> str:
        if self.gate_data:
            return self.gate_data
        spec = self.calibration
        return spec[: -len(":train")] + ":val" if spec.endswith(":train") else f"{spec}:val"

    def describe(self) -> dict:
        """What the file's metadata ``extra["quantization"]`` records."""
        return {
            "calibration": self.calibration,
            "calib_size": self.calib_size,
            "io": self.io,
            "keep_float": list(self.keep_float),
            **({"accuracy_control": True} if self.accuracy_control else {}),
        }
