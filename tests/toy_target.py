"""A toy target, added through the format table the way a real one is (tests/test_formats.py).

An ``.npz`` file holds a per-pixel linear classifier (a 1x1 convolution: weight, bias), the input
shape and the edgeseg metadata. Its converter module is :func:`export`, its backend
:class:`NpzBackend` (numpy only), and :data:`NPZ` is its one table row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.converters.errors import ConversionError
from edgeseg.runtime.backend import Backend, TensorInfo, refuse_precision
from edgeseg.runtime.formats import Format

# The one row: suffix, magic bytes (an .npz is a zip), backend and converter modules by name.
NPZ = Format(
    "npz", "NumPy archive", ".npz", "toy_target:NpzBackend", "npz", "toy", magic=lambda head: head[:4] == b"PK\x03\x04",
    checksummed=False, converter="toy_target", converter_extra="toy", precisions=("fp32",),
)


# --- the converter module: export(graph, files, options) -----------------------------------------
def export(graph, files: tuple[Path, ...], options) -> None:
    """Write the graph's 1x1 convolution. Only what the toy backend computes is accepted: NCHW
    float input, logits out, one output, a network that is one Conv2d(3, K, 1)."""
    import torch

    wrapper, meta = graph.module, graph.metadata
    convs = [m for m in wrapper.net.modules() if isinstance(m, torch.nn.Conv2d)]
    if (meta.layout, meta.include_preprocess, meta.argmax, len(graph.output_names)) != ("nchw", False, False, 1) \
            or len(convs) != 1 or convs[0].kernel_size != (1, 1):
        raise ConversionError("the npz target takes one 1x1 convolution, NCHW float input, logits output")
    weight = convs[0].weight.detach().numpy()[:, :, 0, 0].astype(np.float32)
    bias = convs[0].bias.detach().numpy().astype(np.float32)
    with open(files[0], "wb") as f:  # a file object: np.savez would append .npz to a path
        np.savez(f, weight=weight, bias=bias, input_shape=np.asarray(graph.sample.shape),
                 metadata=np.frombuffer(meta.to_json().encode("utf-8"), np.uint8))


# --- the backend ----------------------------------------------------------------------------------
class NpzBackend(Backend):
    name = "npz"
    thread_safe = True
    threads_note = "numpy"

    def __init__(self, path: Path, *, threads: int | None = None, precision: str | None = None,
                 device: str | None = None):
        refuse_precision(self.name, precision)
        self.path = path
        with np.load(path) as stored:
            self._weight, self._bias = stored["weight"], stored["bias"]
            self._metadata = stored["metadata"].tobytes().decode("utf-8")
            _, _, h, w = (int(d) for d in stored["input_shape"])
        self.input = TensorInfo("image", (1, 3, h, w), np.dtype(np.float32))
        self.outputs = {"logits": TensorInfo("logits", (1, len(self._bias), h, w), np.dtype(np.float32))}

    def metadata_json(self) -> str | None:
        return self._metadata

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        logits = np.einsum("kc,nchw->nkhw", self._weight, tensor) + self._bias[None, :, None, None]
        return {"logits": logits.astype(np.float32)}
