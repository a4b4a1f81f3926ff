"""edgeseg.runtime on files edgeseg did not write: standard TFLite metadata (written here with the
generated schema code MediaPipe ships, not edgeseg's writer), OpenVINO Model API model_info,
single-channel (binary) outputs, and load(path, metadata={...}) overrides."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

import edgeseg.runtime as rt  # noqa: E402
from edgeseg.runtime.tflite_metadata import add_associated_files, add_tflite_metadata  # noqa: E402
from interop_helpers import photo  # noqa: E402

SIZE = 64


class _Binary(nn.Module):
    """NHWC float image -> one channel: a colour rule (green over red and blue), smoothed, optionally
    sigmoid."""

    def __init__(self, sigmoid: bool, nhwc: bool = True) -> None:
        super().__init__()
        self.sigmoid, self.nhwc = sigmoid, nhwc
        self.conv = nn.Conv2d(3, 1, 5, padding=2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = -1.0 / 25
            self.conv.weight[0, 1] = 2.0 / 25
            self.conv.weight[0, 2] = -1.0 / 25
            self.conv.bias.fill_(0.2)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2) if self.nhwc else image
        y = self.conv(x) * 4
        y = torch.sigmoid(y) if self.sigmoid else y
        return y.permute(0, 2, 3, 1) if self.nhwc else y

    def reference(self, normalized_rgb: np.ndarray) -> np.ndarray:
        """The foreground mask at model size from normalized (H, W, 3) floats."""
        with torch.no_grad():
            out = self(torch.from_numpy(normalized_rgb[None].astype(np.float32)))
        return (out[0, ..., 0].numpy() > (0.5 if self.sigmoid else 0.0)).astype(np.uint8)


def _tflite_bytes(module: nn.Module) -> bytes:
    import litert_torch

    sample = torch.zeros(1, SIZE, SIZE, 3)
    return bytes(litert_torch.convert(module.eval(), (sample,)).model_content())


def _standard_metadata(labels_file: str, mean: list[float], std: list[float]) -> bytes:
    """A ModelMetadata flatbuffer written with MediaPipe's generated schema (object API)."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as s

    norm = s.NormalizationOptionsT()
    norm.mean, norm.std = mean, std
    unit = s.ProcessUnitT()
    unit.optionsType, unit.options = s.ProcessUnitOptions.NormalizationOptions, norm
    props = s.ImagePropertiesT()
    props.colorSpace = s.ColorSpaceType.RGB
    content = s.ContentT()
    content.contentPropertiesType, content.contentProperties = s.ContentProperties.ImageProperties, props
    image = s.TensorMetadataT()
    image.name, image.content, image.processUnits = "image", content, [unit]
    labels = s.AssociatedFileT()
    labels.name, labels.type = labels_file, s.AssociatedFileType.TENSOR_AXIS_LABELS
    mask = s.TensorMetadataT()
    mask.name, mask.associatedFiles = "segmentation", [labels]
    subgraph = s.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [image], [mask]
    model = s.ModelMetadataT()
    model.name, model.description, model.subgraphMetadata = "red_things", "a binary segmenter", [subgraph]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"M001")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def binary_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("foreign")
    sigmoid, logit = _Binary(sigmoid=True), _Binary(sigmoid=False)
    # Standard metadata only: inputs in [-1, 1] ((pixel - 127.5) / 127.5), labels name the foreground.
    data = add_tflite_metadata(_tflite_bytes(sigmoid), {"TFLITE_METADATA": _standard_metadata("labels.txt", [127.5], [127.5])})
    (folder / "without_labels.tflite").write_bytes(data)
    (folder / "standard.tflite").write_bytes(add_associated_files(data, {"labels.txt": b"red thing\n"}))
    (folder / "plain.tflite").write_bytes(_tflite_bytes(logit))  # no metadata at all
    return folder, sigmoid, logit


def _normalized(image: np.ndarray, mean, std) -> np.ndarray:
    import cv2

    small = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    return (small - np.float32(mean)) / np.float32(std)


