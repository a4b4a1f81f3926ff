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
from edgeseg.runtime.errors import BackendUnavailableError, MetadataError, ModelFileError
from edgeseg.runtime.formats import FORMATS

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
        f'install it with `pip install "edgeseg[{FORMATS["tflite"].runtime_extra}]"`'
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


# TFLite ops that end a graph in an activation, and ops an output may pass through after it.
_ACTIVATIONS = {"LOGISTIC": "sigmoid", "SOFTMAX": "softmax"}
_PASS_THROUGH = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "TRANSPOSE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"}


def standard_fields(standard, path: Path) -> dict:
    """ModelMetadata fields from a file's standard TFLite metadata. NormalizationOptions are in the
    input's pixel range (0..255); ModelMetadata's mean/std are for pixels scaled to [0, 1]."""
    fields: dict = {}
    if standard.name:
        fields["model"] = standard.name
    if standard.color_space == "GRAYSCALE":
        raise MetadataError(
            f"{path}: its TFLite metadata declares a GRAYSCALE image input (ImageProperties.color_space); "
            "edgeseg.runtime feeds RGB images. Convert the model for RGB input"
        )
    if standard.image_size is not None:
        fields["input_size"] = standard.image_size
    if standard.mean or standard.std:
        if len(standard.mean) not in (1, 3) or len(standard.std) not in (1, 3):
            raise MetadataError(
                f"{path}: its TFLite NormalizationOptions hold {len(standard.mean)} mean and "
                f"{len(standard.std)} std values; give 1 (every channel) or 3 (R, G, B) of each, or "
                "override them: load(path, metadata={'mean': (...), 'std': (...)}) for pixels in [0, 1]"
            )
        if any(s <= 0 for s in standard.std):
            raise MetadataError(f"{path}: its TFLite NormalizationOptions std {standard.std} has a value <= 0")
        fields["mean"] = tuple(m / 255.0 for m in np.broadcast_to(standard.mean, 3))
        fields["std"] = tuple(s / 255.0 for s in np.broadcast_to(standard.std, 3))
    if standard.outputs and standard.outputs[0].labels:
        fields["classes"] = standard.outputs[0].labels
    return fields


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
        from edgeseg.quiet import native_output_captured

        try:
            # LiteRT's C++ logger prints "INFO: Created TensorFlow Lite XNNPACK delegate" on the
            # process's stderr: held back when the CLI runs quiet (no Python switch reaches it).
            with native_output_captured():
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

    @classmethod
    def available_devices(cls) -> list[str]:
        delegate, _ = _gpu_delegate(_interpreter_module())
        return ["cpu", *(["gpu"] if delegate is not None else []), "delegate:/path/lib.so"]

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

    def declared_metadata(self) -> tuple[dict, str] | None:
        from edgeseg.runtime.tflite_metadata import TFLiteMetadataError, read_standard_metadata

        try:
            standard = read_standard_metadata(self._bytes)
        except TFLiteMetadataError as exc:
            raise MetadataError(f"{self.path}: {exc}") from exc
        if standard is None:
            return None
        return standard_fields(standard, self.path), "its standard TFLite metadata"

    def output_activation(self, name: str) -> str | None:
        # Walk back from the output through ops that do not change what the values mean.
        producers = {}
        for op in self._interpreter._get_ops_details():
            if op["op_name"] == "DELEGATE":  # XNNPACK's node stands for the graph's own ops
                continue
            for index in op["outputs"]:
                producers[int(index)] = op
        index = self._output_index.get(name)
        while index in producers:
            op = producers[index]
            if op["op_name"] in _ACTIVATIONS:
                return _ACTIVATIONS[op["op_name"]]
            if op["op_name"] not in _PASS_THROUGH or not len(op["inputs"]):
                return None
            index = int(op["inputs"][0])
        return None

    def input_view(self) -> np.ndarray:
        return self._interpreter.tensor(self._input_index)()

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        self._interpreter.set_tensor(self._input_index, tensor)
        self._invoke()
        return {name: self._interpreter.get_tensor(i) for name, i in self._output_index.items()}

    def _invoke(self) -> None:
        try:
            self._interpreter.invoke()
        except RuntimeError as exc:  # a damaged file can load and fail here ("tensor lacks data")
            raise ModelFileError(
                f"{self.path}: LiteRT could not run the graph ({exc}); the file is truncated or "
                "corrupted (or a delegate failed on it): convert or copy it again"
            ) from exc

    def run_borrowed(self, tensor: np.ndarray | None) -> dict[str, np.ndarray]:
        # Views of the interpreter's buffers: LiteRT refuses the next invoke while one is alive,
        # so the session drops them before it releases the interpreter.
        if tensor is not None:
            self._interpreter.set_tensor(self._input_index, tensor)
        self._invoke()
        return {name: self._interpreter.tensor(i)() for name, i in self._output_index.items()}
