"""Zoo models (tiny widths, 64x64) x every target: converted, run on its backend, verified.

Budget (240 s single core for all converter tests): a conversion costs 2-15 s idle (TFLite of
a MobileFormer up to 60 s), so the full zoo x targets matrix does not fit. ONNX and OpenVINO take
one model per architecture (model class + encoder class: the width variants of one architecture
run the same ops); TFLite and CoreML, the slowest, one model per model class. A new
architecture or target is covered the day it is registered. ``EDGESEG_FULL_ZOO=1`` runs every
registered model on every target (about 4 more minutes on 2 cores):

    EDGESEG_FULL_ZOO=1 pytest -n 2 tests/test_convert_zoo.py
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

from edgeseg.converters import TARGETS, convert, read_metadata  # noqa: E402
from edgeseg.converters.verify import TOLERANCES  # noqa: E402
from edgeseg.models import create_model, list_models, tiny_config  # noqa: E402

PER_ENCODER_TARGETS = ("onnx", "openvino")
SIZE = (64, 64)


def _build(name: str):
    return create_model(name, num_classes=5, **tiny_config(name)).eval()


def _representatives(per_encoder: bool) -> list[str]:
    if os.environ.get("EDGESEG_FULL_ZOO") == "1":
        return list_models()
    first: dict[tuple[str, str], str] = {}
    for name in list_models():
        model = _build(name)
        encoder = type(model.encoder).__name__ if per_encoder else ""
        first.setdefault((type(model).__name__, encoder), name)
    return sorted(first.values())


CASES = [
    pytest.param(model, target, id=f"{model}-{target}")
    for target in TARGETS
    for model in _representatives(per_encoder=target in PER_ENCODER_TARGETS)
]


@pytest.mark.parametrize(("model_name", "target"), CASES)
def test_zoo_model_converts_and_matches_pytorch(model_name, target, tmp_path):
    model = _build(model_name)
    spec = TARGETS[target]
    result = convert(model, target, input_size=SIZE, out=tmp_path / f"m{spec.suffixes[0]}")
    assert len(result.files) == 1
    converted = result.files[0]
    for path in (converted.path, *converted.companions):
        assert path.exists()
    report = converted.report
    assert report.passed, report.summary()
    assert report.metadata_matches
    assert read_metadata(converted.path) == converted.metadata
    assert converted.metadata.input_size == SIZE and converted.metadata.precision == "fp32"
    domains = [d.name for d in model.metadata.domains]
    if domains:  # multi-domain: one file, one named output per domain
        assert converted.metadata.output_names == {d: f"logits_{d}" for d in domains}
    if spec.runs_here():
        assert report.numerics_checked and report.images >= 4
        assert report.min_agreement >= TOLERANCES["fp32"].min_agreement
        assert len(report.outputs) == max(1, len(domains))
    else:
        assert not report.numerics_checked and "NOT checked" in report.summary()
    # Nothing but the output files is left in the folder (no temporaries).
    leftovers = {p.name for p in tmp_path.iterdir()} - {p.name for p in (converted.path, *converted.companions)}
    assert not leftovers