def test_standard_tflite_metadata_and_a_sigmoid_output(binary_files):
    folder, sigmoid, _ = binary_files
    with pytest.warns(rt.MissingMetadataWarning, match="read from its standard TFLite metadata: classes, mean, model, std") as record:
        seg = rt.load(folder / "standard.tflite")
    text = str(record[0].message)
    assert "foreground where it passes 0.5 (a sigmoid ends the graph)" in text and "resize stretch" in text
    meta = seg.metadata
    assert meta.classes == ("background", "red thing") and meta.model == "red_things"
    assert meta.mean == pytest.approx((0.5,) * 3) and meta.std == pytest.approx((0.5,) * 3)
    for name in ("astronaut", "coffee", "chelsea"):
        image = photo(name)
        small = _resize(image)
        mask = seg.predict(small)
        expected = sigmoid.reference(_normalized(small, 0.5, 0.5))
        assert 0.01 < expected.mean() < 0.99, f"{name}: the rule gives a constant mask"
        assert np.mean(mask == expected) >= 0.999, name
        # The bug this fixes: ImageNet normalization and an argmax over one channel gave all zeros.
        assert mask.max() == 1


def test_mediapipe_agrees_on_the_standard_metadata_binary_file(binary_files):
    from interop_helpers import mediapipe_category_mask

    folder, _, _ = binary_files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rt.MissingMetadataWarning)
        seg = rt.load(folder / "standard.tflite")
    small = _resize(photo("coffee"))
    mp_mask, labels = mediapipe_category_mask(folder / "standard.tflite", small)
    assert labels == ["red thing"]
    # MediaPipe's binary category mask: 0 where the probability passes 0.5 (foreground), 255 elsewhere.
    assert np.mean((mp_mask == 0) == (seg.predict(small) == 1)) >= 0.999


