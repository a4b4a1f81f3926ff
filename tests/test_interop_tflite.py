"""A default `edgeseg convert --target tflite` file runs unchanged in MediaPipe Tasks'
ImageSegmenter (NHWC uint8 input, standard TFLite metadata, labels as an associated file), and its
category masks agree with edgeseg.runtime's on natural photos."""

from __future__ import annotations

import numpy as np
import pytest

import edgeseg.runtime as rt
from edgeseg.converters import convert
from edgeseg.runtime.tflite_metadata import STANDARD_KEY, read_standard_metadata, read_tflite_metadata
from interop_helpers import (
    PHOTOS, ColourSegModel, mediapipe_category_mask, mediapipe_confidence_masks, mediapipe_style_input, mediapipe_style_mask, photo,
)

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def default_tflite(tmp_path_factory):
    model = ColourSegModel(num_classes=4, size=(64, 96))
    path = tmp_path_factory.mktemp("interop") / "colour.tflite"
    convert(model, "tflite", out=path)  # every option left at its default
    return path, model.metadata


def test_default_file_is_nhwc_uint8_with_standard_metadata(default_tflite):
    path, meta = default_tflite
    seg = rt.load(path)
    assert (seg.metadata.layout, seg.metadata.include_preprocess) == ("nhwc", True)
    assert seg.backend.input.shape == (1, 64, 96, 3) and seg.backend.input.dtype == np.uint8
    standard = read_standard_metadata(path.read_bytes())
    assert standard.name == "colour_test" and standard.version == seg.metadata.edgeseg_version
    assert standard.color_space == "RGB" and standard.image_size == (64, 96)
    assert (standard.mean, standard.std) == ((0.0,), (1.0,))  # uint8 pixels go in as they are
    assert [o.name for o in standard.outputs] == ["logits"]
    assert standard.outputs[0].labels == meta.classes and standard.outputs[0].labels_file == "labels.txt"


def test_standard_metadata_parses_with_the_schema_mediapipe_ships(default_tflite):
    """The flatbuffer read back with the generated metadata_schema code inside the MediaPipe wheel."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    path, _ = default_tflite
    buf = read_tflite_metadata(path.read_bytes())[STANDARD_KEY]
    assert schema.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
    model = schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAs(buf, 0))
    (subgraph,) = model.subgraphMetadata
    (image,) = subgraph.inputTensorMetadata
    assert image.content.contentPropertiesType == schema.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == schema.ColorSpaceType.RGB
    assert (image.content.contentProperties.defaultSize.width, image.content.contentProperties.defaultSize.height) == (96, 64)
    (unit,) = image.processUnits
    assert unit.optionsType == schema.ProcessUnitOptions.NormalizationOptions
    (labels,) = subgraph.outputTensorMetadata[0].associatedFiles
    assert (labels.name, labels.type) == (b"labels.txt", schema.AssociatedFileType.TENSOR_AXIS_LABELS)
    from mediapipe.tasks.metadata import image_segmenter_metadata_schema_py_generated as segmenter_schema

    (custom,) = subgraph.customMetadata
    assert custom.name == b"SEGMENTER_METADATA"
    options = segmenter_schema.ImageSegmenterOptions.GetRootAs(bytes(bytearray(custom.data)), 0)
    assert options.Activation() == segmenter_schema.Activation.SOFTMAX


def test_mediapipe_image_segmenter_agrees_with_the_runtime_on_photos(default_tflite):
    path, meta = default_tflite
    seg = rt.load(path)
    height, width = meta.input_size
    for name in PHOTOS:
        image = photo(name)
        # At the model's input size neither side resizes: the masks must be the same, which
        # checks layout, colour order, normalization and labels end to end.
        small = _resized(image, height, width)
        mp_mask, labels = mediapipe_category_mask(path, small)
        assert labels == list(meta.classes)
        ours = seg.predict(small)
        assert len(np.unique(ours)) >= 2, f"{name}: constant mask, the test would prove nothing"
        assert np.mean(mp_mask == ours) >= 0.999, name
        if name == PHOTOS[0]:  # SOFTMAX from the file's SEGMENTER_METADATA: confidences are probabilities
            confidences = mediapipe_confidence_masks(path, small)
            np.testing.assert_allclose(confidences.sum(-1), 1.0, atol=1e-4)
            assert np.mean(confidences.argmax(-1) == ours) >= 0.999
        # At the photo's own size the two resample differently (see interop_helpers): MediaPipe
        # samples the input at pixel corners and interpolates the logits corner-aligned before
        # its argmax. With exactly that resampling done here, the masks are the same again:
        # what differs is the resampling convention, nothing the file declares.
        mp_mask, _ = mediapipe_category_mask(path, image)
        assert mp_mask.shape == image.shape[:2]
        assert np.mean(mp_mask == seg.predict(image)) >= 0.9, name
        logits = seg.predict(mediapipe_style_input(image, height, width), logits=True)
        assert np.mean(mp_mask == mediapipe_style_mask(logits, *image.shape[:2])) >= 0.999, name


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
