"""Model metadata: what a converted file must carry so nobody retypes it on the device.

Torch-free on purpose: the converters write it and ``edgeseg.runtime`` reads it back.
Serialized as one JSON object under the key :data:`METADATA_KEY` in every target's metadata
slot (ONNX ``metadata_props``, the TFLite metadata buffer, CoreML user-defined metadata,
OpenVINO ``rt_info``) and in the header of every safetensors checkpoint.
"""

from __future__ import annotations

import colorsys
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edgeseg import __version__
from edgeseg.errors import ConfigError

METADATA_KEY = "edgeseg"
SCHEMA_VERSION = 1

# ImageNet statistics, for RGB pixels scaled to [0, 1]: what every zoo encoder expects.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

LAYOUTS = ("nchw", "nhwc")
RESIZE_MODES = ("stretch", "letterbox")
PRECISIONS = ("fp32", "fp16", "int8")


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct, deterministic colours: golden-ratio hue steps with alternating brightness."""
    colours = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        value = 0.95 if i % 2 == 0 else 0.7
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, value)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(colours)


def default_classes(num_classes: int) -> tuple[str, ...]:
    return tuple(f"class_{i}" for i in range(num_classes))


@dataclass(frozen=True)
class DomainInfo:
    """One dataset's label space inside a multi-domain model."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        _check_classes_palette(self.classes, self.palette, f"domain {self.name!r}")


def _check_classes_palette(classes: tuple[str, ...], palette: tuple, where: str) -> None:
    if len(classes) == 0:
        raise ConfigError(f"{where}: the class list is empty; give at least one class name")
    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        raise ConfigError(f"{where}: class names repeat ({dup}); every class needs its own name")
    if len(palette) != len(classes):
        raise ConfigError(
            f"{where}: {len(classes)} classes but {len(palette)} palette colours; give one RGB "
            "colour per class, or leave the palette out to get default colours"
        )
    for colour in palette:
        if len(colour) != 3 or any(not 0 <= int(c) <= 255 for c in colour):
            raise ConfigError(f"{where}: palette colour {colour} is not an RGB triple in 0..255")


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the runtime needs to turn a camera frame into a mask with a converted file.

    Fields:
        model: registry name of the architecture (e.g. ``lraspp_mobilenetv3_large``).
        classes: class names of the output, index = class id.
        palette: one RGB colour per class, for masks and overlays.
        mean, std: per-channel normalization of RGB pixels scaled to [0, 1].
        input_size: (height, width) the file was exported at.
        layout: ``nchw`` or ``nhwc``, the layout of the file's image input.
        include_preprocess: True when the graph takes uint8 RGB and normalizes inside.
        argmax: True when the graph outputs the class mask (uint8) instead of logits.
        resize: how an image of another size is brought to ``input_size`` (stretch/letterbox).
        precision: fp32 / fp16 / int8 weights and compute.
        domain: the domain this output belongs to (multi-domain models exported per domain).
        domains: every domain of a multi-domain model with its own classes and palette.
        output_names: for a file with one output per domain, the output name of each domain.
        edgeseg_version: version that wrote the file.
        checksum: ``edgeseg-sha256:<hex>``, the SHA-256 of the converted file's own bytes (see
            ``edgeseg.integrity``); the runtime refuses a file that no longer matches it.
        extra: free-form details (calibration, quantization scheme, training metrics).
    """

    model: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: tuple[int, int] = (512, 512)
    layout: str = "nchw"
    include_preprocess: bool = False
    argmax: bool = False
    resize: str = "stretch"
    precision: str = "fp32"
    domain: str | None = None
    domains: tuple[DomainInfo, ...] = ()
    output_names: dict[str, str] = field(default_factory=dict)
    edgeseg_version: str = __version__
    checksum: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.classes)
        object.__setattr__(self, "classes", classes)
        palette = self.palette or default_palette(len(classes))
        object.__setattr__(self, "palette", tuple(tuple(int(c) for c in rgb) for rgb in palette))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        _check_classes_palette(self.classes, self.palette, f"model {self.model!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError("mean and std need three values each, one per RGB channel")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std {self.std} has a value <= 0; std divides the pixels")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ConfigError(f"input_size {self.input_size} must be (height, width), both >= 1")
        for name, value, allowed in (
            ("layout", self.layout, LAYOUTS),
            ("resize", self.resize, RESIZE_MODES),
            ("precision", self.precision, PRECISIONS),
        ):
            if value not in allowed:
                raise ConfigError(f"{name} {value!r} is not one of {allowed}")
        names = [d.name for d in self.domains]
        if len(set(names)) != len(names):
            raise ConfigError(f"domain names repeat: {names}")
        if self.domain is not None and names and self.domain not in names:
            raise ConfigError(f"domain {self.domain!r} is not one of the model's domains {names}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def domain_info(self, name: str) -> DomainInfo:
        for d in self.domains:
            if d.name == name:
                return d
        known = [d.name for d in self.domains] or "none: this is a single-domain model"
        raise ConfigError(f"unknown domain {name!r}; the model's domains are {known}")

    def for_domain(self, name: str) -> ModelMetadata:
        """The metadata of the single-head model that predicts ``name``'s classes."""
        info = self.domain_info(name)
        return replace(self, classes=info.classes, palette=info.palette, domain=name)

    def replace(self, **changes: Any) -> ModelMetadata:
        return replace(self, **changes)

    # --- serialization -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema_version"] = SCHEMA_VERSION
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        data = dict(data)
        version = data.pop("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"metadata schema version {version} is newer than this edgeseg understands "
                f"({SCHEMA_VERSION}); upgrade edgeseg (`pip install -U edgeseg`)"
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            data.setdefault("extra", {})
            data["extra"] = {**data["extra"], "unknown_fields": unknown}
            for key in unknown:
                data.pop(key)
        if "model" not in data or "classes" not in data:
            raise ConfigError("metadata lacks 'model' or 'classes'; was this file written by edgeseg?")
        data["domains"] = tuple(
            DomainInfo(
                name=d["name"],
                classes=tuple(d["classes"]),
                palette=tuple(tuple(c) for c in d["palette"]),
            )
            for d in data.get("domains", ())
        )
        for key in ("classes", "palette", "mean", "std", "input_size"):
            if key in data:
                data[key] = tuple(tuple(v) if isinstance(v, list) else v for v in data[key])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"edgeseg metadata is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("edgeseg metadata must be a JSON object")
        return cls.from_dict(data)
