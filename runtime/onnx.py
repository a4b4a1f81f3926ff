"""ONNX Runtime backend (``.onnx``). ``InferenceSession.run`` is thread-safe: one session serves
every thread. ``threads`` sets intra-op threads; inter-op parallelism stays at 1 (one graph).

Outputs of a fixed shape are written into buffers that each thread allocates once and reuses
(I/O binding): ONNX Runtime would otherwise hand back freshly allocated memory every call, and
reading 19 x 512 x 512 logits from it for the argmax costs ~0.5 ms more (2.5 vs 2.0 ms, LR-ASPP-S,
1 thread) than reading the same values from a reused buffer. The graph call itself takes as long.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from edgeseg.metadata import METADATA_KEY
from edgeseg.runtime.backend import (
    Backend, TensorInfo, import_backend_library, refuse_precision, require_graph_io, undecodable_metadata,
)
from edgeseg.runtime.errors import ModelFileError

# ONNX Runtime reports element types as strings.
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


# Short device names -> ONNX Runtime execution providers (``--device cuda``).
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "dml": "DmlExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "cann": "CANNExecutionProvider",
    "vitisai": "VitisAIExecutionProvider",
    "acl": "ACLExecutionProvider",
    "armnn": "ArmNNExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
}
# What ``auto`` tries, best first. CUDA before TensorRT: TensorRT builds an engine for minutes on
# a first load. Providers that run on the CPU anyway (OpenVINO's default, XNNPACK) are not picked.
AUTO_ORDER = ("cuda", "tensorrt", "rocm", "migraphx", "dml", "coreml", "qnn", "nnapi", "cann", "vitisai")
# Providers with a device id option (``cuda:1``).
_DEVICE_ID = {"CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider",
              "MIGraphXExecutionProvider", "DmlExecutionProvider"}
# Listed by every build but not a local processor.
_NOT_LOCAL = {"AzureExecutionProvider"}


def _short(provider: str) -> str:
    return next((k for k, v in PROVIDERS.items() if v == provider), provider)


def _providers(ort, device: str | None) -> tuple[list, str]:
    """(providers for InferenceSession, the note on the choice) for ``load(device=...)``."""
    from edgeseg.runtime.devices import AUTO, auto_note, parse_device, unavailable_device, unknown_device

    request = parse_device(device)
    offered = [p for p in ort.get_available_providers() if p not in _NOT_LOCAL]
    names = [_short(p) for p in offered]
    if request is None or request.is_cpu:
        return ["CPUExecutionProvider"], ""
    if request.name == AUTO:
        for short in AUTO_ORDER:
            if PROVIDERS[short] in offered:
                return [PROVIDERS[short], "CPUExecutionProvider"], auto_note(PROVIDERS[short], names)
        return ["CPUExecutionProvider"], auto_note("cpu", names)
    by_full_name = {v.lower(): v for v in PROVIDERS.values()} | {p.lower(): p for p in offered}
    provider = PROVIDERS.get(request.name) or by_full_name.get(request.name)
    if provider is None:
        raise unknown_device("ONNX Runtime", request, ["auto", *PROVIDERS], names)
    if provider not in offered:
        raise unavailable_device(
            "ONNX Runtime", request, names,
            f"this onnxruntime build has no {provider}; GPU and NPU providers come in other builds "
            "such as onnxruntime-gpu, onnxruntime-qnn, onnxruntime-openvino",
        )
    options = dict(request.options)
    if request.index is not None:
        if provider not in _DEVICE_ID or not request.index.isdigit():
            raise unknown_device("ONNX Runtime", request, ["auto", *PROVIDERS], names)
        options["device_id"] = request.index
    return [(provider, options), "CPUExecutionProvider"], ""


def _provider_name(entry) -> str:
    return entry[0] if isinstance(entry, tuple) else entry


def _info(node) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return TensorInfo(node.name, shape, np.dtype(_ORT_DTYPES.get(node.type, np.float32)))


# Spin-waiting of ONNX Runtime's intra-op threads between calls (its default: on). Off by default
# here, chosen by measurement (benchmarks/results/ort_spinning.md): with 2 threads the spinning
# workers keep a core busy after each call, so the caller's own work between calls (the next
# frame's decode and resize, another model) runs slower, while the model call itself is about as
# fast without it. ``load(path, spinning=True)`` turns it back on (a dedicated inference core).
SPINNING = False

# ONNX Runtime's graph transformer that quantizes the float weights of a Conv/Gemm whose input and
# output are already int8 (QDQ). edgeseg's int8 files leave some convs float on purpose, where
# ORT's int8 kernel is slower than its float one (quantization/onnx.py: slow_int8_convs); with
# the transformer on, ORT quantized them back: Mobile-Former-151M int8 at 128x256, 1 thread,
# 45.9 ms of kernel time, 34.5 ms without it (its channel-expanding depthwise convs).
REQUANTIZER = "WeightBiasQuantization"


def keep_float_convs(options) -> None:
    """Session options that leave an edgeseg int8 file's float convs float (REQUANTIZER off)."""
    options.add_session_config_entry("optimization.disable_specified_optimizers", REQUANTIZER)


