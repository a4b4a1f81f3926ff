"""What every backend offers the session: its graph's tensors, its metadata, and ``run``.

A backend knows nothing about images: the session turns an image into the input tensor and the
outputs into a mask with one code path (``edgeseg.runtime.processing``) for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output as the backend reports it."""

    name: str
    shape: tuple[int, ...]  # -1 for a dimension the graph leaves dynamic
    dtype: np.dtype
    # Affine quantization of an int8/uint8 tensor, real = scale * (q - zero_point); None if float.
    scale: float | None = None
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale > 0 and self.dtype.kind in "iu"


class Backend(ABC):
    """One loaded model file in one inference library."""

    #: Short name used in errors, logs and ``load(backend=...)``.
    name: str
    #: Whether ``run`` may be called from several threads at once. Where False, the session
    #: serializes calls with a lock (the library's interpreter keeps per-call state).
    thread_safe: bool
    #: How the library can use ``threads`` (said in the docs and in ``seg.describe()``).
    threads_note: str = ""
    #: What actually runs the graph, in the library's own words (``CPUExecutionProvider``,
    #: ``GPU.0``, ``XNNPACK``), and what the session should say about it (what ``auto`` picked,
    #: ops the accelerator left to the CPU where the library tells).
    device: str = "cpu"
    device_note: str = ""
    #: The compute precision the library was told to run the file at (``fp32``/``bf16``/``fp16``)
    #: where it picks one at load time (OpenVINO), and why; None: the file runs as stored.
    inference_precision: str | None = None
    precision_note: str = ""

    path: Path
    input: TensorInfo
    #: Graph inputs in all; the edgeseg contract has exactly one ("image").
    input_count: int = 1
    outputs: dict[str, TensorInfo]

    @abstractmethod
    def metadata_json(self) -> str | None:
        """The edgeseg metadata JSON embedded in the file, or None if the file has none."""

    @abstractmethod
    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Run the graph on one ready input tensor; return every output by name.

        The arrays stay valid until the same thread's next ``run``: ONNX Runtime and OpenVINO
        write into buffers each thread owns and reuses (I/O binding, the thread's infer request);
        the other libraries return fresh arrays. Copy what must outlive that call."""

    def run_borrowed(self, tensor: np.ndarray | None) -> dict[str, np.ndarray]:
        """The call ``SegmentationSession.predict`` makes (after :meth:`input_view`); by default
        :meth:`run`. A backend that is not thread-safe may return views of the library's own
        output buffers, valid only until the next call: the session reads them under its lock
        and keeps nothing, so a ``run`` that copies (LiteRT's ``get_tensor``: 20 MB for
        19 x 512 x 512 logits) skips the copy here. ``tensor=None``: the input was written
        through :meth:`input_view`."""
        if tensor is None:
            raise NotImplementedError(f"the {self.name} backend has no input view to run from")
        return self.run(tensor)

    def input_view(self) -> np.ndarray | None:
        """A writable view of the library's own input buffer, or None (the default: the session
        then passes the tensor to :meth:`run_borrowed`).

        Only for backends that are not thread-safe, under the session's lock: the session
        writes the preprocessed image straight into it, drops the view, and calls
        ``run_borrowed(None)``, so the library does not copy the input (LiteRT's
        ``set_tensor``: 3 MB for a 512 x 512 float32 image)."""
        return None

    def declared_metadata(self) -> tuple[dict, str] | None:
        """For a file without edgeseg metadata: what the file's standard metadata declares (TFLite
        Metadata, OpenVINO Model API ``model_info``) as ModelMetadata fields, and where it was
        read; None where the format has none or the file carries none."""
        return None

    def output_activation(self, name: str) -> str | None:
        """The op that produces output ``name`` when it is an activation (``"sigmoid"``), so a
        single-channel output is known to be a probability; None where unknown."""
        return None

    def close(self) -> None:
        """Release native resources (optional)."""

    @classmethod
    def available_devices(cls) -> list[str]:
        """The ``device=`` names this install and machine can run (``cpu`` first)."""
        return ["cpu"]


def import_backend_library(module: str, format_name: str, what: str):
    """Import an inference library, or say which extra installs it (the runtime extra of the
    format table's row ``format_name``)."""
    import importlib

    from edgeseg.runtime.errors import BackendUnavailableError
    from edgeseg.runtime.formats import FORMATS

    extra = FORMATS[format_name].runtime_extra

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"running {what} files needs the {module!r} package, which is not installed ({exc}); "
            f'install it with `pip install "edgeseg[{extra}]"`'
        ) from exc


def refuse_precision(backend: str, precision: str | None) -> None:
    """Only OpenVINO picks an inference precision at load time; the others run the file as stored."""
    if precision is not None:
        from edgeseg.runtime.errors import ConfigError

        raise ConfigError(
            f"precision={precision!r}: the {backend} backend runs the file at the precision it was "
            "converted to; convert the model at that precision instead, or leave precision out"
        )


def require_graph_io(path: Path, inputs: int, outputs: int) -> None:
    """Refuse a graph without an input or an output before anything indexes them."""
    if inputs < 1 or outputs < 1:
        from edgeseg.runtime.errors import UnsupportedModelError

        raise UnsupportedModelError(
            f"{path}: the graph has {inputs} inputs and {outputs} outputs; an edgeseg file takes one "
            "image input and gives a mask or logits output. Convert the model with edgeseg convert"
        )


def undecodable_metadata(path: Path, exc: UnicodeDecodeError):
    """The error for metadata bytes that are not UTF-8 (a damaged or hand-edited file)."""
    from edgeseg.runtime.errors import ModelFileError

    return ModelFileError(
        f"{path}: its edgeseg metadata is not UTF-8 text ({exc}); the file was damaged or edited "
        "after conversion: convert or copy it again"
    )
