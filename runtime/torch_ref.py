"""PyTorch reference backend: an edgeseg ``.safetensors`` checkpoint run in eager PyTorch.

It exists to compare converted files against the model they came from, through the very same
pre/post-processing. torch is imported here only, when such a file is loaded. Forward passes in
``torch.inference_mode`` keep no state, so one session serves several threads. ``threads`` calls
``torch.set_num_threads``, which is process-wide in PyTorch: the last loaded session wins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.runtime.backend import Backend, TensorInfo, import_backend_library, refuse_precision
from edgeseg.runtime.errors import ModelFileError


class TorchBackend(Backend):
    name = "torch"
    thread_safe = True
    threads_note = "torch.set_num_threads (process-wide)"

    def __init__(self, path: Path, *, threads: int | None = None, precision: str | None = None,
                 device: str | None = None):
        refuse_precision(self.name, precision)
        self._torch = import_backend_library("torch", "checkpoint", "PyTorch checkpoint")
        self._device = self._pick_device(device)
        self.device = str(self._device)
        from edgeseg.checkpoint import load_model
        from edgeseg.errors import CheckpointError

        if threads is not None:
            self._torch.set_num_threads(threads)
        try:
            self._model = load_model(path)
        except CheckpointError as exc:
            raise ModelFileError(f"{exc}") from exc
        self._model.to(self._device)
        self.path = path
        metadata = self._model.metadata
        h, w = metadata.input_size
        self.input = TensorInfo("image", (1, 3, h, w), np.dtype(np.float32))
        # A multi-domain checkpoint serves every head, as a file exported with one output per
        # domain does (outputs "logits_<domain>"), so each domain has its reference.
        self._domains = tuple(d.name for d in metadata.domains) if hasattr(self._model, "forward_all") else ()
        heads = [(f"logits_{d.name}", len(d.classes)) for d in metadata.domains] if self._domains else [
            ("logits", metadata.num_classes)
        ]
        self.outputs = {
            name: TensorInfo(name, (1, k, h, w), np.dtype(np.float32)) for name, k in heads
        }

    def _pick_device(self, device: str | None):
        from edgeseg.runtime.devices import AUTO, auto_note, parse_device, unavailable_device, unknown_device

        request = parse_device(device)
        cuda = self._torch.cuda.is_available()
        available = ["cpu", *(["cuda"] if cuda else [])]
        if request is None or request.is_cpu:
            return self._torch.device("cpu")
        if request.name == AUTO:
            self.device_note = auto_note("cuda" if cuda else "cpu", available)
            return self._torch.device("cuda" if cuda else "cpu")
        if request.name != "cuda" or (request.index is not None and not request.index.isdigit()):
            raise unknown_device("PyTorch", request, ["cpu", "cuda", "cuda:N", "auto"], available)
        if not cuda:
            raise unavailable_device("PyTorch", request, available, "torch.cuda.is_available() is False")
        return self._torch.device(f"cuda:{request.index or 0}")

    def metadata_json(self) -> str | None:
        # The checkpoint's metadata describes the PyTorch model: NCHW, normalized float input,
        # logits out, whatever layout or argmax a converted file of it may use.
        return self._model.metadata.replace(
            layout="nchw",
            include_preprocess=False,
            argmax=False,
            precision="fp32",
            output_names={d: f"logits_{d}" for d in self._domains},
        ).to_json()

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        with self._torch.inference_mode():
            x = self._torch.from_numpy(tensor).to(self._device)
            if self._domains:
                all_logits = self._model.forward_all(x)
                return {f"logits_{d}": t.cpu().numpy() for d, t in zip(self._domains, all_logits)}
            return {"logits": self._model(x).cpu().numpy()}
