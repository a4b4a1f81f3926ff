"""The harness on a real conversion: a zoo model exported to ONNX passes; the same file with its
weights perturbed (refused at load by its checksum; caught by the gates when it carries none), and
a perturbed checkpoint, are caught; the harness's mIoU equals a set-based computation over the
masks the runtime predicts."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from edgeseg.validate import FAILED_TO_LOAD, FAILED_VALIDATION, PASSED, validate  # noqa: E402

DATA = "synthetic:val"
OPTIONS = {"size": (64, 96)}
IMAGES = 3


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.converters import convert
    from edgeseg.data.synthetic import FINE_CLASSES
    from edgeseg.models import create_model, tiny_config

    root = tmp_path_factory.mktemp("converted")
    torch.manual_seed(0)
    model = create_model(
        "lraspp_mobilenetv3_small", classes=FINE_CLASSES, input_size=(64, 64),
        **tiny_config("lraspp_mobilenetv3_small"),
    ).eval()
    reference = save_checkpoint(model, root / "tiny.safetensors")
    good = convert(reference, "onnx", out=root / "tiny.onnx").path
    with torch.no_grad():  # the same architecture with every weight scaled by up to +-100%
        for p in model.parameters():
            p.mul_(1 + torch.randn_like(p))
    bad_checkpoint = save_checkpoint(model, root / "tiny_perturbed.safetensors")
    return {"reference": reference, "good": good, "bad_checkpoint": bad_checkpoint,
            "bad_onnx": _perturbed_onnx(good, root / "tiny_perturbed.onnx", keep_checksum=False),
            "damaged_onnx": _perturbed_onnx(good, root / "tiny_damaged.onnx", keep_checksum=True)}


def _perturbed_onnx(source, dest, *, keep_checksum: bool):
    """The converted file with noise on its weights. With its checksum dropped from the metadata
    it is a self-consistent, silently broken export (only the gates catch it); with the checksum
    kept it is a file damaged after conversion."""
    import onnx
    from onnx import numpy_helper

    from edgeseg.metadata import METADATA_KEY, ModelMetadata

    model = onnx.load(str(source))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype == np.float32 and values.size > 16:
            noisy = values * (1 + rng.standard_normal(values.shape)).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    if not keep_checksum:
        (entry,) = [p for p in model.metadata_props if p.key == METADATA_KEY]
        entry.value = ModelMetadata.from_json(entry.value).replace(checksum=None).to_json()
    onnx.save(model, str(dest))
    return dest


@pytest.fixture(scope="module")
def run(converted):
    files = [converted["good"], converted["bad_onnx"], converted["bad_checkpoint"], converted["damaged_onnx"]]
    return validate(files, converted["reference"], DATA, limit=IMAGES, data_options=OPTIONS)


def test_converted_onnx_passes(run):
    good = run.files[0]
    (scored,) = good.domains
    assert good.status == PASSED, good.reason
    assert scored.agreement >= 0.999 and scored.max_logit_error < 1e-3
    assert abs(scored.miou_drop) <= 0.5
    assert scored.images == IMAGES


@pytest.mark.parametrize("index", [1, 2], ids=["perturbed_onnx", "perturbed_checkpoint"])
def test_perturbed_weights_are_caught(run, index):
    bad = run.files[index]
    (scored,) = bad.domains
    assert bad.status == FAILED_VALIDATION
    assert scored.agreement < 0.999 and "agrees with the reference on" in bad.reason
    assert scored.max_logit_error > 1e-2


def test_file_damaged_after_conversion_fails_to_load(run):
    damaged = run.files[3]
    assert damaged.status == FAILED_TO_LOAD and not damaged.domains
    assert "do not match the checksum recorded at conversion" in damaged.reason


def _set_based_miou(pairs, num_classes):
    inter, union, present = np.zeros(num_classes), np.zeros(num_classes), np.zeros(num_classes, bool)
    for pred, label in pairs:
        keep = label != 255
        for c in range(num_classes):
            p, t = (pred == c) & keep, (label == c) & keep
            inter[c] += (p & t).sum()
            union[c] += (p | t).sum()
            present[c] |= t.any()
    return float(np.mean(inter[present] / union[present]))


def test_harness_miou_equals_independent_computation(run, converted):
    import edgeseg.runtime as rt
    from edgeseg.data import build_dataset

    dataset = build_dataset("synthetic", "val", **OPTIONS)
    for path, scores in ((converted["good"], run.files[0].domains[0].scores), (converted["reference"], run.reference[None].scores)):
        session = rt.load(path)
        pairs = [(session.predict(dataset[i].image), dataset[i].mask) for i in range(IMAGES)]
        assert scores.miou == pytest.approx(_set_based_miou(pairs, len(dataset.classes)), abs=1e-12)
        accuracy = sum(int(((p == t) & (t != 255)).sum()) for p, t in pairs) / sum(int((t != 255).sum()) for _, t in pairs)
        assert scores.pixel_accuracy == pytest.approx(accuracy, abs=1e-12)
