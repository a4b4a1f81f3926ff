"""CoreML files take an image (ImageType) by default, so Vision can hand them a camera pixel
buffer; `coreml_input="tensor"` keeps the float MultiArray. CoreML cannot run on Linux: these
tests read the saved spec (input type, colour layout, the scale/bias the image meets, labels)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.converters import convert
from edgeseg.errors import ConfigError
from interop_helpers import ColourSegModel

ct = pytest.importorskip("coremltools")


def _spec(path):
    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


def _consumers_of_image(spec) -> list:
    """The ML Program's ops that read the image input, with their constant arguments."""
    block = next(iter(spec.mlProgram.functions["main"].block_specializations.values()))
    consts = {op.outputs[0].name: op for op in block.operations if op.type == "const"}
    found = []
    for op in block.operations:
        args = {k: [a.name for a in v.arguments] for k, v in op.inputs.items()}
        if ["image"] in args.values():
            values = {k: np.array(consts[v[0]].attributes["val"].immediateValue.tensor.floats.values)
                      for k, v in args.items() if v[0] in consts}
            found.append((op.type, values))
    return found


def test_default_coreml_input_is_an_rgb_image_with_labels(tmp_path):
    model = ColourSegModel(num_classes=3, size=(64, 96))
    result = convert(model, "coreml", out=tmp_path / "m.mlpackage")
    meta = result.files[0].metadata
    assert meta.include_preprocess and meta.layout == "nchw" and meta.extra["coreml_input"] == "image"
    spec = _spec(result.path)
    (image,) = spec.description.input
    assert image.type.WhichOneof("Type") == "imageType"
    assert (image.type.imageType.height, image.type.imageType.width) == (64, 96)
    assert image.type.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    # Scale 1, bias 0 at the input (ImageType has one scale for all channels): the image reaches
    # the graph as pixels 0..255 and the graph's first op normalizes per channel.
    ((kind, values),) = _consumers_of_image(spec)
    mean, std = np.float32(meta.mean), np.float32(meta.std)
    if kind == "batch_norm":  # coremltools fuses the multiply-add
        scale, shift = values["gamma"] / np.sqrt(values["variance"] + 1e-5), values["beta"]
    else:
        assert kind == "mul", kind
        scale, shift = values["y"], None
    np.testing.assert_allclose(scale, 1 / (255 * std), rtol=1e-4)
    if shift is not None:
        np.testing.assert_allclose(shift, -mean / std, rtol=1e-4)
    user = dict(spec.description.metadata.userDefined)
    assert user["com.apple.coreml.model.preview.type"] == "imageSegmenter"
    assert json.loads(user["com.apple.coreml.model.preview.params"]) == {"labels": list(meta.classes)}
    assert json.loads(user["edgeseg"])["classes"] == list(meta.classes)
    assert "3 classes" in spec.description.metadata.shortDescription


def test_tensor_input_keeps_the_float_multiarray(tmp_path):
    model = ColourSegModel(num_classes=3, size=(64, 64))
    result = convert(model, "coreml", coreml_input="tensor", out=tmp_path / "t.mlpackage")
    (image,) = _spec(result.path).description.input
    assert image.type.WhichOneof("Type") == "multiArrayType"
    assert image.type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert not result.files[0].metadata.include_preprocess and result.files[0].metadata.extra["coreml_input"] == "tensor"


def test_image_input_refuses_what_an_imagetype_cannot_take(tmp_path):
    model = ColourSegModel(num_classes=3, size=(64, 64))
    with pytest.raises(ConfigError, match="--layout nhwc needs --coreml-input tensor"):
        convert(model, "coreml", layout="nhwc", out=tmp_path / "n.mlpackage")
    with pytest.raises(ConfigError, match="--no-include-preprocess needs --coreml-input tensor"):
        convert(model, "coreml", include_preprocess=False, out=tmp_path / "n.mlpackage")
    with pytest.raises(ConfigError, match="--coreml-input is a CoreML option"):
        convert(model, "onnx", coreml_input="image", out=tmp_path / "n.onnx")
