"""Validation harness on hand-made ONNX files whose every prediction is known (no torch).

See tests/validate_helpers.py for the files and the numbers worked out by hand.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgeseg.validate import (
    CANNOT_RUN_HERE, FAILED_TO_LOAD, FAILED_VALIDATION, PASSED, DataMismatchError, Gates,
    ValidationSetupError, parse_data_spec, validate,
)
from validate_helpers import (
    EXPECTED_IDENTITY, EXPECTED_SWAPPED, IDENTITY, SIZE, SWAP_RED_GREEN, colour_onnx, hand_made_sample,
    write_folder_dataset,
)

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    nudged = IDENTITY + np.float32(1e-3) * np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32)
    return {
        "identity": colour_onnx(root / "identity.onnx", {None: IDENTITY}),
        "nudged": colour_onnx(root / "nudged.onnx", {None: nudged}),
        "swapped": colour_onnx(root / "swapped.onnx", {None: SWAP_RED_GREEN}),
        "two_heads": colour_onnx(root / "two_heads.onnx", {"a": IDENTITY, "b": IDENTITY}),
        "two_heads_bad_b": colour_onnx(root / "two_heads_bad_b.onnx", {"a": IDENTITY, "b": SWAP_RED_GREEN}),
        "hand_made": write_folder_dataset(root / "hand_made", [hand_made_sample()]),
        "root": root,
    }


def _only_domain(run, name):
    (result,) = [f for f in run.files if f.name == name]
    return result, result.domains


def test_harness_miou_equals_hand_computation(files):
    run = validate([files["identity"]], files["identity"], f"folder:{files['hand_made']}")
    result, (scored,) = _only_domain(run, "identity.onnx")
    assert result.status == PASSED
    iou = dict(zip(scored.scores.classes, scored.scores.per_class_iou))
    for name in ("red", "green", "blue"):
        assert iou[name] == pytest.approx(EXPECTED_IDENTITY[name], abs=1e-12)
    assert scored.scores.miou == pytest.approx(EXPECTED_IDENTITY["miou"], abs=1e-12)
    assert scored.scores.pixel_accuracy == pytest.approx(EXPECTED_IDENTITY["pixel_accuracy"], abs=1e-12)


def _independent_miou(pairs, num_classes, ignore=255):
    """Set-based IoU summed over images (no confusion matrix): |pred & label| / |pred | label|."""
    inter, union = np.zeros(num_classes), np.zeros(num_classes)
    for pred, label in pairs:
        keep = label != ignore
        for c in range(num_classes):
            p, t = (pred == c) & keep, (label == c) & keep
            inter[c] += np.logical_and(p, t).sum()
            union[c] += np.logical_or(p, t).sum()
    present = [c for c in range(num_classes) if any((label == c).any() for _, label in pairs)]
    return float(np.mean([inter[c] / union[c] for c in present]))


def test_harness_miou_over_several_images_equals_independent_computation(files):
    rng = np.random.default_rng(3)
    samples = [hand_made_sample()]
    for _ in range(3):  # random colour blocks with labels that partly disagree
        pred = np.kron(rng.integers(0, 3, (4, 4)), np.ones((4, 4), int)).astype(np.uint8)
        image = (np.eye(3, dtype=np.uint8)[pred] * 255).astype(np.uint8)
        label = np.where(rng.random((SIZE, SIZE)) < 0.3, rng.integers(0, 3, (SIZE, SIZE)), pred).astype(np.uint8)
        label[rng.random((SIZE, SIZE)) < 0.1] = 255
        samples.append((image, label))
    data = write_folder_dataset(files["root"] / "blocks", samples)
    run = validate([files["identity"]], files["identity"], f"folder:{data}:val")
    _, (scored,) = _only_domain(run, "identity.onnx")
    # The identity file predicts the pure colour of each pixel: the blocks themselves.
    predictions = [(np.argmax(image, axis=2), label) for image, label in samples]
    assert scored.images == 4
    assert scored.scores.miou == pytest.approx(_independent_miou(predictions, 3), abs=1e-12)


def test_known_bad_file_is_caught_by_the_gate(files):
    run = validate([files["identity"], files["swapped"]], files["identity"], f"folder:{files['hand_made']}")
    bad, (scored,) = _only_domain(run, "swapped.onnx")
    assert bad.status == FAILED_VALIDATION
    assert "mIoU drops 47.50 points" in bad.reason and "25.0000% of pixels" in bad.reason
    assert scored.miou_drop == pytest.approx(100 * (EXPECTED_IDENTITY["miou"] - EXPECTED_SWAPPED["miou"]))
    assert scored.agreement == pytest.approx(EXPECTED_SWAPPED["agreement"])
    assert scored.max_logit_error == pytest.approx(EXPECTED_SWAPPED["max_logit_error"], abs=1e-6)
    assert scored.mean_logit_error == pytest.approx(EXPECTED_SWAPPED["mean_logit_error"], abs=1e-6)
    assert scored.class_deltas == pytest.approx({"red": -67.5, "green": -75.0, "blue": 0.0})
    assert not run.passed and [f.name for f in run.failed] == ["swapped.onnx"]


def test_good_file_passes_with_small_logit_error(files):
    run = validate([files["nudged"]], files["identity"], f"folder:{files['hand_made']}")
    good, (scored,) = _only_domain(run, "nudged.onnx")
    assert good.status == PASSED and run.passed
    assert scored.agreement == 1.0 and scored.miou_drop == pytest.approx(0.0)
    assert 0 < scored.max_logit_error < 5e-3  # 1e-3-sized weight noise on pixels in [0, 1]


def test_gate_thresholds_and_per_class_gate(files):
    data = f"folder:{files['hand_made']}"
    loose = Gates(max_miou_drop=50, min_agreement=0.2)
    run = validate([files["swapped"]], files["identity"], data, gates=loose)
    assert run.files[0].status == PASSED
    run = validate([files["swapped"]], files["identity"], data, gates=Gates(50, 0.2, per_class_gate=True))
    assert run.files[0].status == FAILED_VALIDATION
    assert "class 'red' IoU drops 67.50" in run.files[0].reason
    assert "class 'green' IoU drops 75.00" in run.files[0].reason


def test_agreement_gate_follows_each_files_precision():
    gates = Gates()
    assert [gates.agreement_for(p) for p in ("fp32", "fp16", "int8", None)] == [0.999, 0.995, 0.90, 0.999]
    # 95% of pixels: fine for an int8 file, a failure for float files; the mIoU gate is shared.
    assert gates.failures(0.1, 0.95, {}, "int8") == []
    assert gates.failures(0.1, 0.95, {}, "fp32") == [
        "agrees with the reference on 95.0000% of pixels (gate 99.9000% for fp32 files)"
    ]
    assert gates.failures(0.1, 0.99, {}, "fp16") and not gates.failures(0.1, 0.996, {}, "fp16")
    assert gates.failures(0.6, 0.99, {}, "int8") == ["mIoU drops 0.60 points (gate 0.5)"]
    assert "90.0% (int8)" in gates.describe()
    fixed = Gates(min_agreement=0.5)  # given explicitly (--min-agreement): every precision
    assert fixed.agreement_for("fp32") == 0.5 and fixed.failures(0.1, 0.6, {}, "fp32") == []
    assert "50.0000%" in fixed.describe()


def test_multi_domain_file_is_scored_per_domain(files):
    data = [f"a=folder:{files['hand_made']}", f"b=folder:{files['hand_made']}:val"]
    run = validate([files["two_heads"], files["two_heads_bad_b"]], files["two_heads"], data)
    good, bad = run.files
    assert [d.domain for d in good.domains] == ["a", "b"] and good.status == PASSED
    scores = {d.domain: d for d in bad.domains}
    assert scores["a"].agreement == 1.0 and not scores["a"].gate_failures
    assert scores["b"].agreement == pytest.approx(0.25) and scores["b"].gate_failures
    assert bad.status == FAILED_VALIDATION and bad.reason.startswith("b: ")
    assert set(run.reference) == {"a", "b"}


def test_files_that_cannot_load_or_run_get_their_status(files):
    root = files["root"]
    truncated = root / "truncated.onnx"
    truncated.write_bytes(files["identity"].read_bytes()[:100])
    coreml = root / "model.mlpackage"
    coreml.mkdir(exist_ok=True)
    run = validate(
        [files["identity"], truncated, root / "missing.onnx", coreml], files["identity"],
        f"folder:{files['hand_made']}",
    )
    status = {f.name: f.status for f in run.files}
    assert status["identity.onnx"] == PASSED
    assert status["truncated.onnx"] == FAILED_TO_LOAD
    assert status["missing.onnx"] == FAILED_TO_LOAD
    if sys.platform != "darwin":
        assert status["model.mlpackage"] == CANNOT_RUN_HERE
        assert "macOS" in run.files[3].reason
    assert not run.passed  # "cannot run here" is never a pass
    assert {f.name for f in run.failed} == {"truncated.onnx", "missing.onnx"}


def test_wrong_data_for_the_model_is_a_clear_error(files):
    with pytest.raises(DataMismatchError, match="labels the classes .*road.* predicts .*red"):
        validate([files["identity"]], files["identity"], "synthetic:val", limit=1, data_options={"size": (32, 32)})


def test_bad_setup_is_refused(files):
    data = f"folder:{files['hand_made']}"
    with pytest.raises(ValidationSetupError, match="reference .* cannot be loaded"):
        validate([files["identity"]], files["root"] / "nope.safetensors", data)
    with pytest.raises(ValidationSetupError, match="at least 1 image"):
        validate([files["identity"]], files["identity"], data, limit=0)
    with pytest.raises(ValidationSetupError, match="no model files"):
        validate([], files["identity"], data)
    with pytest.raises(ValidationSetupError, match="no --data for domain 'b'"):
        validate([files["two_heads"]], files["two_heads"], [f"a={data}"])
    with pytest.raises(ValidationSetupError, match="min_agreement"):
        Gates(min_agreement=99.9)
    with pytest.raises(ValidationSetupError, match="max_miou_drop"):
        Gates(max_miou_drop=-1)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("synthetic:val", (None, "synthetic", "val")),
        ("synthetic", (None, "synthetic", "val")),
        ("night=synthetic:night:test", ("night", "synthetic:night", "test")),
        ("folder:/data/street", (None, "folder:/data/street", "val")),
        ("cityscapes:/data/cs:train", (None, "cityscapes:/data/cs", "train")),
    ],
)
def test_data_spec_parsing(text, expected):
    spec = parse_data_spec(text)
    assert (spec.domain, spec.spec, spec.split) == expected


def test_data_spec_errors():
    with pytest.raises(ValidationSetupError, match="names no dataset"):
        parse_data_spec(":val")
    with pytest.raises(ValidationSetupError, match="not a domain name"):
        parse_data_spec("my domain=synthetic")


def test_importing_the_harness_pulls_in_no_heavy_library():
    import subprocess

    heavy = ("torch", "onnx", "onnxruntime", "openvino", "tensorflow", "coremltools", "matplotlib", "cv2")
    code = (
        "import sys, edgeseg.validate, edgeseg.validate.bench, edgeseg.validate.report; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_backend_can_be_forced_for_a_file_without_its_suffix(files):
    temporary = files["root"] / ".identity.onnx.abc123.tmp"  # what an atomic write holds mid-conversion
    temporary.write_bytes(files["identity"].read_bytes())
    data = f"folder:{files['hand_made']}"
    assert validate([temporary], files["identity"], data).files[0].status == FAILED_TO_LOAD
    forced = validate([temporary], files["identity"], data, backend="onnxruntime").files[0]
    assert forced.status == PASSED and forced.backend == "onnxruntime"


def test_a_reference_of_another_model_fails_every_file(files):
    other = colour_onnx(files["root"] / "other.onnx", {"a": IDENTITY})  # one head named 'a'
    run = validate([files["identity"]], other, f"folder:{files['hand_made']}")
    assert run.files[0].status == FAILED_VALIDATION
    assert "give the checkpoint this file was converted from" in run.files[0].reason


def test_per_domain_file_is_scored_on_its_own_domain(files):
    head_b = colour_onnx(files["root"] / "head_b.onnx", {None: SWAP_RED_GREEN}, domain_of=("b", "a"))
    data = [f"a=folder:{files['hand_made']}", f"b=folder:{files['hand_made']}"]
    run = validate([head_b], files["two_heads"], data)
    (scored,) = run.files[0].domains
    assert scored.domain == "b" and scored.agreement == pytest.approx(0.25)
    assert run.files[0].status == FAILED_VALIDATION and run.files[0].reason.startswith("b: ")
