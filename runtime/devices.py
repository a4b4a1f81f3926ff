"""Which processor a backend runs a file on: ``load(device=...)`` and the CLI's ``--device``.

One request string for every backend, read by the backend in use:

- ``None`` (the default) or ``cpu``: the CPU, as the converter verified the file.
- ``auto``: the best accelerator this install and machine offer, else the CPU; the session says
  which it picked (``seg.device``, ``seg.describe()``).
- ONNX Runtime execution providers by short name: ``cuda``, ``cuda:1`` (device id), ``tensorrt``,
  ``rocm``, ``migraphx``, ``dml``, ``coreml``, ``qnn``, ``nnapi``, ``openvino``, ``xnnpack``, ...
  or by full name (``CUDAExecutionProvider``). The provider comes first, the CPU provider after
  it runs the ops the provider does not take.
- OpenVINO devices as ``ov.Core().available_devices`` names them: ``cpu``, ``gpu``, ``gpu.1``,
  ``npu``.
- LiteRT delegates: ``gpu`` (the GPU delegate, where its library is installed) or an external
  delegate library by path, ``delegate:/opt/vendor/libvx_delegate.so`` (an NPU vendor's).
- Options after ``?``: ``cuda?gpu_mem_limit=2000000000``, ``delegate:/x/lib.so?backends=npu``
  (ONNX Runtime provider options, OpenVINO config, delegate options).

A name the backend does not know is a :class:`ConfigError`; a known one this machine lacks is a
:class:`DeviceUnavailableError`. Both list what the backend offers here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeseg.runtime.errors import ConfigError, DeviceUnavailableError

AUTO = "auto"
CPU = "cpu"


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed ``device=`` string."""

    text: str  # as given
    name: str  # lower case: "cpu", "auto", "cuda", "gpu", "delegate", "cudaexecutionprovider"
    index: str | None = None  # "cuda:1" -> "1", "GPU.1" -> "1", the delegate library's path
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_cpu(self) -> bool:
        return self.name == CPU and self.index is None


def parse_device(text: str | None) -> DeviceRequest | None:
    """``"cuda:1?gpu_mem_limit=1000"`` -> DeviceRequest("cuda", "1", {"gpu_mem_limit": "1000"})."""
    if text is None:
        return None
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"device={text!r}: give a device name such as cpu, auto, cuda or gpu")
    raw = text.strip()
    if raw.lower().startswith("delegate:"):
        path, _, query = raw[len("delegate:"):].partition("?")
        if not path:
            raise ConfigError(f"device {text!r} names no library; write delegate:/path/to/libdelegate.so")
        return DeviceRequest(text, "delegate", path, _options(query, text))
    spec, _, query = raw.partition("?")
    name, index = spec, None
    for sep in (":", "."):
        head, found, tail = spec.partition(sep)
        if found:
            name, index = head, tail
            break
    if index is not None and not index:
        raise ConfigError(f"device {text!r}: nothing after {spec[len(name)]!r}; write e.g. cuda:0 or GPU.1")
    return DeviceRequest(text, name.lower(), index, _options(query, text))


def _options(query: str, text: str) -> dict[str, str]:
    options = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"device {text!r}: option {item!r} is not KEY=VALUE")
        options[key] = value
    return options


def unknown_device(backend: str, request: DeviceRequest, known: list[str], available: list[str]) -> ConfigError:
    return ConfigError(
        f"device {request.text!r} is not a device {backend} knows (known: {', '.join(known)}); "
        f"available here: {', '.join(available)}"
    )


def unavailable_device(backend: str, request: DeviceRequest, available: list[str], why: str = "") -> DeviceUnavailableError:
    reason = f" ({why})" if why else ""
    return DeviceUnavailableError(
        f"device {request.text!r} is not available to {backend} on this machine{reason}; available "
        f"here: {', '.join(available)}; pick one of those, or 'auto' for the best of them"
    )


def auto_note(picked: str, available: list[str]) -> str:
    """What ``auto`` says about its choice."""
    if picked.lower().startswith("cpu"):
        return f"auto: no accelerator available (available: {', '.join(available)}), running on the CPU"
    return f"auto picked {picked} (available: {', '.join(available)})"
