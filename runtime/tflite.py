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
    return _interpreter_module().Interpreter


def _interpreter_module():
    for module in _INTERPRETER_MODULES:
        try:
            return importlib.import_module(module)
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


# The GPU delegate's library as Linux and Android builds name it (not in the pip wheel; built
# from the LiteRT sources or shipped by a device's vendor image).
GPU_DELEGATE_LIBRARIES = ("libtensorflowlite_gpu_delegate.so", "libtensorflowlite_gpu_gl.so")


def _load_delegate(module, library: str, options: dict | None = None):
    """``load_delegate``, with the library opened by ctypes first: a library that does not open
    gives its reason (OSError) without LiteRT's half-made Delegate object printing a traceback."""
    import ctypes

    ctypes.CDLL(library)
    return module.load_delegate(library, options)


def _gpu_delegate(module):
    """The GPU delegate, or the reason it cannot load."""
    errors = []
    for library in GPU_DELEGATE_LIBRARIES:
        try:
            return _load_delegate(module, library), ""
        except (ValueError, OSError, RuntimeError) as exc:
            errors.append(str(exc))
    return None, "no GPU delegate library loads: " + "; ".join(errors)


def _delegates(module, device: str | None) -> tuple[list, str, str]:
    """(delegates for the interpreter, the device name, the note on the choice)."""
    from edgeseg.runtime.devices import AUTO, auto_note, parse_device, unavailable_device, unknown_device

    request = parse_device(device)
    if request is None or request.is_cpu:
        return [], "cpu (XNNPACK)", ""
    if request.name == AUTO:
        delegate, _ = _gpu_delegate(module)
        if delegate is not None:
            return [delegate], "gpu delegate", auto_note("the GPU delegate", ["cpu", "gpu"])
        return [], "cpu (XNNPACK)", auto_note("cpu", ["cpu"])
    if request.name == "gpu" and request.index is None:
        delegate, why = _gpu_delegate(module)
        if delegate is None:
            raise unavailable_device(
                "LiteRT", request, TfliteBackend.available_devices(),
                f"{why}; give the library by path with delegate:/path/libtensorflowlite_gpu_delegate.so",
            )
        return [delegate], "gpu delegate", ""
    if request.name == "delegate":
        try:
            delegate = _load_delegate(module, request.index, request.options)
        except (ValueError, OSError, RuntimeError) as exc:
            raise unavailable_device("LiteRT", request, TfliteBackend.available_devices(),
                                     f"the delegate library did not load: {exc}") from exc
        return [delegate], f"delegate {Path(request.index).name}", ""
    raise unknown_device("LiteRT", request, ["cpu", "gpu", "auto", "delegate:/path/lib.so"],
                         TfliteBackend.available_devices())


def _cpu_ops(interpreter) -> list[str]:
    """Ops a delegate left to the CPU kernels: the execution plan lists what a delegate took as
    DELEGATE nodes and every other op by its own name."""
    try:
        ops = interpreter._get_ops_details()
    except Exception:  # a private API: tell nothing rather than fail the load
        return []
    return [op.get("op_name", "?") for op in ops if "DELEGATE" not in str(op.get("op_name", "")).upper()]


class TfliteBackend(Backend):
    name = "litert"
    thread_safe = False
    threads_note = "num_threads of the LiteRT interpreter (XNNPACK)"

    def __init__(self, path: Path, *, threads: int | None = None, precision: str | None = None,
                 device: str | None = None):
        refuse_precision(self.name, precision)
        module = _interpreter_module()
        delegates, self.device, self.device_note = _delegates(module, device)
        self.path = path
        self._bytes = path.read_bytes()
        try:
            self._interpreter = module.Interpreter(
                model_content=self._bytes, num_threads=threads, experimental_delegates=delegates or None
            )
            self._interpreter.allocate_tensors()
            # Reading tensor names decodes strings from the file: damage surfaces here too.
            self._read_tensors()
        except Exception as exc:
            raise ModelFileError(
                f"{path} could not be loaded by LiteRT ({type(exc).__name__}: {exc}). The file is "
                "truncated, corrupted or not a TFLite model: convert or copy it again"
            ) from exc
        if delegates:
            self._note_cpu_ops()

    @classmethod
    def available_devices(cls) -> list[str]:
        delegate, _ = _gpu_delegate(_interpreter_module())
        return ["cpu", *(["gpu"] if delegate is not None else []), "delegate:/path/lib.so"]

    def _note_cpu_ops(self) -> None:
        cpu_ops = _cpu_ops(self._interpreter)
        if cpu_ops:
            names = sorted(set(cpu_ops))
            note = f"{len(cpu_ops)} op(s) not delegated, run on the CPU: {', '.join(names[:8])}"
            self.device_note = f"{self.device_note}; {note}" if self.device_note else note

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
