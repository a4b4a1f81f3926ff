"""Model metadata: what a converted file must carry so nobody retypes it on the device.

Torch-free on purpose: the converters write it and ``edgeseg.runtime`` reads it back.
Serialized as one JSON object under the key :data:`METADATA_KEY` in every target's metadata
slot (ONNX ``metadata_props``, the TFLite metadata buffer, CoreML user-defined metadata,
OpenVINO ``rt_info``) and in the header of every safetensors checkpoint.
"""

from __future__ import annotations

import colorsys
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edgeseg import __version__
from edgeseg.errors import ConfigError

METADATA_KEY = "edgeseg"
# The newest schema this edgeseg reads. A file records the oldest schema that reads it right:
# 1, unless it needs a later reader (2: ``output_stride`` > 1, low-resolution logits that a
# schema-1 reader would take for full-resolution ones), so older runtimes refuse only such files.
SCHEMA_VERSION = 2

# ImageNet statistics, for RGB pixels scaled to [0, 1]: what every zoo encoder expects.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

LAYOUTS = ("nchw", "nhwc")

# Resource bounds, checked before anything is allocated from a file's word: a class mask is at
# most uint16 (65536 class ids), and an input of 4096 x 4096 is a 200 MB float32 tensor already
# (its logits 64 MB per class); 8192 on one side allows panoramas of the same pixel count.
MAX_CLASSES = 65536
MAX_INPUT_SIDE = 8192
MAX_INPUT_PIXELS = 4096 * 4096
# Longest name (model, class, domain, output) a file may carry.
MAX_NAME_LENGTH = 256
RESIZE_MODES = ("stretch", "letterbox")
PRECISIONS = ("fp32", "fp16", "int8")
# Precisions a backend may compute a file at (``edgeseg.runtime.load(precision=...)``).
INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16")
MAX_OUTPUT_STRIDE = 64


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


def parse_size(text: str) -> tuple[int, int]:
    """An input size as people type it: ``"512x1024"`` -> ``(512, 1024)`` (height x width),
    ``"512"`` -> ``(512, 512)``. Here, below the CLI, so training configs read it too."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+))?\s*", text)
    if not match:
        raise ConfigError(f"size {text!r} is not HxW (for example 512x1024) or a single number")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    if height < 1 or width < 1:
        raise ConfigError(f"size {text!r} must be positive")
    return height, width


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
        inference_precisions: compute precisions (``fp32``/``bf16``/``fp16``) at which the
            converter ran the file and it passed the file's gate (OpenVINO: ``bf16`` where the
            CPU has it); the runtime picks the fastest of them. () = not recorded: fp32 only.
        output_stride: the graph's output is at 1/output_stride of ``input_size`` (the head's
            own resolution, no final upsample in the graph); the runtime upsamples it to the
            image. 1 = logits or mask at the input size.
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
    inference_precisions: tuple[str, ...] = ()
    output_stride: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.classes, (str, bytes)):
            raise ConfigError(
                f"classes {self.classes!r} is one string; give a list of class names, one per class"
            )
        if len(self.classes) > MAX_CLASSES:
            raise ConfigError(f"{len(self.classes)} classes is more than the {MAX_CLASSES} a mask can hold")
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
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise ConfigError(f"mean {self.mean} / std {self.std} hold NaN or infinity; give finite values")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std {self.std} has a value <= 0; std divides the pixels")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ConfigError(f"input_size {self.input_size} must be (height, width), both >= 1")
        h, w = self.input_size
        if max(h, w) > MAX_INPUT_SIDE or h * w > MAX_INPUT_PIXELS:
            raise ConfigError(
                f"input_size {h}x{w} is beyond what edgeseg runs (at most {MAX_INPUT_SIDE} on a side "
                f"and {MAX_INPUT_PIXELS} pixels); export the model at a smaller size"
            )
        for name, value, allowed in (
            ("layout", self.layout, LAYOUTS),
            ("resize", self.resize, RESIZE_MODES),
            ("precision", self.precision, PRECISIONS),
        ):
            if value not in allowed:
                raise ConfigError(f"{name} {value!r} is not one of {allowed}")
        object.__setattr__(self, "inference_precisions", tuple(self.inference_precisions))
        unknown = sorted(set(self.inference_precisions) - set(INFERENCE_PRECISIONS))
        if unknown:
            raise ConfigError(f"inference_precisions {unknown} are not among {INFERENCE_PRECISIONS}")
        stride = self.output_stride
        if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= MAX_OUTPUT_STRIDE:
            raise ConfigError(f"output_stride {stride!r} must be an integer from 1 to {MAX_OUTPUT_STRIDE}")
        if h % stride or w % stride:
            raise ConfigError(f"output_stride {stride} does not divide input_size {h}x{w}")
        names = [d.name for d in self.domains]
        if len(set(names)) != len(names):
            raise ConfigError(f"domain names repeat: {names}")
        if self.domain is not None and names and self.domain not in names:
            raise ConfigError(f"domain {self.domain!r} is not one of the model's domains {names}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the graph's output: ``input_size`` / ``output_stride``."""
        h, w = self.input_size
        return h // self.output_stride, w // self.output_stride

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
        data["schema_version"] = 2 if self.output_stride != 1 else 1
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        """Metadata from its JSON form, every field checked against :func:`check_metadata_dict`
        (a file's word is not trusted: a wrong type or value raises a ConfigError naming it)."""
        check_metadata_dict(data)
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
        for key in ("classes", "palette", "mean", "std", "input_size", "inference_precisions"):
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


