"""The format table: one :class:`Format` row per model file format, the one place that knows
its suffixes, its bytes, where it runs, which backend runs it and which modules write it.

Every other table is read from this one: the runtime's suffix -> backend choice
(``edgeseg.runtime.loader``), the converters' targets (``edgeseg.converters.TARGETS``), QAT's
targets, the files ``edgeseg validate`` sizes, the library versions a report records, the CLI's
help. Adding a target is a converter module (``export``), a backend module (a
:class:`~edgeseg.runtime.backend.Backend`), optionally an int8 module, and one row here
(:func:`register` adds one at run time). Torch-free: pure data, modules named as strings and
imported only when a file needs them.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from edgeseg.errors import ConfigError


def _tflite_magic(head: bytes) -> bool:
    return head[4:8] == b"TFL3"  # the FlatBuffer file identifier


def _openvino_magic(head: bytes) -> bool:
    return head.lstrip().startswith((b"<?xml", b"<net"))


def _safetensors_magic(head: bytes) -> bool:
    # An 8-byte little-endian header length (sane size), then the JSON header's "{".
    return len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000


# sys.platform prefixes as people name them.
_PLATFORMS = {"darwin": "macOS", "linux": "Linux", "win32": "Windows"}


@dataclass(frozen=True)
class Format:
    """One file format: how to recognize it, what runs it, what writes it."""

    name: str  # the --target value (and the key of FORMATS)
    title: str  # how messages name it: "ONNX", "OpenVINO IR"
    suffix: str  # the suffix edgeseg writes and the runtime recognizes
    backend: str  # "module:Class" of the runtime Backend, imported when a file needs it
    backend_name: str  # its name in load(backend=...), errors and logs
    runtime_extra: str  # the pip extra that installs the inference library
    # Distributions whose versions decide its numbers (reports): inference library, converters.
    libraries: tuple[str, ...] = ()
    companions: tuple[str, ...] = ()  # suffixes of files that belong with it (OpenVINO .bin)
    other_suffixes: tuple[str, ...] = ()  # also read by the runtime, never written (.mlmodel)
    aliases: tuple[str, ...] = ()  # other names people use for the backend ("ort")
    is_dir: bool = False  # the "file" is a directory (CoreML .mlpackage)
    # The file records the checksum of its own bytes (edgeseg.integrity), checked at load before
    # the library parses it: converted single files, not CoreML packages or checkpoints.
    checksummed: bool = True
    # The first 16 bytes -> whether they are this format's, with certainty; None where the format
    # has no magic number (ONNX and CoreML protobufs).
    magic: Callable[[bytes], bool] | None = None
    runs_on: tuple[str, ...] = ()  # sys.platform prefixes where the backend runs; () = everywhere
    # load(precision=...) of the conversion's check, for a backend that picks a compute precision
    # at load time (OpenVINO: fp32, what every file is held to against PyTorch); None: as stored.
    check_precision: str | None = None

    # --- writing (formats without a converter are only read) ------------------------------
    converter: str | None = None  # module with export(graph, files, options)
    converter_extra: str | None = None  # the pip extra that installs the converter's libraries
    int8: str | None = None  # module with export(...) that writes int8, and check_options(quant)
    # The edgeseg.quantization.QuantOptions fields only this target's int8 module reads (its
    # flags: --io for TFLite); set on another target, they are refused.
    int8_options: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()  # values of --precision the target converts
    qat_scheme: str | None = None  # the fake quantization `edgeseg qat` trains under ("pt2e", "coreml")
    way_out: str = "try another target"  # what to try when the target refuses an operator
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

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The files one conversion writes: the main file's suffix first, then its companions."""
        return (self.suffix, *self.companions)

    @property
    def read_suffixes(self) -> tuple[str, ...]:
        """Every suffix the runtime opens with this format's backend."""
        return (self.suffix, *self.other_suffixes)

    def runs_here(self) -> bool:
        return not self.runs_on or sys.platform.startswith(self.runs_on)

    def where(self) -> str:
        """Where the backend runs, for messages: "macOS", or "anywhere"."""
        return " or ".join(_PLATFORMS.get(p, p) for p in self.runs_on) or "anywhere"

    def files(self, path) -> tuple:
        """``path`` (the main file) and its companions beside it."""
        return tuple(path.with_suffix(s) for s in self.suffixes)


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add a row. A name, suffix or backend name another row has already is refused."""
    for other in FORMATS.values():
        clash = (
            "name" if fmt.name == other.name
            else "suffix" if set(fmt.read_suffixes) & set(other.read_suffixes)
            else "backend name" if {fmt.backend_name, *fmt.aliases} & {other.backend_name, *other.aliases}
            else None
        )
        if clash:
            raise ConfigError(f"format {fmt.name!r}: its {clash} is already format {other.name!r}'s")
    FORMATS[fmt.name] = fmt
    return fmt


_PRECISIONS = ("fp32", "fp16", "int8")
for _row in (
    Format("onnx", "ONNX", ".onnx", "edgeseg.runtime.onnx:OnnxBackend", "onnxruntime", "runtime-onnx",
           libraries=("onnxruntime", "onnx"), aliases=("onnx", "ort"),
           converter="edgeseg.converters.onnx", converter_extra="onnx", int8="edgeseg.quantization.onnx",
           precisions=_PRECISIONS, qat_scheme="pt2e",
           way_out="try --target openvino or tflite, or replace the layer with standard ops"),
    Format("tflite", "TFLite", ".tflite", "edgeseg.runtime.tflite:TfliteBackend", "litert", "runtime-tflite",
           libraries=("ai-edge-litert", "litert-torch"), aliases=("tflite",), magic=_tflite_magic,
           converter="edgeseg.converters.tflite", converter_extra="tflite", int8="edgeseg.quantization.tflite",
           int8_options=("io",), precisions=_PRECISIONS, qat_scheme="pt2e",
           way_out="try --target onnx or openvino, or replace the layer with ops LiteRT supports "
           "(see https://ai.google.dev/edge/litert/models/ops_compatibility)",
           channels_last=True, default_layout="nhwc", default_preprocess=True),
    Format("coreml", "CoreML", ".mlpackage", "edgeseg.runtime.coreml:CoremlBackend", "coreml", "coreml",
           libraries=("coremltools",), other_suffixes=(".mlmodel",), is_dir=True, checksummed=False,
           runs_on=("darwin",),
           converter="edgeseg.converters.coreml", converter_extra="coreml", int8="edgeseg.quantization.coreml",
           int8_options=("coreml_mode",), precisions=_PRECISIONS, qat_scheme="coreml",
           way_out="try --target onnx, or replace the layer with ops coremltools converts",
           pixel_dtype="float32", mask_dtype="int32", default_preprocess=True),
    Format("openvino", "OpenVINO IR", ".xml", "edgeseg.runtime.openvino:OpenVinoBackend", "openvino",
           "runtime-openvino", libraries=("openvino", "nncf"), companions=(".bin",), magic=_openvino_magic,
           check_precision="fp32",
           converter="edgeseg.converters.openvino", converter_extra="openvino",
           int8="edgeseg.quantization.openvino", int8_options=("accuracy_control",), precisions=_PRECISIONS,
           qat_scheme="pt2e",
           way_out="try --target onnx, or replace the layer with ops OpenVINO's PyTorch frontend supports"),
    # An edgeseg checkpoint: the PyTorch reference converted files are compared with.
    Format("checkpoint", "safetensors", ".safetensors", "edgeseg.runtime.torch_ref:TorchBackend", "torch", "torch",
           libraries=("torch",), aliases=("pytorch",), checksummed=False, magic=_safetensors_magic),
):
    register(_row)
del _row


# --- lookups -----------------------------------------------------------------------------------
def by_suffix(suffix: str) -> Format | None:
    """The format the runtime opens a file of ``suffix`` (any case) with, or None."""
    suffix = suffix.lower()
    return next((f for f in FORMATS.values() if suffix in f.read_suffixes), None)


def by_backend(name: str) -> Format | None:
    """The format of backend ``name`` or one of its aliases, or None."""
    return next((f for f in FORMATS.values() if name == f.backend_name), None) or next(
        (f for f in FORMATS.values() if name in f.aliases), None)


def sniff(head: bytes) -> Format | None:
    """The format a file's first bytes identify with certainty, or None."""
    return next((f for f in FORMATS.values() if f.magic is not None and f.magic(head)), None)


def targets() -> dict[str, Format]:
    """The formats edgeseg converts to (those with a converter module), by name."""
    return {name: f for name, f in FORMATS.items() if f.converter is not None}


def target_names(conjunction: str = "or") -> str:
    """``"onnx, tflite, coreml or openvino"``: the targets as CLI help names them."""
    names = list(targets())
    return ", ".join(names[:-1]) + f" {conjunction} " + names[-1] if len(names) > 1 else "".join(names)


class TableView(Mapping):
    """A read-only table derived from :data:`FORMATS` at each access, so a row added later (a
    plug-in, a test) appears in every derived table at once."""

    def __init__(self, build: Callable[[], dict]) -> None:
        self._build = build

    def __getitem__(self, key):
        return self._build()[key]

    def __iter__(self) -> Iterator:
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return repr(self._build())
