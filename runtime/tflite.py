"""LiteRT / TensorFlow Lite backend (``.tflite``), on ``ai_edge_litert`` or, where that is what
the device has, ``tflite_runtime``.

An interpreter keeps its tensors between ``set_tensor``/``invoke``/``get_tensor``, so it is NOT
thread-safe: the session serializes calls to one interpreter with a lock. For parallel throughput
load one session per thread. ``threads`` is the interpreter's ``num_threads`` (XNNPACK included).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from edgeseg.metadata import METADATA_KEY
from edgeseg.runtime.backend import Backend, TensorInfo, refuse_precision
from edgeseg.runtime.errors import BackendUnavailableError, ModelFileError

# Where an Interpreter class can come from, preferred first.
_INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


def _interpreter_class():
    for module in _INTERPRETER_MODULES:
        try:
            return importlib.import_module(module).Interpreter
        except ImportError:
            continue
    raise BackendUnavailableError(
        "running TFLite/LiteRT files needs ai-edge-litert (or tflite-runtime), neither is installed; "
        'install it with `pip install "edgeseg[runtime-tflite]"`'
    )


def _info(name: str, detail: dict) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    dtype = np.dtype(detail["dtype"])
    quantized = dtype.kind in "iu" and scale > 0
    return TensorInfo(
        name=name,
        shape=tuple(int(d) for d in detail.get("shape_signature", detail["shape"])),
        dtype=dtype,
        scale=float(scale) if quantized else None,
        zero_point=int(zero_point) if quantized else 0,
    )


class TfliteBackend(Backend):
    name = "litert"
    thread_safe = False
    threads_note = "num_threads of the LiteRT interpreter (XNNPACK)"

    def __init__(self, path: Path, *, threads: int | None = None, precision: str | None = None):
        refuse_precision(self.name, precision)
        interpreter_class = _interpreter_class()
        self.path = path
        self._bytes = path.read_bytes()
        try:
            self._interpreter = interpreter_class(model_content=self._bytes, num_threads=threads)
            self._interpreter.allocate_tensors()
            # Reading tensor names decodes strings from the file: damage surfaces here too.
            self._read_tensors()
        except Exception as exc:
            raise ModelFileError(
                f"{path} could not be loaded by LiteRT ({type(exc).__name__}: {exc}). The file is "
                "truncated, corrupted or not a TFLite model: convert or copy it again"
            ) from exc

    def _read_tensors(self) -> None:
        inputs = self._interpreter.get_input_details()
        self.input_count = len(inputs)
        self._input_index = inputs[0]["index"]
        self.input = _info(inputs[0]["name"], inputs[0])
        names = self._signature_output_names()
        self._output_index: dict[str, int] = {}
        self.outputs = {}
        for detail in self._interpreter.get_output_details():
            name = names.get(detail["index"], detail["name"])
            self._output_index[name] = detail["index"]
            self.outputs[name] = _info(name, detail)

    def _signature_output_names(self) -> dict[int, str]:
        """Tensor index -> the output's signature name ("logits", "mask_city"), when there is one
        signature; tensor names in a converted file are mangled (``serving_default_..._0``)."""
        signatures = self._interpreter._get_full_signature_list() or {}
        if len(signatures) != 1:
            return {}
        (signature,) = signatures.values()
        return {index: name for name, index in signature.get("outputs", {}).items()}

    def metadata_json(self) -> str | None:
        from edgeseg.runtime.tflite_metadata import read_tflite_metadata

        try:
            entries = read_tflite_metadata(self._bytes)
        except Exception as exc:
            raise ModelFileError(
                f"{self.path}: the TFLite metadata table is unreadable ({exc}); convert the model again"
            ) from exc
        value = entries.get(METADATA_KEY)
        if value is None:
            return None
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelFileError(
                f"{self.path}: the edgeseg metadata is not UTF-8 text ({exc}); the file is "
                "corrupted: convert the model again"
            ) from exc

    def input_view(self) -> np.ndarray:
        return self._interpreter.tensor(self._input_index)()

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        self._interpreter.set_tensor(self._input_index, tensor)
        self._interpreter.invoke()
        return {name: self._interpreter.get_tensor(i) for name, i in self._output_index.items()}

    def run_borrowed(self, tensor: np.ndarray | None) -> dict[str, np.ndarray]:
        # Views of the interpreter's buffers: LiteRT refuses the next invoke while one is alive,
        # so the session drops them before it releases the interpreter.
        if tensor is not None:
            self._interpreter.set_tensor(self._input_index, tensor)
        self._interpreter.invoke()
        return {name: self._interpreter.tensor(i)() for name, i in self._output_index.items()}