# --- the schema of the JSON form ----------------------------------------------------------------
_SEQ = (list, tuple)  # JSON arrays; tuples where a dict comes from to_dict() in process
_FIX = "the file was edited or damaged: convert (or save) the model again"


def _field_error(field: str, problem: str) -> ConfigError:
    return ConfigError(f"metadata field {field!r} {problem}; {_FIX}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_name(field: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise _field_error(field, f"is {_shown(value)}, not a name of 1 to {MAX_NAME_LENGTH} characters")


def _check_names(field: str, value: Any) -> None:
    if not isinstance(value, _SEQ) or not value:
        raise _field_error(field, f"is {_shown(value)}, not a non-empty list of class names")
    if len(value) > MAX_CLASSES:
        raise _field_error(field, f"lists {len(value)} classes, more than the {MAX_CLASSES} a mask can hold")
    for i, name in enumerate(value):
        _check_name(f"{field}[{i}]", name)


def _check_palette(field: str, value: Any, count: int) -> None:
    if not isinstance(value, _SEQ) or len(value) != count:
        raise _field_error(field, f"is {_shown(value)}, not a list of {count} RGB colours (one per class)")
    for i, colour in enumerate(value):
        if not (isinstance(colour, _SEQ) and len(colour) == 3 and all(_is_int(c) and 0 <= c <= 255 for c in colour)):
            raise _field_error(f"{field}[{i}]", f"is {_shown(colour)}, not an RGB triple of integers in 0..255")


def _shown(value: Any, limit: int = 60) -> str:
    """A short description of a value for an error message (files may hold anything)."""
    text = repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"{type(value).__name__} {text}"


def check_metadata_dict(data: Any) -> None:
    """Check the JSON form of :class:`ModelMetadata` field by field: types, lengths, ranges,
    finiteness and the resource bounds (:data:`MAX_CLASSES`, :data:`MAX_INPUT_SIDE`,
    :data:`MAX_INPUT_PIXELS`), before anything is built from it. Raises a ConfigError naming the
    field; unknown fields are allowed (a newer minor writer) and kept in ``extra``."""
    if not isinstance(data, dict):
        raise ConfigError(f"edgeseg metadata is {_shown(data)}, not a JSON object; {_FIX}")
    for key in ("model", "classes"):
        if key not in data:
            raise ConfigError(
                f"metadata lacks {key!r}; was this file written by edgeseg? If so, {_FIX}"
            )
    version = data.get("schema_version", SCHEMA_VERSION)
    if not _is_int(version) or version < 1:
        raise _field_error("schema_version", f"is {_shown(version)}, not a positive integer")
    _check_name("model", data["model"])
    _check_names("classes", data["classes"])
    count = len(data["classes"])
    if "palette" in data and data["palette"] not in ([], (), None):
        _check_palette("palette", data["palette"], count)
    for key in ("mean", "std"):
        if key in data:
            value = data[key]
            if not (isinstance(value, _SEQ) and len(value) == 3 and all(_is_number(v) for v in value)):
                raise _field_error(key, f"is {_shown(value)}, not three numbers (one per RGB channel)")
            if not all(math.isfinite(v) for v in value):
                raise _field_error(key, f"holds NaN or infinity ({value})")
            if key == "std" and min(value) <= 0:
                raise _field_error(key, f"has a value <= 0 ({value}); std divides the pixels")
    if "input_size" in data:
        size = data["input_size"]
        if not (isinstance(size, _SEQ) and len(size) == 2 and all(_is_int(v) and v >= 1 for v in size)):
            raise _field_error("input_size", f"is {_shown(size)}, not [height, width] of positive integers")
        if max(size) > MAX_INPUT_SIDE or size[0] * size[1] > MAX_INPUT_PIXELS:
            raise _field_error(
                "input_size", f"is {size[0]}x{size[1]}, beyond what edgeseg runs (at most "
                f"{MAX_INPUT_SIDE} on a side and {MAX_INPUT_PIXELS} pixels)"
            )
    for key, allowed in (("layout", LAYOUTS), ("resize", RESIZE_MODES), ("precision", PRECISIONS)):
        if key in data and data[key] not in allowed:
            raise _field_error(key, f"is {_shown(data[key])}, not one of {allowed}")
    if "inference_precisions" in data:
        value = data["inference_precisions"]
        if not isinstance(value, _SEQ) or any(v not in INFERENCE_PRECISIONS for v in value):
            raise _field_error("inference_precisions", f"is {_shown(value)}, not a list of {INFERENCE_PRECISIONS}")
    if "output_stride" in data:
        value = data["output_stride"]
        if not _is_int(value) or not 1 <= value <= MAX_OUTPUT_STRIDE:
            raise _field_error("output_stride", f"is {_shown(value)}, not an integer from 1 to {MAX_OUTPUT_STRIDE}")
    for key in ("include_preprocess", "argmax"):
        if key in data and not isinstance(data[key], bool):
            raise _field_error(key, f"is {_shown(data[key])}, not true or false")
    for key in ("edgeseg_version", "checksum"):
        if key in data and data[key] is not None and (not isinstance(data[key], str) or len(data[key]) > 200):
            raise _field_error(key, f"is {_shown(data[key])}, not a short string")
    if "extra" in data and not isinstance(data["extra"], dict):
        raise _field_error("extra", f"is {_shown(data['extra'])}, not an object")
    names = []
    domains = data.get("domains", [])
    if not isinstance(domains, _SEQ) or len(domains) > 256:
        raise _field_error("domains", f"is {_shown(domains)}, not a list of at most 256 domains")
    for i, d in enumerate(domains):
        where = f"domains[{i}]"
        if not isinstance(d, dict) or not {"name", "classes"} <= set(d):
            raise _field_error(where, f"is {_shown(d)}, not an object with 'name', 'classes' and 'palette'")
        _check_name(f"{where}.name", d["name"])
        _check_names(f"{where}.classes", d["classes"])
        _check_palette(f"{where}.palette", d.get("palette"), len(d["classes"]))
        names.append(d["name"])
    _check_name("domain", data.get("domain"), optional=True)
    outputs = data.get("output_names", {})
    if not isinstance(outputs, dict):
        raise _field_error("output_names", f"is {_shown(outputs)}, not an object of domain -> output name")
    for domain, output in outputs.items():
        _check_name(f"output_names.{domain}", output)
        if domain not in names:
            raise _field_error(
                "output_names", f"names domain {domain!r}, which is not one of the domains {names}"
            )
