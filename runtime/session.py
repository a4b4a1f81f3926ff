"""``SegmentationSession``: a loaded model file that turns images into class masks.

Thread safety: ``predict`` may be called from several threads on one session. Pre/post-processing
buffers are per thread; the backend call runs concurrently where the library allows it (ONNX
Runtime, OpenVINO with one infer request per thread, PyTorch, CoreML) and under the session's lock
where it does not (LiteRT/TFLite: one interpreter runs one call at a time; load one session per
thread for parallel throughput). There the mask is also made under the lock, straight from the
interpreter's output buffers (no copy of the logits). ``seg.thread_safe`` says which applies.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterable

import numpy as np

from edgeseg.integrity import stamped
from edgeseg.metadata import ModelMetadata
from edgeseg.runtime.backend import Backend
from edgeseg.runtime.errors import (
    DomainError,
    LogitsUnavailableError,
    MaskError,
    UnsupportedModelError,
)
from edgeseg.runtime.images import MAX_IMAGE_PIXELS, check_image
from edgeseg.runtime.processing import Postprocessor, Preprocessor, check_graph


class SegmentationSession:
    """One model file on one backend. Made by :func:`edgeseg.runtime.load`."""

    def __init__(self, backend: Backend, metadata: ModelMetadata):
        if backend.input_count != 1:
            raise UnsupportedModelError(
                f"{backend.path} has {backend.input_count} graph inputs; an edgeseg file has one "
                "image input. Convert the model with edgeseg convert"
            )
        self.backend = backend
        self.metadata = metadata
        #: Images above this many pixels are refused (see edgeseg.runtime.images).
        self.max_image_pixels = MAX_IMAGE_PIXELS
        self._pre = Preprocessor(metadata, backend.input)
        self._post: dict[str | None, tuple[str, Postprocessor]] = {}
        for domain in self.domains or [None]:
            name = self._output_name(domain)
            info = backend.outputs[name]
            classes = self.classes(domain)
            check_graph(metadata, backend.input, info, len(classes))
            self._post[domain] = (name, Postprocessor(metadata, info, len(classes)))
        self._lock = contextlib.nullcontext() if backend.thread_safe else threading.Lock()
        #: Seconds the last graph call took (the backend alone, inside predict), for benchmarks.
        self.last_model_call_s = 0.0

    # --- what the file holds ---------------------------------------------------------------
    @property
    def thread_safe(self) -> bool:
        """True if the backend runs calls from several threads at once (else they take turns)."""
        return self.backend.thread_safe

    @property
    def domains(self) -> list[str]:
        """Domains this file predicts, when it has one output per domain; else []."""
        return list(self.metadata.output_names)

    def classes(self, domain: str | None = None) -> tuple[str, ...]:
        domain = self._domain(domain)
        return self.metadata.domain_info(domain).classes if domain else self.metadata.classes

    def palette(self, domain: str | None = None) -> np.ndarray:
        domain = self._domain(domain)
        colours = self.metadata.domain_info(domain).palette if domain else self.metadata.palette
        return np.asarray(colours, np.uint8)

    @property
    def device(self) -> str:
        """What runs the graph, in the backend library's words (``CPUExecutionProvider``,
        ``GPU.0``, ``cpu (XNNPACK)``)."""
        return self.backend.device

    @property
    def device_note(self) -> str:
        """What ``device="auto"`` picked and which ops an accelerator left to the CPU, where the
        backend tells; "" when there is nothing to say."""
        return self.backend.device_note

    @property
    def precision(self) -> str:
        """The lowest precision on the graph's path: the stored one (``fp32``, ``fp16``,
        ``int8``), or the compute precision OpenVINO was compiled for where that is lower
        (``bf16``: the file records that it passed its gate at bf16 and the CPU has bf16;
        ``int8+bf16``: an int8 file whose float ops were asked to run at bf16)."""
        stored, compute = self.metadata.precision, self.backend.inference_precision
        if compute is None or compute == "fp32":
            return stored
        return f"int8+{compute}" if stored == "int8" else compute

    def describe(self) -> str:
        m = self.metadata
        h, w = m.input_size
        note = f" [{self.backend.device_note}]" if self.backend.device_note else ""
        stored = f"{m.precision} computed at {self.backend.inference_precision} ({self.backend.precision_note})" if (
            self.backend.inference_precision) else m.precision
        stride = f", logits at 1/{m.output_stride} upsampled here" if m.output_stride > 1 else ""
        return (
            f"{m.model} on {self.backend.name} ({self.backend.path.name}), device {self.backend.device}{note}: "
            f"{h}x{w} {m.layout} "
            f"{stored}{stride}, resize={m.resize}, preprocess {'in graph' if m.include_preprocess else 'in numpy'}, "
            f"argmax {'in graph' if m.argmax else 'in numpy'}, threads: {self.backend.threads_note}, "
            f"checksum {'verified at load' if stamped(m.checksum) else 'not recorded in the file'}"
        )

    # --- inference -------------------------------------------------------------------------
    def predict(
        self, image: np.ndarray, *, bgr: bool = False, logits: bool = False, domain: str | None = None
    ) -> np.ndarray:
        """Class mask ``(H, W)`` (uint8, uint16 above 256 classes) at the image's own size.

        ``image``: ``(H, W, 3)`` uint8 RGB (``bgr=True`` for OpenCV frames) or floats in [0, 1].
        ``logits=True`` returns float32 logits ``(H, W, num_classes)`` instead (bilinear resize).
        ``domain`` picks the head of a file with one output per domain.
        """
        pixels = check_image(image, max_pixels=self.max_image_pixels)
        name, post = self._post[self._domain(domain)]
        if logits and self.metadata.argmax:
            raise LogitsUnavailableError(
                f"{self.backend.path.name} ends in argmax and outputs only the mask; convert it "
                "without --argmax to get logits"
            )
        height, width = pixels.shape[:2]
        # One path for every backend. A backend that is not thread-safe holds the lock from the
        # input to the result: it may hand out its own buffers (LiteRT: the image is preprocessed
        # straight into its input, the mask made from views of its outputs, no copy of either).
        # A thread-safe one takes no lock: its arrays are only this thread's next call's to
        # overwrite (fresh arrays, or this thread's own ONNX Runtime / OpenVINO buffers).
        with self._lock:
            view = self.backend.input_view()
            in_place = view is not None
            try:
                tensor, placement = self._pre(pixels, bgr=bgr, out=view)
            finally:
                del view  # LiteRT refuses to run while a view of its buffers is alive
            if in_place:
                tensor = None  # it was the view: the input is already in the backend
            start = time.perf_counter()
            output = self.backend.run_borrowed(tensor)[name]
            self.last_model_call_s = time.perf_counter() - start
            try:
                result = post.logits(output, placement, height, width) if logits else post.mask(
                    output, placement, height, width)
                # The caller keeps the result across calls: it must own its memory.
                return _owned(result, output)
            finally:
                del output

    def predict_batch(
        self, images: Iterable[np.ndarray], *, bgr: bool = False, domain: str | None = None
    ) -> list[np.ndarray]:
        """Masks of several images (each at its own size), one graph call per image."""
        return [self.predict(image, bgr=bgr, domain=domain) for image in images]

    # --- visualization ---------------------------------------------------------------------
    def colorize(self, mask: np.ndarray, *, domain: str | None = None) -> np.ndarray:
        """RGB image ``(H, W, 3)`` uint8 of a class mask in the file's palette."""
        palette = self.palette(domain)
        mask = np.asarray(mask)
        if mask.dtype.kind not in "iu" or mask.ndim != 2:
            raise MaskError(f"colorize takes an (H, W) integer class mask, got {mask.dtype} {mask.shape}")
        if mask.size and mask.dtype.kind == "i" and int(mask.min()) < 0:
            raise MaskError(
                f"mask holds class {int(mask.min())}; class ids start at 0 (a negative id would wrap "
                "to the palette's last colours). Was the mask's ignore value left in it?"
            )
        if mask.size and int(mask.max()) >= len(palette):
            raise MaskError(
                f"mask holds class {int(mask.max())} but the palette has {len(palette)} colours; "
                "was it predicted with another model or domain?"
            )
        return palette[mask]

    def overlay(
        self, image: np.ndarray, mask: np.ndarray, alpha: float = 0.5, *, bgr: bool = False,
        domain: str | None = None,
    ) -> np.ndarray:
        """``image`` blended with the colorized mask: (1 - alpha) * image + alpha * colours."""
        if not 0.0 <= alpha <= 1.0:
            raise MaskError(f"alpha {alpha} must be in [0, 1]")
        pixels = check_image(image, max_pixels=self.max_image_pixels)
        if pixels.shape[:2] != np.shape(mask)[:2]:
            raise MaskError(
                f"mask {np.shape(mask)} and image {pixels.shape[:2]} differ in size; overlay the mask "
                "predicted for this image"
            )
        colours = self.colorize(mask, domain=domain)
        if bgr:
            colours = colours[..., ::-1]
        blended = pixels * np.float32(1 - alpha) + colours * np.float32(alpha)
        return np.rint(blended).astype(np.uint8)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> SegmentationSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SegmentationSession({self.describe()})"

    # --- helpers ---------------------------------------------------------------------------
    def _domain(self, domain: str | None) -> str | None:
        """The domain a call means: required for multi-output files, checked for per-domain ones."""
        m = self.metadata
        if self.domains:
            if domain is None:
                raise DomainError(
                    f"this file has one output per domain {self.domains}; choose one with --domain NAME "
                    "(Python: pass domain=NAME)"
                )
            found = _short_domain(domain, self.domains)
            if found is None:
                raise DomainError(f"domain {domain!r} is not in this file; its domains are {self.domains}")
            return found
        if domain is not None and _short_domain(domain, [m.domain] if m.domain else []) is None:
            have = f"only domain {m.domain!r}" if m.domain else "no domains (a single-domain model)"
            raise DomainError(f"domain {domain!r} was asked, but this file predicts {have}; leave --domain out")
        return None

    def _output_name(self, domain: str | None) -> str:
        outputs = self.backend.outputs
        if domain is not None:
            name = self.metadata.output_names[domain]
            if name not in outputs:
                raise UnsupportedModelError(
                    f"metadata names output {name!r} for domain {domain!r}, but the graph's outputs "
                    f"are {list(outputs)}; convert the model again"
                )
            return name
        if len(outputs) == 1:
            return next(iter(outputs))
        wanted = "mask" if self.metadata.argmax else "logits"
        if wanted in outputs:
            return wanted
        raise UnsupportedModelError(
            f"{self.backend.path.name} has outputs {list(outputs)} and no output named {wanted!r}; "
            "an edgeseg file has one output, or one per domain listed in its metadata"
        )


def _short_domain(asked: str, names: list[str]) -> str | None:
    """``asked`` if it is one of ``names``, else the one name it is a word of (``night`` ->
    ``synthetic_night``); None when there is no such name or several."""
    if asked in names:
        return asked
    matches = [n for n in names if asked in re.split(r"[_:\-/. ]", n)]
    return matches[0] if len(matches) == 1 else None


def _owned(result: np.ndarray, output: np.ndarray) -> np.ndarray:
    """``result``, copied if it shares memory with the backend's output buffer (at the model's own
    size nothing is resized, so a mask or NHWC logits can be that buffer itself)."""
    return result.copy() if np.may_share_memory(result, output) else result
