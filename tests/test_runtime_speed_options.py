"""Issue 15's speed options: the verified inference precision an OpenVINO file records and the
runtime picks, ONNX Runtime's spinning option, and low-resolution output (--output-stride).

Three conversions of a tiny 64x64 model (ONNX at full resolution and at stride 4, OpenVINO with
its bf16 check); everything else is checked on those files or without converting.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from convert_helpers import TinySegModel  # noqa: E402

import edgeseg.runtime as rt  # noqa: E402
from edgeseg.errors import ConfigError  # noqa: E402
from edgeseg.runtime.errors import ConfigError as RuntimeConfigError  # noqa: E402

SIZE = (64, 64)


def _model(separated: bool = False) -> TinySegModel:
    torch.manual_seed(0)
    model = TinySegModel()
    if separated:  # well separated logits: a bf16 computation keeps the classes (passes the gate)
        with torch.no_grad():
            model.decoder.classifier.weight.mul_(100)
    return model


def _image(height=90, width=120, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- precision: recorded by the converter, picked by the runtime ----------------------------------
@pytest.fixture(scope="module")
def openvino_file(tmp_path_factory):
    from edgeseg.converters import convert

    folder = tmp_path_factory.mktemp("precision")
    return convert(_model(separated=True), "openvino", input_size=SIZE, out=folder / "tiny.xml").files[0]


def _cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_openvino_file_records_the_precisions_that_passed_its_gate(openvino_file):
    meta = openvino_file.metadata
    assert meta.inference_precisions[0] == "fp32"
    if not _cpu_has_bf16():
        assert meta.inference_precisions == ("fp32",) and "precision_checks" not in meta.extra
        return
    agreement = meta.extra["precision_checks"]["bf16"]
    assert agreement >= 0.995  # well separated logits: bf16 keeps nearly every pixel's class
    assert meta.inference_precisions == ("fp32", "bf16")
    # What the file carries is what the conversion reports.
    assert rt.load(openvino_file.path).metadata.inference_precisions == ("fp32", "bf16")


def test_runtime_picks_the_fastest_verified_precision_and_says_so(openvino_file):
    from edgeseg.cli.inspect import inspect_file

    fastest = "bf16" if _cpu_has_bf16() else "fp32"
    seg = rt.load(openvino_file.path)
    assert seg.backend.inference_precision == fastest and seg.precision == fastest
    assert f"computed at {fastest}" in seg.describe()
    forced = rt.load(openvino_file.path, precision="fp32")
    assert forced.precision == "fp32" and forced.backend.precision_note == "asked with precision="
    image = _image()
    assert np.mean(seg.predict(image) == forced.predict(image)) >= 0.995
    assert inspect_file(openvino_file.path)["inference_precision"]["precision"] == fastest


def test_file_without_the_record_runs_at_fp32(openvino_file, tmp_path):
    import openvino as ov

    from edgeseg.metadata import METADATA_KEY

    model = ov.Core().read_model(str(openvino_file.path))
    data = json.loads(model.get_rt_info([METADATA_KEY]).astype(str))
    del data["inference_precisions"]  # as files written before the record existed
    data["checksum"] = None
    model.set_rt_info(json.dumps(data), [METADATA_KEY])
    ov.save_model(model, str(tmp_path / "old.xml"), compress_to_fp16=False)
    seg = rt.load(tmp_path / "old.xml")
    assert seg.metadata.inference_precisions == ()
    assert seg.precision == "fp32" and "no verified precision" in seg.backend.precision_note


def test_precision_choice_rules():
    from edgeseg.runtime.openvino import pick_precision, recorded_precisions

    assert pick_precision((), ["BF16", "FP32"]) == "fp32"
    assert pick_precision(("fp32", "bf16"), ["FP32"]) == "fp32"  # the CPU has no bf16
    assert pick_precision(("fp32", "bf16"), ["BF16", "FP32"]) == "bf16"
    assert pick_precision(("fp32", "fp16", "bf16"), ["FP16", "BF16"]) == "bf16"
    assert recorded_precisions(json.dumps({"inference_precisions": ["fp32", "bf16"]})) == ("fp32", "bf16")
    assert recorded_precisions(json.dumps({"inference_precisions": "bf16"})) == ()  # damaged: nothing
    assert recorded_precisions("{not json") == () and recorded_precisions(None) == ()
    from edgeseg.metadata import ModelMetadata

    with pytest.raises(ConfigError, match="inference_precisions"):
        ModelMetadata.from_dict({"model": "m", "classes": ["a"], "inference_precisions": ["int4"]})


# --- ONNX Runtime spinning --------------------------------------------------------------------------
def test_spinning_option(onnx_files):
    from edgeseg.runtime import onnx as ort_backend

    full, _ = onnx_files
    assert rt.load(full).backend.spinning is ort_backend.SPINNING
    for spinning in (True, False):
        seg = rt.load(full, threads=2, spinning=spinning)
        assert seg.backend.spinning is spinning
        entries = seg.backend._session.get_session_options().get_session_config_entry
        assert entries("session.intra_op.allow_spinning") == ("1" if spinning else "0")
        assert seg.predict(_image()).shape == (90, 120)
    with pytest.raises(RuntimeConfigError, match="spinning"):
        rt.load(full, spinning="yes")


def test_spinning_is_refused_by_other_backends(openvino_file):
    with pytest.raises(RuntimeConfigError, match="ONNX Runtime option"):
        rt.load(openvino_file.path, spinning=False)


# --- low-resolution output ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    from edgeseg.converters import convert

    folder = tmp_path_factory.mktemp("stride")
    model = _model()
    full = convert(model, "onnx", input_size=SIZE, out=folder / "full.onnx").path
    low = convert(model, "onnx", input_size=SIZE, out=folder / "low.onnx", output_stride=4).path
    return full, low


def test_output_stride_file_is_low_resolution_and_declares_it(onnx_files):
    import onnx

    _, low = onnx_files
    seg = rt.load(low)
    assert seg.metadata.output_stride == 4 and seg.metadata.output_size == (16, 16)
    assert seg.backend.outputs["logits"].shape == (1, 5, 16, 16)  # no final upsample in the graph
    props = {p.key: p.value for p in onnx.load(str(low)).metadata_props}
    declared = json.loads(props["edgeseg"])
    # Schema 2: a runtime that does not know output_stride refuses the file instead of misreading it.
    assert declared["output_stride"] == 4 and declared["schema_version"] == 2
    assert "1/4" in seg.describe()


@pytest.mark.parametrize("frame", [(90, 120), (64, 64), (200, 50)])
def test_output_stride_runtime_matches_the_full_resolution_file(onnx_files, frame):
    full, low = (rt.load(p) for p in onnx_files)
    for seed in range(3):
        image = _image(*frame, seed=seed)
        a, b = full.predict(image), low.predict(image)
        assert b.shape == frame and b.dtype == np.uint8
        # The runtime's argmax of the upsampled logits is exact: the same masks as the graph's upsample.
        assert np.mean(a == b) >= 0.995
        la, lb = full.predict(image, logits=True), low.predict(image, logits=True)
        assert lb.shape == (*frame, 5) and np.abs(la - lb).max() < 1e-4


def test_output_stride_letterbox_matches_the_full_resolution_file(onnx_files):
    full, low = (rt.load(p, metadata={"resize": "letterbox"}) for p in onnx_files)
    image = _image(50, 140)
    assert np.mean(full.predict(image) == low.predict(image)) >= 0.995


def test_argmax_upsampled_equals_torch():
    from edgeseg.runtime.processing import argmax_upsampled

    rng = np.random.default_rng(0)
    for stride, (h, w, k) in [(8, (12, 10, 19)), (4, (16, 24, 5)), (3, (10, 7, 4)), (2, (5, 5, 3)), (8, (4, 4, 1))]:
        logits = rng.normal(size=(h, w, k)).astype(np.float32)
        reference = torch.nn.functional.interpolate(
            torch.from_numpy(logits.transpose(2, 0, 1))[None], scale_factor=stride, mode="bilinear",
            align_corners=False)[0].argmax(0).numpy()
        assert np.array_equal(argmax_upsampled(logits, stride), reference)


def test_bad_output_strides_are_refused(tmp_path):
    from edgeseg.converters import convert

    with pytest.raises(ConfigError, match="must divide 4"):
        convert(_model(), "onnx", input_size=SIZE, out=tmp_path / "x.onnx", output_stride=8)
    with pytest.raises(ConfigError, match="--argmax with --output-stride"):
        convert(_model(), "onnx", input_size=SIZE, out=tmp_path / "x.onnx", output_stride=4, argmax=True)
    with pytest.raises(ConfigError, match="from 1"):
        convert(_model(), "onnx", input_size=SIZE, out=tmp_path / "x.onnx", output_stride=0)
    assert not list(tmp_path.iterdir())