def written_int8_by_edgeseg(session) -> bool:
    """Whether the session's file is an edgeseg int8 file (its metadata says so; read leniently)."""
    import json

    try:
        value = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        return bool(value) and json.loads(value).get("precision") == "int8"
    except (UnicodeDecodeError, ValueError, AttributeError):
        return False


class OnnxBackend(Backend):
    name = "onnxruntime"
    thread_safe = True
    threads_note = "intra-op threads of the ONNX Runtime session"

    def __init__(self, path: Path, *, threads: int | None = None, precision: str | None = None,
                 device: str | None = None, spinning: bool | None = None):
        refuse_precision(self.name, precision)
        ort = import_backend_library("onnxruntime", "onnx", "ONNX")
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        #: Whether the intra-op threads spin-wait between calls (load(spinning=...)).
        self.spinning = SPINNING if spinning is None else spinning
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if self.spinning else "0")
        options.log_severity_level = 3  # errors only: warnings about unused initializers are noise
        providers, self.device_note = _providers(ort, device)
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
            #: An edgeseg int8 file: opened again with its float convs kept float (see REQUANTIZER).
            self._int8 = written_int8_by_edgeseg(self._session)
            if self._int8:
                keep_float_convs(options)
                self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own types for every parse/validation failure
            if len(providers) > 1:
                from edgeseg.runtime.devices import parse_device, unavailable_device

                raise unavailable_device(
                    "ONNX Runtime", parse_device(device or "auto"), OnnxBackend.available_devices(),
                    f"{_provider_name(providers[0])} failed to start: {type(exc).__name__}: {exc}",
                ) from exc
            raise ModelFileError(
                f"{path} could not be loaded by ONNX Runtime ({type(exc).__name__}: {exc}). The file "
                "is truncated, corrupted or not an ONNX model: convert or copy it again"
            ) from exc
        wanted = _provider_name(providers[0])
        running = self._session.get_providers()
        if wanted not in running:
            # ONNX Runtime falls back to the CPU with a log line when a provider's libraries
            # (CUDA, cuDNN, TensorRT) are missing: say so instead of timing the CPU as the GPU.
            from edgeseg.runtime.devices import parse_device, unavailable_device

            raise unavailable_device(
                "ONNX Runtime", parse_device(device or "auto"), [_short(p) for p in running],
                f"{wanted} is in this build but did not start (missing driver or libraries?)",
            )
        self.device = wanted
        self._providers = providers
        self.path = path
        inputs = self._session.get_inputs()
        require_graph_io(path, len(inputs), len(self._session.get_outputs()))
        self.input_count = len(inputs)
        self.input = _info(inputs[0])
        self.outputs = {o.name: _info(o) for o in self._session.get_outputs()}
        known = set(_ORT_DTYPES)
        self._bind = all(min(o.shape, default=0) > 0 for o in self.outputs.values()) and all(
            o.type in known for o in self._session.get_outputs()
        )
        self._local = threading.local()
        if wanted != "CPUExecutionProvider":
            fallback = self._fallback_note()
            self.device_note = f"{self.device_note}; {fallback}" if self.device_note else fallback

    def placement(self) -> dict[str, list[str]]:
        """Execution provider -> the op types of the nodes it ran, from one profiled run of a zero
        image (ONNX Runtime's profile records each node's provider). A separate session: the
        session that serves ``predict`` is not profiled."""
        import json
        import os
        import tempfile

        ort = import_backend_library("onnxruntime", "onnx", "ONNX")
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.log_severity_level = 3
        if self._int8:
            keep_float_convs(options)
        with tempfile.TemporaryDirectory() as folder:
            options.profile_file_prefix = os.path.join(folder, "placement")
            session = ort.InferenceSession(str(self.path), sess_options=options, providers=self._providers)
            shape = [d if d > 0 else 1 for d in self.input.shape]
            session.run(None, {self.input.name: np.zeros(shape, self.input.dtype)})
            events = json.loads(Path(session.end_profiling()).read_text())
        placed: dict[str, list[str]] = {}
        for event in events:
            args = event.get("args", {})
            if event.get("cat") == "Node" and "provider" in args:
                placed.setdefault(args["provider"], []).append(args.get("op_name", "?"))
        return placed

    def _fallback_note(self) -> str:
        """Which nodes the chosen provider left to the CPU provider (from :meth:`placement`)."""
        try:
            placed = self.placement()
        except Exception as exc:  # noqa: BLE001 (a note must not fail the load)
            return f"ops it does not take run on CPUExecutionProvider (placement unknown: {type(exc).__name__})"
        on_cpu = placed.get("CPUExecutionProvider", [])
        total = sum(map(len, placed.values()))
        if not on_cpu:
            return f"all {total} nodes on {self.device}"
        kinds = sorted(set(on_cpu))
        return (f"{len(on_cpu)} of {total} nodes fell back to CPUExecutionProvider: {', '.join(kinds[:10])}"
                + (", ..." if len(kinds) > 10 else ""))

    @classmethod
    def available_devices(cls) -> list[str]:
        ort = import_backend_library("onnxruntime", "onnx", "ONNX")
        return [_short(p) for p in ort.get_available_providers() if p not in _NOT_LOCAL]

    def metadata_json(self) -> str | None:
        try:  # pybind decodes every entry of the map as UTF-8
            return self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        except UnicodeDecodeError as exc:
            raise undecodable_metadata(self.path, exc) from exc

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        if not self._bind:  # an output of dynamic shape: ONNX Runtime allocates it
            values = self._session.run(None, {self.input.name: tensor})
            return dict(zip(self.outputs, values))
        binding, buffers = self._binding()
        tensor = np.ascontiguousarray(tensor)  # bound by address: kept alive until the run ends
        binding.bind_cpu_input(self.input.name, tensor)
        self._session.run_with_iobinding(binding)
        return dict(buffers)  # this thread's buffers: valid until its next run

    def _binding(self):
        """This thread's I/O binding, with every output bound to a buffer allocated once."""
        state = getattr(self._local, "state", None)
        if state is None:
            binding = self._session.io_binding()
            buffers = {}
            for name, info in self.outputs.items():
                buffers[name] = out = np.empty(info.shape, info.dtype)
                binding.bind_output(name, "cpu", 0, out.dtype, out.shape, out.ctypes.data)
            # The session first: a tuple releases its items last to first, so the native binding
            # (which points into the session) is destroyed while the session still lives. ORT's
            # IOBinding object releases its own session reference before its native binding.
            state = self._local.state = (self._session, binding, buffers)
        return state[1], state[2]