def test_no_metadata_logit_output_thresholds_at_zero_and_says_what_it_assumed(binary_files):
    folder, _, logit = binary_files
    with pytest.warns(rt.MissingMetadataWarning) as record:
        seg = rt.load(folder / "plain.tflite")
    text = str(record[0].message)
    for said in ("64x64 nhwc input", "normalization in numpy", "foreground where it passes 0.0 (no sigmoid: logits)",
                 "2 classes named background..foreground", "mean (0.485, 0.456, 0.406)",
                 "std (0.229, 0.224, 0.225)", "resize stretch"):
        assert said in text, said
    small = _resize(photo("astronaut"))
    expected = logit.reference(_normalized(small, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    assert 0.01 < expected.mean() < 0.99
    assert np.mean(seg.predict(small) == expected) >= 0.999


def test_override_by_field_name(binary_files):
    folder, _, logit = binary_files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rt.MissingMetadataWarning)
        seg = rt.load(folder / "plain.tflite", metadata={"classes": ("sky", "cat"), "mean": (0.5,) * 3, "std": (0.5,) * 3})
    assert seg.metadata.classes == ("sky", "cat") and seg.metadata.mean == (0.5,) * 3
    small = _resize(photo("chelsea"))
    assert np.mean(seg.predict(small) == logit.reference(_normalized(small, 0.5, 0.5))) >= 0.999
    with pytest.raises(rt.MetadataError, match="unknown field 'colour'; ModelMetadata fields are model, classes"):
        rt.load(folder / "plain.tflite", metadata={"colour": 3})
    with pytest.raises(rt.MetadataError, match="names 3 classes .* has 1 class channel; give 2 class names"):
        rt.load(folder / "plain.tflite", metadata={"classes": ("a", "b", "c")})


def test_labels_that_contradict_the_graph_are_refused(binary_files, tmp_path):
    folder, _, _ = binary_files
    data = (folder / "without_labels.tflite").read_bytes()
    path = tmp_path / "three_labels.tflite"
    path.write_bytes(add_associated_files(data, {"labels.txt": b"a\nb\nc\n"}))
    with pytest.raises(rt.MetadataError, match="its standard TFLite metadata names 3 classes"):
        rt.load(path)
    # The labels file the metadata names is missing.
    with pytest.raises(rt.MetadataError, match="labels file 'labels.txt'"):
        rt.load(folder / "without_labels.tflite")


def test_openvino_model_info_without_edgeseg_entry(tmp_path):
    """An IR with Model API's model_info (BGR model: no reverse_input_channels) and no edgeseg entry."""
    import openvino as ov

    module = _Binary(sigmoid=False, nhwc=False).eval()
    model = ov.convert_model(module, example_input=torch.zeros(1, 3, SIZE, SIZE))
    model.reshape([1, 3, SIZE, SIZE])
    model.inputs[0].get_tensor().set_names({"image"})
    model.outputs[0].get_tensor().set_names({"segmentation"})
    for key, value in {"model_type": "Segmentation", "labels": "background red_thing",
                       "mean_values": "127.5", "scale_values": "127.5"}.items():
        model.set_rt_info(value, ["model_info", key])
    ov.save_model(model, str(tmp_path / "foreign.xml"))
    with pytest.warns(rt.MissingMetadataWarning, match="read from its OpenVINO Model API model_info: classes, extra, mean, std"):
        seg = rt.load(tmp_path / "foreign.xml")
    assert seg.metadata.classes == ("background", "red_thing") and seg.metadata.extra["channel_order"] == "bgr"
    small = _resize(photo("coffee"))
    # The model takes BGR: fed RGB, its colour rule would weigh the photo's red and blue swapped.
    with torch.no_grad():
        bgr = _normalized(small, 0.5, 0.5)[..., ::-1].copy()
        out = module(torch.from_numpy(bgr.transpose(2, 0, 1)[None]))
    expected = (out[0, 0].numpy() > 0).astype(np.uint8)
    assert 0.01 < expected.mean() < 0.99
    assert np.mean(seg.predict(small) == expected) >= 0.999


def _resize(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def test_standard_blocks_of_an_edgeseg_file_round_trip_without_its_edgeseg_entry(tmp_path):
    """A default edgeseg .tflite / .xml with its edgeseg entry taken out runs from the standard
    metadata alone (TFLite Metadata, Model API model_info) with the same classes and masks."""
    import re

    from edgeseg.converters import convert
    from edgeseg.integrity import PLACEHOLDER
    from interop_helpers import ColourSegModel

    model = ColourSegModel(num_classes=3, size=(64, 64))
    image = _resize(photo("coffee"))
    for target, suffix in (("tflite", ".tflite"), ("openvino", ".xml")):
        path = convert(model, target, out=tmp_path / f"m{suffix}").path
        # The foreign copy records no verified precision and runs at f32: compare at f32.
        full = rt.load(path, precision="fp32" if target == "openvino" else None)
        data = path.read_bytes()
        stamped = full.metadata.checksum.encode()
        if target == "tflite":  # rename the entry (same length) and drop the checksum it held
            data = data.replace(b"\x07\x00\x00\x00edgeseg\x00", b"\x07\x00\x00\x00xdgeseg\x00", 1)
            data = data.replace(stamped, PLACEHOLDER.encode())
        else:
            data = re.sub(rb"<edgeseg value=\"[^\"]*\" />\s*", b"", data)
        foreign = tmp_path / f"foreign{suffix}"
        foreign.write_bytes(data)
        if target == "openvino":
            foreign.with_suffix(".bin").write_bytes(path.with_suffix(".bin").read_bytes())
        with pytest.warns(rt.MissingMetadataWarning, match="classes"):
            seg = rt.load(foreign)
        assert seg.metadata.classes == full.metadata.classes, target
        assert seg.metadata.include_preprocess == full.metadata.include_preprocess, target
        assert seg.metadata.mean == pytest.approx(full.metadata.mean) or seg.metadata.include_preprocess, target
        assert np.array_equal(seg.predict(image), full.predict(image)), target
        # Overrides apply to edgeseg's own files too, checked like the file's own metadata.
        seg = rt.load(path, metadata={"classes": ("road", "car", "tree"), "resize": "letterbox"})
        assert seg.metadata.classes == ("road", "car", "tree") and seg.metadata.resize == "letterbox"
        with pytest.raises(rt.MetadataError, match="resize 'squash' is not one of"):
            rt.load(path, metadata={"resize": "squash"})
        with pytest.raises(rt.MetadataError, match="the override names 2 classes but the graph output .* has 3 class"):
            rt.load(path, metadata={"classes": ("road", "car")})
