"""Metadata, atomic writes and metrics: the torch-free pieces every other part stands on."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import ConfigError
from edgeseg.fileio import atomic_output, atomic_outputs, write_json_atomic
from edgeseg.metadata import DomainInfo, ModelMetadata
from edgeseg.metrics import ConfusionMatrix, miou


def test_metadata_json_round_trip():
    meta = ModelMetadata(
        model="m",
        classes=("road", "sky"),
        input_size=(64, 128),
        domains=(DomainInfo("day", ("road", "sky"), ((1, 2, 3), (4, 5, 6))),),
        domain="day",
    )
    back = ModelMetadata.from_json(meta.to_json())
    assert back == meta
    assert back.palette and len(back.palette) == 2
    assert back.for_domain("day").palette == ((1, 2, 3), (4, 5, 6))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(classes=()), "class list is empty"),
        (dict(classes=("a", "a")), "repeat"),
        (dict(classes=("a", "b"), palette=((0, 0, 0),)), "palette colours"),
        (dict(classes=("a",), layout="hwc"), "layout"),
        (dict(classes=("a",), std=(0.0, 1.0, 1.0)), "std"),
    ],
)
def test_metadata_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ModelMetadata(model="m", **kwargs)


def test_metadata_from_newer_schema_asks_for_upgrade():
    data = ModelMetadata(model="m", classes=("a",)).to_dict()
    data["schema_version"] = 99
    with pytest.raises(ConfigError, match="upgrade edgeseg"):
        ModelMetadata.from_dict(data)


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(dest) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("conversion failed")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_atomic_output_directory_and_pairs(tmp_path):
    pkg = tmp_path / "m.mlpackage"
    for content in (b"1", b"2"):  # second write replaces a non-empty directory
        with atomic_output(pkg, is_dir=True) as tmp:
            (tmp / "weights").write_bytes(content)
    assert (pkg / "weights").read_bytes() == b"2"
    with atomic_outputs(tmp_path / "m.xml", tmp_path / "m.bin") as (xml, bin_):
        xml.write_text("x")
        bin_.write_bytes(b"b")
    write_json_atomic(tmp_path / "r.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.mlpackage", "m.xml", "r.json"]


def test_write_results_writes_record_and_report_atomically(tmp_path, monkeypatch, capsys):
    import json

    from edgeseg import fileio

    fileio.write_results(tmp_path / "results", "bench", {"rows": [1]}, ["# Bench", "", "| a |"])
    assert json.loads((tmp_path / "results" / "bench.json").read_text()) == {"rows": [1]}
    assert (tmp_path / "results" / "bench.md").read_text() == "# Bench\n\n| a |\n"
    assert capsys.readouterr().out == "# Bench\n\n| a |\n"

    def fail(dest, text):
        raise OSError("disk full")

    monkeypatch.setattr(fileio, "write_text_atomic", fail)  # a write that fails: the earlier results stay whole
    with pytest.raises(OSError):
        fileio.write_results(tmp_path / "results", "bench", {"rows": [2]}, ["new"], echo=False)
    assert (tmp_path / "results" / "bench.md").read_text() == "# Bench\n\n| a |\n"
    assert json.loads((tmp_path / "results" / "bench.json").read_text()) == {"rows": [1]}
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["bench.json", "bench.md"]


def test_confusion_matrix_matches_hand_computation():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 1]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    s = cm.scores()
    # class 0: tp=1, gt=2, pred=2 -> 1/3; class 1: tp=3, gt=3, pred=4 -> 3/4; class 2: 1/2
    np.testing.assert_allclose(s.per_class_iou, [1 / 3, 3 / 4, 1 / 2])
    assert s.miou == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert s.pixel_accuracy == pytest.approx(5 / 7)
    assert miou(pred, target, 3) == pytest.approx(s.miou)


def test_confusion_matrix_absent_class_is_nan_and_bad_labels_raise():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1]), np.array([0, 1]))
    assert np.isnan(cm.scores().per_class_iou[2])
    assert cm.scores().miou == 1.0
    with pytest.raises(ValueError, match="outside 0..2"):
        cm.update(np.array([0]), np.array([7]))


def test_atomic_output_uses_default_permissions(tmp_path):
    import os

    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.models import create_model, tiny_config

    umask = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "r.json", {})
        with atomic_output(tmp_path / "d", is_dir=True) as tmp:
            (tmp / "f").write_text("x")
        name = "lraspp_mobilenetv3_small"  # safetensors itself writes owner-only (0600) files
        save_checkpoint(create_model(name, num_classes=2, **tiny_config(name)), tmp_path / "m.safetensors")
    finally:
        os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644
