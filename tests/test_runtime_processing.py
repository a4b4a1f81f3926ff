"""The shared pre/post-processing on its own: quantization, layouts, >256 classes, numpy fallback.

A numpy "graph" stands in for the inference library here: it records the tensor it is given and
returns logits computed from it, so every number the session produces can be checked by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgeseg.runtime as rt
from edgeseg.metadata import ModelMetadata
from edgeseg.runtime import processing, resize
from edgeseg.runtime.backend import Backend, TensorInfo


class NumpyGraph(Backend):
    """Logits of class k = k-th "pixel feature": mean of the input channels times a ramp."""

    name = "numpy"
    thread_safe = True

    def __init__(self, metadata: ModelMetadata, input_info: TensorInfo, output_info: TensorInfo, fn):
        self.path = Path("numpy-graph")
        self.input, self.outputs = input_info, {output_info.name: output_info}
        self._metadata, self._fn, self.seen = metadata, fn, []

    def metadata_json(self) -> str | None:
        return self._metadata.to_json()

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        self.seen.append(tensor.copy())
        return {next(iter(self.outputs)): self._fn(tensor)}


def session(metadata, input_info, output_info, fn=lambda t: t) -> rt.SegmentationSession:
    return rt.SegmentationSession(NumpyGraph(metadata, input_info, output_info, fn), metadata)


def test_int8_input_and_output_quantization():
    meta = ModelMetadata(model="q", classes=("a", "b", "c"), input_size=(8, 8), layout="nhwc", precision="int8")
    qin = TensorInfo("image", (1, 8, 8, 3), np.dtype(np.int8), scale=0.02, zero_point=-5)
    qout = TensorInfo("logits", (1, 8, 8, 3), np.dtype(np.int8), scale=0.1, zero_point=3)
    seg = session(meta, qin, qout, fn=lambda t: t)  # logits = the quantized input itself
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 128, 250
    logits = seg.predict(image, logits=True)
    tensor = seg.backend.seen[-1]
    assert tensor.dtype == np.int8
    # Hand computation of channel 1 (G=128): (128/255 - 0.456) / 0.224 = 0.2052; /0.02 -> 10.26
    # -> round 10, + zero point -5 = 5.
    assert tensor[0, 0, 0, 1] == 5
    # B=250: (250/255 - 0.406)/0.225 = 2.553 -> 127.6 -> 128 - 5 = 123 (in range, no clipping).
    assert tensor[0, 0, 0, 2] == 123
    expected = np.float32(0.1) * (tensor[0, 0, 0].astype(np.float32) - 3)  # dequantized
    np.testing.assert_allclose(logits[0, 0], expected, rtol=1e-6)
    assert (seg.predict(image) == 2).all()  # argmax taken on the raw integers


def test_uint8_input_saturates():
    info = TensorInfo("image", (1, 3, 8, 8), np.dtype(np.uint8), scale=0.001, zero_point=128)
    values = np.array([[-1.0, 0.0, 0.05, 1.0]], np.float32)
    out = np.empty_like(values, dtype=np.uint8)
    np.testing.assert_array_equal(processing.quantize(values, info, out=out), [[0, 128, 178, 255]])


def test_float16_input_and_uint8_preprocess_inside_graph():
    meta = ModelMetadata(model="f", classes=("a", "b"), input_size=(8, 8))
    seg = session(meta, TensorInfo("image", (1, 3, 8, 8), np.dtype(np.float16)),
                  TensorInfo("logits", (1, 2, 8, 8), np.dtype(np.float16)), fn=lambda t: t[:, :2])
    image = np.full((8, 8, 3), 200, np.uint8)
    seg.predict(image)
    assert seg.backend.seen[-1].dtype == np.float16
    np.testing.assert_allclose(seg.backend.seen[-1][0, 0, 0, 0], (200 / 255 - 0.485) / 0.229, rtol=1e-3)
    inside = meta.replace(include_preprocess=True)
    seg = session(inside, TensorInfo("image", (1, 3, 8, 8), np.dtype(np.uint8)),
                  TensorInfo("logits", (1, 2, 8, 8), np.dtype(np.float32)), fn=lambda t: t[:, :2].astype(np.float32))
    seg.predict(image[..., ::-1], bgr=True)
    assert seg.backend.seen[-1].dtype == np.uint8 and (seg.backend.seen[-1] == 200).all()


def test_more_than_256_classes_give_uint16_masks():
    k = 300
    meta = ModelMetadata(model="big", classes=tuple(f"c{i}" for i in range(k)), input_size=(8, 8))
    # Class of each pixel = 10 * column + row: logits one-hot on that class.
    want = (10 * np.arange(8)[None, :] + np.arange(8)[:, None]) + 200

    def one_hot(tensor):
        logits = np.zeros((1, k, 8, 8), np.float32)
        logits[0, want, np.arange(8)[:, None], np.arange(8)[None, :]] = 1
        return logits

    seg = session(meta, TensorInfo("image", (1, 3, 8, 8), np.dtype(np.float32)),
                  TensorInfo("logits", (1, k, 8, 8), np.dtype(np.float32)), one_hot)
    mask = seg.predict(np.zeros((16, 16, 3), np.uint8))
    assert mask.dtype == np.uint16
    np.testing.assert_array_equal(mask, want.repeat(2, 0).repeat(2, 1))
    assert seg.colorize(mask).shape == (16, 16, 3)


@pytest.mark.parametrize("opencv", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.float16])
def test_argmax_classes_matches_numpy_including_ties(monkeypatch, opencv, dtype):
    if not opencv:
        monkeypatch.setattr(processing, "cv2_or_none", lambda: None)
    rng = np.random.default_rng(0)
    logits = rng.integers(-3, 3, (7, 20, 30)).astype(dtype)  # many ties
    want = np.argmax(logits, 0)
    np.testing.assert_array_equal(processing.argmax_classes(logits, 0), want)
    np.testing.assert_array_equal(processing.argmax_classes(logits.transpose(1, 2, 0), 2), want)
    # K = 1 and K = 2 (no loop past the first pair); the scratch buffers are reused, the
    # returned masks are not: an earlier result survives the next call.
    for k in (1, 2):
        few = logits[:k]
        np.testing.assert_array_equal(processing.argmax_classes(few, 0), np.argmax(few, 0))
    first = processing.argmax_classes(logits, 0)
    second = processing.argmax_classes(-logits, 0)
    np.testing.assert_array_equal(first, want)
    np.testing.assert_array_equal(second, np.argmax(-logits, 0))
    assert not np.shares_memory(first, second)


def test_numpy_fallback_matches_opencv(monkeypatch):
    rng = np.random.default_rng(1)
    mask = rng.integers(0, 5, (13, 17), dtype=np.uint8)
    image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    logits = rng.standard_normal((16, 16, 6)).astype(np.float32)
    with_cv2 = [resize.resize_nearest(mask, 50, 41), resize.resize_bilinear(image, 23, 61),
                resize.resize_bilinear(image, 97, 80), resize.resize_bilinear(logits, 40, 33)]
    monkeypatch.setattr(resize, "cv2_or_none", lambda: None)
    without = [resize.resize_nearest(mask, 50, 41), resize.resize_bilinear(image, 23, 61),
               resize.resize_bilinear(image, 97, 80), resize.resize_bilinear(logits, 40, 33)]
    np.testing.assert_array_equal(with_cv2[0], without[0])
    # OpenCV interpolates uint8 in fixed point: at most one level apart.
    assert np.abs(with_cv2[1].astype(int) - without[1]).max() <= 1
    assert np.abs(with_cv2[2].astype(int) - without[2]).max() <= 1
    np.testing.assert_allclose(with_cv2[3], without[3], atol=1e-4)


def test_letterbox_placement_is_centred():
    meta = ModelMetadata(model="l", classes=("a", "b"), input_size=(64, 96), resize="letterbox")
    pre = processing.Preprocessor(meta, TensorInfo("image", (1, 3, 64, 96), np.dtype(np.float32)))
    assert pre.place(100, 100) == processing.Placement(0, 16, 64, 64)
    assert pre.place(30, 300) == processing.Placement(27, 0, 10, 96)
    tensor, _ = pre(np.full((100, 100, 3), 255, np.uint8), bgr=False)
    # Padding is the mean colour, i.e. ~0 after normalization; the image is (1 - mean) / std.
    assert np.abs(tensor[0, :, :, :16]).max() < 0.01
    np.testing.assert_allclose(tensor[0, 0, 5, 40], (1 - 0.485) / 0.229, rtol=1e-5)


def test_graph_that_contradicts_metadata_is_refused():
    meta = ModelMetadata(model="x", classes=("a", "b", "c"), input_size=(8, 8))
    with pytest.raises(rt.UnsupportedModelError, match="not 3 class logits"):
        session(meta, TensorInfo("image", (1, 3, 8, 8), np.dtype(np.float32)),
                TensorInfo("logits", (1, 5, 8, 8), np.dtype(np.float32)))
    with pytest.raises(rt.UnsupportedModelError, match="without a scale"):
        session(meta, TensorInfo("image", (1, 3, 8, 8), np.dtype(np.int8)),
                TensorInfo("logits", (1, 3, 8, 8), np.dtype(np.float32)))


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("bgr", [False, True])
def test_table_lookup_matches_the_formula_with_and_without_opencv(monkeypatch, layout, bgr):
    meta = ModelMetadata(model="p", classes=("a", "b"), input_size=(16, 24), layout=layout)
    shape = (1, 3, 16, 24) if layout == "nchw" else (1, 16, 24, 3)
    pre = processing.Preprocessor(meta, TensorInfo("image", shape, np.dtype(np.float32)))
    image = np.random.default_rng(2).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    rgb = image[..., ::-1] if bgr else image
    want = (rgb / 255.0 - np.asarray(meta.mean)) / np.asarray(meta.std)
    want = want.transpose(2, 0, 1)[None] if layout == "nchw" else want[None]
    with_cv2 = pre(image, bgr=bgr)[0].copy()
    monkeypatch.setattr(processing, "cv2_or_none", lambda: None)
    without = pre(image, bgr=bgr)[0].copy()
    np.testing.assert_allclose(with_cv2, want, atol=1e-5)
    np.testing.assert_array_equal(with_cv2, without)
