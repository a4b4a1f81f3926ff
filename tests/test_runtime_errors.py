"""Bad images and bad model files: each gets a typed error that names the problem and the fix."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from runtime_helpers import random_image

import edgeseg.runtime as rt
from edgeseg.errors import EdgesegError


@pytest.fixture(scope="module")
def seg(model_files):
    return rt.load(model_files["onnx"], threads=1)


@pytest.mark.parametrize(
    "image, error, message",
    [
        (np.zeros((32, 32), np.uint8), rt.ImageChannelsError, "grayscale.*np.repeat"),
        (np.zeros((32, 32, 1), np.uint8), rt.ImageChannelsError, "grayscale"),
        (np.zeros((32, 32, 4), np.uint8), rt.ImageChannelsError, r"RGBA.*image\[\.\.\., :3\]"),
        (np.zeros((3, 32, 40), np.uint8), rt.ImageChannelsError, "channel-first.*transpose"),
        (np.zeros((2, 32, 32, 3), np.uint8), rt.ImageChannelsError, "predict_batch"),
        (np.zeros((32, 32, 5), np.uint8), rt.ImageChannelsError, r"\(H, W, 3\)"),
        (np.zeros((0, 32, 3), np.uint8), rt.ImageSizeError, "empty"),
        (np.zeros((1, 1, 3), np.uint8), rt.ImageSizeError, "at least 8"),
        (np.zeros((32, 32, 3), np.uint16), rt.ImageDtypeError, "uint16.*>> 8"),
        (np.zeros((32, 32, 3), bool), rt.ImageDtypeError, "bool"),
        (np.full((32, 32, 3), 200.0, np.float32), rt.ImageValueError, r"\[0, 1\].*astype\(np.uint8\)"),
        (np.full((32, 32, 3), -0.5, np.float64), rt.ImageValueError, r"\[0, 1\]"),
        ([[1, 2, 3]], rt.ImageDtypeError, "numpy array"),
    ],
    ids=["gray2d", "gray1", "rgba", "chw", "batch", "5ch", "empty", "1px", "uint16", "bool", "float255", "negative", "list"],
)
def test_bad_images_raise_typed_errors(seg, image, error, message):
    with pytest.raises(error, match=message):
        seg.predict(image)


def test_nan_and_inf_in_float_images(seg):
    image = np.full((32, 32, 3), 0.5, np.float32)
    image[3, 4, 1] = np.nan
    with pytest.raises(rt.ImageValueError, match="NaN"):
        seg.predict(image)
    image[3, 4, 1] = np.inf
    with pytest.raises(rt.ImageValueError, match="infinity"):
        seg.predict(image)


def test_very_large_images_are_refused_before_any_copy(seg):
    # A 20000 x 20000 view of one pixel: no memory behind it, so refusing must come first.
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (20000, 20000, 3))
    with pytest.raises(rt.ImageSizeError, match="400 megapixels.*max_image_pixels"):
        seg.predict(huge)
    seg.max_image_pixels = 1000
    try:
        with pytest.raises(rt.ImageSizeError):
            seg.predict(random_image(40, 40))
    finally:
        seg.max_image_pixels = rt.images.MAX_IMAGE_PIXELS


def test_image_errors_are_edgeseg_errors(seg):
    with pytest.raises(EdgesegError):
        seg.predict(np.zeros((32, 32, 4), np.uint8))


def test_missing_model_file(tmp_path):
    with pytest.raises(rt.ModelFileNotFoundError, match="does not exist"):
        rt.load(tmp_path / "nope.onnx")


def test_truncated_and_corrupted_onnx(model_files, tmp_path):
    data = model_files["onnx"].read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(rt.ModelFileError, match="truncated, corrupted"):
        rt.load(truncated)
    corrupted = tmp_path / "corrupted.onnx"
    corrupted.write_bytes(bytes(b ^ 0x5A for b in data[:200]) + data[200:])
    with pytest.raises(rt.ModelFileError, match="truncated, corrupted"):
        rt.load(corrupted)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(rt.ModelFileError, match="empty"):
        rt.load(empty)


def test_truncated_tflite_is_refused(model_files, tmp_path):
    data = model_files["tflite"].read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(rt.ModelFileError, match="convert or copy it again|convert the model again"):
        rt.load(truncated)
    not_tflite = tmp_path / "text.tflite"
    not_tflite.write_bytes(b"hello, this is not a model at all")
    with pytest.raises(rt.ModelFileError, match="does not start like a TFLite file"):
        rt.load(not_tflite)


def test_renamed_files_say_what_they_are(model_files, tmp_path):
    renamed = tmp_path / "model.onnx"
    shutil.copy(model_files["tflite"], renamed)
    with pytest.raises(rt.ModelFileError, match="content is a TFLite file.*suffix .tflite"):
        rt.load(renamed)
    unknown = tmp_path / "model.bin2"
    shutil.copy(model_files["tflite"], unknown)
    with pytest.raises(rt.UnsupportedModelError, match="rename it to .tflite"):
        rt.load(unknown)
    checkpoint = tmp_path / "weights.onnx"
    shutil.copy(model_files["ckpt"], checkpoint)
    with pytest.raises(rt.ModelFileError, match="safetensors"):
        rt.load(checkpoint)


def test_openvino_xml_without_bin(model_files, tmp_path):
    xml = tmp_path / "model.xml"
    shutil.copy(model_files["openvino"], xml)
    with pytest.raises(rt.ModelFileNotFoundError, match=r"model\.bin.*missing.*together"):
        rt.load(xml)
    (tmp_path / "model.bin").write_bytes(model_files["openvino"].with_suffix(".bin").read_bytes()[:100])
    with pytest.raises(rt.ModelFileError, match="convert again"):
        rt.load(xml)


def test_unknown_backend_name(model_files):
    with pytest.raises(rt.errors.ConfigError, match="not one of"):
        rt.load(model_files["onnx"], backend="tensorrt")


def test_metadata_that_contradicts_the_graph_is_refused(model_files, tmp_path):
    import onnx

    proto = onnx.load(str(model_files["onnx"]))
    for entry in proto.metadata_props:
        if entry.key == "edgeseg":
            entry.value = entry.value.replace('"input_size": [64, 64]', '"input_size": [128, 128]')
    path = tmp_path / "lying.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(rt.UnsupportedModelError, match="input_size 128x128"):
        rt.load(path)
