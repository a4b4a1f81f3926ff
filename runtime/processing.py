"""The one pre/post-processing path shared by every backend, driven by the file's metadata.

image (H, W, 3) uint8 -> resize (stretch or letterbox) -> one table lookup per channel that
does RGB order, normalization (unless the graph does it), quantization of int8/uint8 inputs and
NCHW/NHWC -> [backend] -> argmax unless the graph did (dequantized logits on request) -> crop the
letterbox padding -> nearest resize to (H, W). The input tensor is allocated once per thread and
reused; every step is a whole-array operation.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from edgeseg.metadata import ModelMetadata
from edgeseg.runtime.backend import TensorInfo
from edgeseg.runtime.errors import UnsupportedModelError
from edgeseg.runtime.resize import cv2_or_none, resize_bilinear, resize_nearest


@dataclass(frozen=True)
class Placement:
    """Where the resized image sits in the model input (the rest is letterbox padding)."""

    top: int
    left: int
    height: int
    width: int


class Preprocessor:
    """Turns a checked ``(H, W, 3)`` uint8 image into the graph's input tensor.

    Normalization, quantization and the input dtype are folded into one 256-entry table per
    channel, computed once: a pixel's tensor value is ``table[channel][pixel]``, so the whole
    step is a single lookup pass (``cv2.LUT``, or ``np.take`` without OpenCV).
    """

    def __init__(self, metadata: ModelMetadata, tensor: TensorInfo):
        self.metadata = metadata
        self.tensor = tensor
        self.height, self.width = metadata.input_size
        self.nchw = metadata.layout == "nchw"
        self.shape = (1, 3, self.height, self.width) if self.nchw else (1, self.height, self.width, 3)
        mean = np.asarray(metadata.mean, np.float64)
        # Letterbox padding is the mean colour: zero after normalization, as in training.
        self.pad_value = np.rint(mean * 255).astype(np.uint8)
        self.tables = _channel_tables(metadata, tensor)  # (3, 256) in the tensor's dtype
        self.tables_hwc = np.ascontiguousarray(self.tables.T).reshape(1, 256, 3)  # cv2.LUT, 3 channels
        self._local = threading.local()

    def _buffer(self) -> np.ndarray:
        """This thread's input tensor, allocated once."""
        tensor = getattr(self._local, "tensor", None)
        if tensor is None:
            tensor = self._local.tensor = np.empty(self.shape, self.tensor.dtype)
        return tensor

    def place(self, height: int, width: int) -> Placement:
        if self.metadata.resize == "stretch":
            return Placement(0, 0, self.height, self.width)
        ratio = min(self.height / height, self.width / width)
        h = max(1, min(self.height, round(height * ratio)))
        w = max(1, min(self.width, round(width * ratio)))
        return Placement((self.height - h) // 2, (self.width - w) // 2, h, w)

    def resized(self, image: np.ndarray, placement: Placement) -> np.ndarray:
        """The image at model size (letterboxed when recorded so), still uint8 HWC."""
        inner = resize_bilinear(image, placement.height, placement.width)
        if (placement.height, placement.width) == (self.height, self.width):
            return inner
        canvas = np.empty((self.height, self.width, 3), np.uint8)
        canvas[:] = self.pad_value
        p = placement
        canvas[p.top : p.top + p.height, p.left : p.left + p.width] = inner
        return canvas

    def __call__(
        self, image: np.ndarray, *, bgr: bool, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, Placement]:
        """The input tensor for ``image``: written into ``out`` (the backend's own input buffer)
        when given, else into this thread's buffer."""
        placement = self.place(*image.shape[:2])
        pixels = np.ascontiguousarray(self.resized(image, placement))
        # Model channel c reads image channel source[c]: BGR frames (or a model that takes BGR,
        # extra["channel_order"]) are reordered for free here.
        if self.metadata.extra.get("channel_order") == "bgr":
            bgr = not bgr
        source = (2, 1, 0) if bgr else (0, 1, 2)
        tensor = self._buffer() if out is None else out
        if out is not None and (out.shape != self.shape or out.dtype != self.tensor.dtype):
            raise UnsupportedModelError(
                f"the backend's input buffer is {out.dtype} {out.shape}, not the {self.tensor.dtype} "
                f"{self.shape} the metadata describes; convert the model again"
            )
        cv2 = cv2_or_none()
        if cv2 is not None and self.tables.dtype in _CV2_LUT_DTYPES:
            if self.nchw:
                planes = cv2.split(pixels)
                for c in range(3):
                    cv2.LUT(planes[source[c]], self.tables[c], dst=tensor[0, c])
            else:  # a 3-channel lookup keeps channel order: swap BGR on the small uint8 image
                if bgr:
                    pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
                cv2.LUT(pixels, self.tables_hwc, dst=tensor[0])
        else:
            for c in range(3):
                out = tensor[0, c] if self.nchw else tensor[0, ..., c]
                out[...] = np.take(self.tables[c], pixels[..., source[c]])
        return tensor, placement


# cv2.LUT writes these table types (not float16).
_CV2_LUT_DTYPES = (np.dtype(np.float32), np.dtype(np.uint8), np.dtype(np.int8))


def _channel_tables(metadata: ModelMetadata, tensor: TensorInfo) -> np.ndarray:
    """``tables[c][p]``: the input tensor value of pixel value ``p`` in RGB channel ``c``."""
    pixel = np.arange(256, dtype=np.float64)
    if metadata.include_preprocess:
        real = np.stack([pixel] * 3)  # the graph normalizes: it takes the pixel values
    else:
        mean = np.asarray(metadata.mean, np.float64)[:, None]
        std = np.asarray(metadata.std, np.float64)[:, None]
        real = (pixel[None] / 255.0 - mean) / std
    if tensor.quantized:
        return quantize(real.astype(np.float32), tensor, out=np.empty(real.shape, tensor.dtype))
    return real.astype(tensor.dtype)


def quantize(values: np.ndarray, info: TensorInfo, *, out: np.ndarray) -> np.ndarray:
    """real -> q = round(real / scale) + zero_point, saturated to the integer type."""
    limits = np.iinfo(info.dtype)
    scaled = np.divide(values, info.scale)
    np.rint(scaled, out=scaled)
    scaled += info.zero_point
    np.clip(scaled, limits.min, limits.max, out=scaled)
    np.copyto(out, scaled, casting="unsafe")
    return out


def dequantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """q -> real = scale * (q - zero_point), float32."""
    return (values.astype(np.float32) - np.float32(info.zero_point)) * np.float32(info.scale)


class Postprocessor:
    """Turns the graph's output into a class mask (or logits) at the image's own size."""

    def __init__(self, metadata: ModelMetadata, tensor: TensorInfo, num_classes: int):
        self.metadata = metadata
        self.tensor = tensor
        self.mask_dtype = np.uint8 if num_classes <= 256 else np.uint16
        self.num_classes = num_classes
        self.class_axis = 1 if metadata.layout == "nchw" else 3
        # A binary segmenter (one output channel): foreground where the value passes this
        # (0.5 for a probability, 0 for a logit; set by edgeseg.runtime.foreign).
        self.binary_threshold = None if metadata.argmax else metadata.extra.get("binary_threshold")
        # Low-resolution logits (output_stride > 1): the mask is made at the model's input size,
        # as the full-resolution graph would, from the logits at the head's resolution.
        self.stride = metadata.output_stride

    def mask(self, output: np.ndarray, placement: Placement, height: int, width: int) -> np.ndarray:
        if self.stride > 1 and not self.metadata.argmax:
            if self.binary_threshold is None and self.num_classes <= 255:
                values = output[0].transpose(1, 2, 0) if self.class_axis == 1 else output[0]
                small = argmax_upsampled(values, self.stride)
                return resize_nearest(_crop(small, placement), height, width)
            output = self._full_size(output)  # a binary or >255-class head: bilinear first
        if self.metadata.argmax:
            small = output.reshape(output.shape[-2:] if self.class_axis == 1 else output.shape[1:3])
            # The graph's class ids come from its own class count: one the metadata does not name
            # means metadata of another model (a mask that would be silently wrong).
            if small.size and int(small.max()) >= self.num_classes:
                raise UnsupportedModelError(
                    f"the graph's mask holds class {int(small.max())}, but its metadata names "
                    f"{self.num_classes} classes; the metadata belongs to another model: convert it again"
                )
            small = small.astype(self.mask_dtype, copy=False)
        elif self.binary_threshold is not None:
            values = output[0, 0] if self.class_axis == 1 else output[0, ..., 0]
            if self.tensor.quantized:
                values = dequantize(values, self.tensor)
            small = (values > np.float32(self.binary_threshold)).astype(self.mask_dtype)
        else:
            # Dequantizing is monotonic (scale > 0): argmax of the raw integers is the same.
            small = argmax_classes(output[0], self.class_axis - 1).astype(self.mask_dtype, copy=False)
        return resize_nearest(_crop(small, placement), height, width)

    def logits(self, output: np.ndarray, placement: Placement, height: int, width: int) -> np.ndarray:
        """Float32 logits ``(H, W, num_classes)`` at the image's size (bilinear)."""
        values = output[0].transpose(1, 2, 0) if self.class_axis == 1 else output[0]
        if self.tensor.quantized:
            values = dequantize(values, self.tensor)
        if self.stride > 1:  # the graph's own upsample, to the model size, then as below
            values = resize_bilinear(np.ascontiguousarray(values, dtype=np.float32), *self.metadata.input_size)
        values = np.ascontiguousarray(_crop(values, placement), dtype=np.float32)
        return resize_bilinear(values, height, width)

    def _full_size(self, output: np.ndarray) -> np.ndarray:
        """Low-resolution logits brought to the model's input size (bilinear), in the output's
        layout, as the graph's final upsample would have made them."""
        values = output[0].transpose(1, 2, 0) if self.class_axis == 1 else output[0]
        values = resize_bilinear(np.ascontiguousarray(values), *self.metadata.input_size)
        if values.ndim == 2:
            values = values[..., None]
        return (values.transpose(2, 0, 1) if self.class_axis == 1 else values)[None]


def argmax_upsampled(logits: np.ndarray, stride: int) -> np.ndarray:
    """``argmax(bilinear_upsample(logits, stride))`` over classes: the ``(h * stride, w * stride)``
    uint8 mask of ``(h, w, K)`` logits (K <= 255) that the graph's final upsample (bilinear,
    half-pixel centres) and the argmax would give, without upsampling every class.

    Each output pixel blends the logit vectors of its 4 nearest low-resolution samples with
    non-negative weights, so where those 4 samples have the same argmax class, so does the blend:
    only the tiles between samples of different classes (the class boundaries) are blended and
    reduced; every other pixel takes its tile's class. With integer strides every tile has the
    same blend weights, so all boundary tiles are blended together, a few whole-array passes.
    Quantized logits may be passed raw: the blend and the argmax commute with the dequantization
    (weights summing to 1, a positive scale)."""
    h, w, k = logits.shape
    s = stride
    flat = np.ascontiguousarray(logits, dtype=np.float32).reshape(h * w, k)
    small = argmax_classes(flat.reshape(h, w, k), 2).astype(np.uint8, copy=False).reshape(h, w)
    # Tile (t, u) lies between samples t-1, t (rows) and u-1, u (columns), edges replicated: the
    # graph clamps there. Tile t starts at output row t * s - offset.
    corner = np.pad(small, 1, mode="edge")
    top_left = corner[:-1, :-1]
    uniform = (top_left == corner[1:, :-1]) & (top_left == corner[:-1, 1:]) & (top_left == corner[1:, 1:])
    offset = s - s // 2  # s - ceil((s - 1) / 2)
    tiles = np.empty((h + 1, s, w + 1, s), np.uint8)
    tiles[...] = top_left[:, None, :, None]
    rows, cols = np.nonzero(~uniform)
    if rows.size:
        padded = np.pad(flat.reshape(h, w, k), ((1, 1), (1, 1), (0, 0)), mode="edge")
        corners = np.stack([padded[rows, cols], padded[rows + 1, cols], padded[rows, cols + 1],
                            padded[rows + 1, cols + 1]], axis=1)  # (n, 4 samples, K)
        candidates = np.stack([corner[rows, cols], corner[rows + 1, cols], corner[rows, cols + 1],
                               corner[rows + 1, cols + 1]], axis=1).astype(np.intp)  # (n, 4) classes
        weights = _tile_weights(s)
        # First only the 4 samples' own classes are blended; any other class's blend is at most
        # the blend of each sample's best other logit, so a pixel whose winner beats that bound
        # is exact. The tiles with a pixel that does not are blended over every class.
        values = np.take_along_axis(corners, candidates[:, None, :], axis=2)  # (n, 4 samples, 4 classes)
        best, top = _blend_argmax(values, weights, top=True)
        others = corners.copy()
        np.put_along_axis(others, candidates[:, None, :].repeat(4, axis=1), np.finfo(np.float32).min, axis=2)
        bound = _blend_argmax(others.max(axis=2)[..., None], weights, top=True)[1]  # (n, s * s)
        classes = np.take_along_axis(candidates, best, axis=1)
        unsure = np.nonzero((top < bound).any(axis=1))[0]
        if unsure.size:
            classes[unsure] = _blend_argmax(corners[unsure], weights)
        tiles[rows, :, cols, :] = classes.reshape(rows.size, s, s)
    full = tiles.reshape((h + 1) * s, (w + 1) * s)
    return np.ascontiguousarray(full[offset : offset + h * s, offset : offset + w * s])


def _blend_argmax(values: np.ndarray, weights: np.ndarray, *, top: bool = False):
    """For ``values`` (n, 4 samples, C) and ``weights`` (P, 4): the index (n, P) of the largest
    blended value (first wins ties), and with ``top`` that value too: the C blended planes of all
    tiles at once, then the planes' running maximum (OpenCV) picks the winner."""
    c, n = values.shape[2], values.shape[0]
    planes = np.ascontiguousarray(values.transpose(2, 0, 1)).reshape(c * n, 4)
    # Four multiply-adds, not a matrix product: an inner dimension of 4 gains nothing from BLAS,
    # whose threads (numpy's, not the session's) slowed this 3x on a loaded 2-core machine.
    blended = np.multiply(planes[:, :1], weights[:, 0])
    term = np.empty_like(blended)
    for corner in range(1, 4):
        np.multiply(planes[:, corner : corner + 1], weights[:, corner], out=term)
        blended += term
    blended = blended.reshape(c, n, -1)  # (C, n, P)
    best = argmax_classes(blended, 0).astype(np.intp)
    return (best, blended.max(axis=0)) if top else best


def _tile_weights(s: int) -> np.ndarray:
    """(s * s, 4) bilinear weights of the corners (top-left, bottom-left, top-right,
    bottom-right) for each pixel of a tile, row by row (half-pixel centres)."""
    offset = s - s // 2
    f = ((np.arange(s) - offset + 0.5) / s + 0.5).astype(np.float32)  # fraction towards the next sample
    fy, fx = f[:, None], f[None, :]
    weights = np.stack([(1 - fy) * (1 - fx), fy * (1 - fx), (1 - fy) * fx, fy * fx], axis=-1)
    return weights.reshape(s * s, 4).astype(np.float32)


def argmax_classes(logits: np.ndarray, axis: int) -> np.ndarray:
    """Class index of the largest logit along ``axis`` (0: (K, h, w), 2: (h, w, K)); the first
    class wins ties, like numpy and torch."""
    cv2 = cv2_or_none()
    if cv2 is not None and logits.dtype == np.float16:
        logits = logits.astype(np.float32)  # one pass, then the fast path below (exact: fp16 fits)
    if cv2 is not None and logits.shape[axis] <= 255 and logits.dtype in _CV2_ARGMAX_DTYPES:
        if axis == 2:
            h, w, k = logits.shape
            return _argmax_channels_last(cv2, np.ascontiguousarray(logits).reshape(h * w, k)).reshape(h, w)
        return _argmax_planes_cv2(cv2, logits)
    if axis != 0:
        return np.argmax(logits, axis=axis)
    # Class-first without OpenCV: whole-plane comparisons beat np.argmax over the leading axis.
    best = logits[0].copy()
    index = np.zeros(best.shape, np.int32)
    for k in range(1, logits.shape[0]):
        better = logits[k] > best
        index[better] = k
        np.maximum(best, logits[k], out=best)
    return index


# OpenCV's compare/max take these element types (not float16).
_CV2_ARGMAX_DTYPES = (np.dtype(np.float32), np.dtype(np.uint8), np.dtype(np.int8))


# Scratch buffers of the argmax, one set per thread (so one session serves several threads).
_scratch = threading.local()


def _thread_scratch(kind: str, key: tuple, make):
    """This thread's scratch buffers of ``kind`` for ``key``, made by ``make()`` the first time."""
    buffers = _scratch.__dict__.setdefault(kind, {})
    if key not in buffers:
        buffers[key] = make()
    return buffers[key]


def _argmax_planes_cv2(cv2, logits: np.ndarray) -> np.ndarray:
    # A running maximum over the class planes. The index update needs no mask indexing: where
    # plane k wins, (255 & k) = k is larger than any earlier index, elsewhere 0 keeps it. SIMD
    # OpenCV kernels make this ~6x faster than np.argmax on 19 x 512 x 512 logits. The running
    # maximum and the win mask are this thread's scratch buffers, reused between calls (fresh
    # ones cost ~10% of the argmax here); the index is the caller's to keep.
    k, h, w = logits.shape
    index = np.zeros((h, w), np.uint8)
    if k == 1:
        return index
    best, wins = _thread_scratch(
        "planes", (h, w, logits.dtype), lambda: (np.empty((h, w), logits.dtype), np.empty((h, w), np.uint8))
    )
    cv2.compare(logits[1], logits[0], cv2.CMP_GT, dst=wins)
    cv2.bitwise_and(wins, 1, dst=index)
    cv2.max(logits[0], logits[1], dst=best)
    for c in range(2, k):
        cv2.compare(logits[c], best, cv2.CMP_GT, dst=wins)
        cv2.bitwise_and(wins, c, dst=wins)
        cv2.max(index, wins, dst=index)
        cv2.max(best, logits[c], dst=best)
    return index


# Pixels per band of _argmax_channels_last: a (K, band) float32 block stays in cache (measured
# on 19 x 512 x 512: 4096 -> 4.8 ms, 16384 -> 3.8 ms, whole array -> 4.7 ms).
_BAND = 16384


def _argmax_channels_last(cv2, values: np.ndarray) -> np.ndarray:
    """Argmax over the K columns of ``(n, K)`` values (K <= 255), first maximum winning ties.

    numpy's reductions over a short last axis pay per row (np.argmax: ~10 ms on 512 x 512 x 19),
    so each band of rows is transposed to class planes in cache (cv2.transpose), then reduced
    with whole-band operations: the maximum, which classes reach it, and the first of those
    (the largest of ``K - k`` over the classes that do)."""
    n, k = values.shape
    planes, best, reached = _thread_scratch("bands", (k, values.dtype), lambda: (
        np.empty((k, _BAND), values.dtype), np.empty(_BAND, values.dtype), np.empty((k, _BAND), np.uint8)
    ))
    first_weight = np.arange(k, 0, -1, dtype=np.uint8)[:, None]  # class c -> K - c
    out = np.empty(n, np.uint8)
    for start in range(0, n, _BAND):
        stop = min(n, start + _BAND)
        size = stop - start
        if size == _BAND:
            block = cv2.transpose(values[start:stop], dst=planes)
        else:  # the last, partial band
            block = cv2.transpose(values[start:stop])
        top = best[:size]
        np.max(block, axis=0, out=top)
        hit = reached[:, :size]
        np.equal(block, top, out=hit.view(np.bool_))
        np.multiply(hit, first_weight, out=hit)
        np.max(hit, axis=0, out=out[start:stop])
    np.subtract(np.uint8(k), out, out=out)
    return out


def _crop(array: np.ndarray, p: Placement) -> np.ndarray:
    if p.top == 0 and p.left == 0 and array.shape[:2] == (p.height, p.width):
        return array
    return array[p.top : p.top + p.height, p.left : p.left + p.width]


def check_graph(metadata: ModelMetadata, tensor: TensorInfo, output: TensorInfo, num_classes: int) -> None:
    """Refuse at load time a graph whose tensors contradict its metadata."""
    h, w = metadata.input_size
    expected = (1, 3, h, w) if metadata.layout == "nchw" else (1, h, w, 3)
    if len(tensor.shape) != 4 or any(g not in (-1, e) for g, e in zip(tensor.shape, expected)):
        raise UnsupportedModelError(
            f"the graph input {tensor.name!r} has shape {tensor.shape} but the metadata describes "
            f"{expected} ({metadata.layout}, input_size {h}x{w}); the file was edited or converted "
            "with other settings than it records: convert it again"
        )
    if tensor.dtype.kind in "iu" and not tensor.quantized and not metadata.include_preprocess:
        raise UnsupportedModelError(
            f"the graph input {tensor.name!r} is {tensor.dtype} without a scale/zero point, and the "
            "metadata says it takes normalized floats; convert it again"
        )
    h, w = metadata.output_size  # the output's own size (1/output_stride of the input)
    if metadata.argmax:
        # The mask: (1, h, w), (1, 1, h, w) or (1, h, w, 1) class ids; logits would not reshape.
        shapes = {3: (1, h, w), 4: (1, 1, h, w) if metadata.layout == "nchw" else (1, h, w, 1)}
        wanted = shapes.get(len(output.shape))
        if (wanted is None or output.dtype.kind not in "iu"
                or any(g not in (-1, e) for g, e in zip(output.shape, wanted))):
            raise UnsupportedModelError(
                f"the metadata says the graph ends in argmax (a class mask), but its output "
                f"{output.name!r} is {output.dtype} {output.shape}, not one {h}x{w} integer mask; "
                "the metadata was edited or belongs to another file: convert it again"
            )
    else:
        axis = 1 if metadata.layout == "nchw" else 3
        binary = metadata.extra.get("binary_threshold") is not None and num_classes == 2
        if len(output.shape) != 4 or output.shape[axis] not in (-1, 1 if binary else num_classes):
            raise UnsupportedModelError(
                f"the graph output {output.name!r} has shape {output.shape}, not {num_classes} "
                f"class logits in {metadata.layout}; is argmax inside the graph without the "
                "metadata saying so? Convert it again"
            )
        spatial = output.shape[2:] if axis == 1 else output.shape[1:3]
        if metadata.output_stride > 1 and any(g not in (-1, e) for g, e in zip(spatial, (h, w))):
            raise UnsupportedModelError(
                f"the metadata says the graph's logits are at 1/{metadata.output_stride} of the "
                f"{metadata.input_size[0]}x{metadata.input_size[1]} input ({h}x{w}), but its output "
                f"{output.name!r} is {output.shape}; the metadata was edited or belongs to another "
                "file: convert it again"
            )
