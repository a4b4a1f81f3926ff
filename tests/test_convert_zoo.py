"""Zoo models (tiny widths, 64x64) x every target: converted, run on its backend, verified.

Budget (240 s single core for all converter tests): a conversion costs 2-15 s, so ONNX takes
every registered model, and every target takes one representative per architecture (model
class + encoder class: the variants of one architecture differ only in widths, not in ops).
A new architecture or target is covered the day it is registered.
"""

from __future__ import annotations

import pytest

from edgeseg.converters import TARGETS, convert, read_metadata
from edgeseg.converters.verify import TOLERANCES
from edgeseg.models import create_model, list_models, tiny_config

FULL_MATRIX_TARGETS = ("onnx",)
SIZE = (64, 64)


def _build(name: str):
    return create_model(name, num_classes=5, **tiny_config(name)).eval()


def _representatives() -> list[str]:
    first: dict[tuple[str, str], str] = {}
    for name in list_models():
        model = _build(name)
        first.setdefault((type(model).__name__, type(model.encoder).__name__), name)
    return sorted(first.values())


CASES = [
    pytest.param(model, target, id=f"{model}-{target}")
    for target in TARGETS
    for model in (list_models() if target in FULL_MATRIX_TARGETS else _representatives())
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
