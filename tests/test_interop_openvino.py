"""A default `edgeseg convert --target openvino` file runs unchanged in OpenVINO Model API
(`Model.create_model(xml)` -> SegmentationModel, preprocessing from the file's model_info), and
its class masks agree with edgeseg.runtime's on natural photos."""

from __future__ import annotations

import numpy as np
import pytest

import edgeseg.runtime as rt
from edgeseg.converters import convert
from interop_helpers import PHOTOS, ColourSegModel, model_api_mask, photo

pytest.importorskip("model_api")


@pytest.fixture(scope="module")
def default_xml(tmp_path_factory):
    model = ColourSegModel(num_classes=4, size=(64, 96))
    model.metadata = model.metadata.replace(classes=("sky", "tree top", "road", "person"))
    path = tmp_path_factory.mktemp("interop") / "colour.xml"
    convert(model, "openvino", out=path)  # every option left at its default
    return path, model.metadata


def test_model_info_describes_the_file(default_xml):
    import openvino as ov

    path, meta = default_xml
    model = ov.Core().read_model(str(path))
    assert [d.get_length() for d in model.inputs[0].get_partial_shape()] == [1, 3, 64, 96]  # static
    info = {key: model.get_rt_info(["model_info", key]).astype(str) for key in model.get_rt_info()["model_info"]}
    assert info["model_type"] == "Segmentation"
    assert info["labels"] == "sky tree_top road person"  # Model API splits labels on whitespace
    assert [float(v) for v in info["mean_values"].split()] == pytest.approx([255 * m for m in meta.mean], rel=1e-5)
    assert [float(v) for v in info["scale_values"].split()] == pytest.approx([255 * s for s in meta.std], rel=1e-5)
    assert (info["reverse_input_channels"], info["resize_type"]) == ("True", "standard")


def test_model_api_segmentation_model_agrees_with_the_runtime_on_photos(default_xml):
    import cv2

    path, meta = default_xml
    seg = rt.load(path)
    seg_f32 = rt.load(path, precision="fp32")
    height, width = meta.input_size
    for name in PHOTOS:
        image = photo(name)
        mask, wrapper = model_api_mask(path, image)
        assert type(wrapper).__name__ == "SegmentationModel"
        assert wrapper.params.labels == ["sky", "tree_top", "road", "person"]
        assert mask.shape == image.shape[:2]  # Model API resizes the mask to the image
        ours = seg.predict(image)
        assert len(np.unique(ours)) >= 2, f"{name}: constant mask, the test would prove nothing"
        # Both argmax at model size and resize the mask with nearest neighbours; the input resize
        # differs (OpenVINO's preprocessing Interpolate vs cv2.resize) near ties only, and Model API
        # computes at the CPU's default precision (bf16 on CPUs with bf16 units).
        assert np.mean(mask == ours) >= 0.98, name
        small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        mask, _ = model_api_mask(path, small)
        assert np.mean(mask == seg.predict(small)) >= 0.99, name
        # Both at f32 (edgeseg.runtime's default is the fastest precision the file records as
        # verified: bf16 where it passed) and at the model's size: the same mask.
        mask, _ = model_api_mask(path, small, f32=True)
        assert np.mean(mask == seg_f32.predict(small)) >= 0.999, name
