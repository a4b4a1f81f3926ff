"""Int8 for multi-domain models: one file per domain and the file with every head, calibrated on
each head's own domain and gated domain by domain on its own classes (post-training int8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeseg.errors import ConfigError

MODEL = "multidomain_lraspp_mobilenetv3_small"
SIZE = (64, 64)
DOMAINS = ("synthetic:night", "synthetic:coarse")


@pytest.fixture(scope="module")
def multidomain_checkpoint(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from edgeseg.models import tiny_config
    from edgeseg.train import BEST, TrainConfig, train

    folder = tmp_path_factory.mktemp("md_int8")
    train(TrainConfig(model=MODEL, model_options=tiny_config(MODEL), data=DOMAINS,
                      data_options={"size": list(SIZE), "length": 96}, size=SIZE, scale_range=(1.0, 1.0),
                      optimizer="adamw", lr=5e-3, iters=30, batch_size=16, workers=0, eval_limit=8,
                      checkpoint_every=1000, out=str(folder)), progress=False)
    return folder / BEST


def _quant(**changes):
    from edgeseg.quantization import QuantOptions

    return QuantOptions(**{"calib_size": 8, "gate_images": 8, **changes})


def test_calibration_draws_each_heads_own_synthetic_domain(multidomain_checkpoint):
    from edgeseg.checkpoint import read_checkpoint_header
    from edgeseg.quantization.calibration import calibration_inputs, domain_specs

    meta = read_checkpoint_header(multidomain_checkpoint)[1].replace(input_size=SIZE)
    assert domain_specs("synthetic", meta) == ["synthetic:night", "synthetic:coarse"]
    assert domain_specs("synthetic", meta.for_domain("synthetic_coarse")) == ["synthetic:coarse"]
    assert domain_specs("folder:/data", meta) == ["folder:/data"]  # a user's spec is used as given
    mixed = calibration_inputs("synthetic:train", 5, meta)
    coarse = calibration_inputs("synthetic:train", 2, meta.for_domain("synthetic_coarse"))
    assert len(mixed) == 5  # 3 night + 2 coarse images
    np.testing.assert_array_equal(mixed[3], coarse[0])  # the coarse share: the coarse domain's images
    assert not np.array_equal(mixed[0], coarse[0])


def test_every_head_in_one_int8_file_gated_per_domain(multidomain_checkpoint, tmp_path):
    from edgeseg.converters import convert
    from edgeseg.runtime import load

    result = convert(multidomain_checkpoint, "onnx", precision="int8", out=tmp_path / "all.onnx", quant=_quant())
    gate = result.files[0].report.gate
    assert set(gate.float_miou) == {"synthetic_night", "synthetic_coarse"}  # each head on its own data
    assert gate.agreement > 0.9
    seg = load(result.path, threads=1)
    assert set(seg.domains) == {"synthetic_night", "synthetic_coarse"}
    assert len(seg.classes("synthetic_coarse")) == 6 and len(seg.classes("synthetic_night")) == 9
    ops = {n.op_type for n in onnx.load(str(result.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_one_domain_int8_file_is_gated_against_the_whole_model(multidomain_checkpoint, tmp_path):
    from edgeseg.converters import convert

    result = convert(multidomain_checkpoint, "onnx", precision="int8", domain="synthetic_coarse",
                     out=tmp_path / "coarse.onnx", quant=_quant())
    gate = result.files[0].report.gate
    assert list(gate.float_miou) == ["synthetic_coarse"]
    assert abs(gate.float_miou["synthetic_coarse"] - gate.int8_miou["synthetic_coarse"]) < 5


def test_keep_float_on_the_every_head_file_is_refused_with_the_way_out(multidomain_checkpoint, tmp_path):
    from edgeseg.converters import convert

    with pytest.raises(ConfigError, match="--domain NAME"):
        convert(multidomain_checkpoint, "onnx", precision="int8", out=tmp_path / "x.onnx",
                quant=_quant(keep_float=("encoder.1",)))
    assert not list(tmp_path.iterdir())


def test_qat_trains_every_head_on_its_own_domain_then_converts_gated_per_domain(multidomain_checkpoint, tmp_path):
    import torch

    from edgeseg.checkpoint import load_model
    from edgeseg.converters import convert
    from edgeseg.quantization.qat import QatConfig, qat_finetune

    before = load_model(multidomain_checkpoint).state_dict()
    result = qat_finetune(multidomain_checkpoint, QatConfig("onnx", epochs=None, iters=3, train_images=8, batch_size=4,
                                                             workers=0, device="cpu", lr=1e-3),
                          tmp_path / "q.safetensors")
    assert result.steps == 3 and np.isfinite(result.losses).all()
    after = load_model(result.checkpoint).state_dict()

    def moved(prefix: str) -> bool:
        return any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix) and "running" not in k)

    # MixLoss: both heads and the shared encoder learn in the same steps.
    assert moved("heads.synthetic_night.") and moved("heads.synthetic_coarse.") and moved("encoder.")
    converted = convert(result.checkpoint, "onnx", precision="int8", out=tmp_path / "qat.onnx",
                        quant=_quant(reference=str(multidomain_checkpoint), max_miou_drop=10.0, min_agreement=0.5))
    gate = converted.files[0].report.gate
    assert set(gate.int8_miou) == {"synthetic_night", "synthetic_coarse"}
    for domain in gate.float_miou:  # three small steps from the float model: each head still segments its domain
        assert abs(gate.float_miou[domain] - gate.int8_miou[domain]) < 10


def test_qat_data_per_head(multidomain_checkpoint):
    from edgeseg.checkpoint import read_checkpoint_header
    from edgeseg.quantization.qat import domain_training_specs

    meta = read_checkpoint_header(multidomain_checkpoint)[1]
    assert domain_training_specs("synthetic:val", meta) == [
        ("synthetic_night", "synthetic:night:val"), ("synthetic_coarse", "synthetic:coarse:val")]
    pairs = "synthetic_coarse=folder:/c:train,synthetic_night=folder:/n"
    assert domain_training_specs(pairs, meta) == [
        ("synthetic_night", "folder:/n"), ("synthetic_coarse", "folder:/c:train")]
    with pytest.raises(ConfigError, match="HEAD=SPEC pairs, e.g. synthetic_night=folder"):
        domain_training_specs("folder:/data:train", meta)  # one label space cannot train both heads
    with pytest.raises(ConfigError, match="no data for head"):
        domain_training_specs("synthetic_night=folder:/n", meta)
    with pytest.raises(ConfigError, match="not one of its heads"):
        domain_training_specs("synthetic_night=folder:/n,day=folder:/d", meta)
    with pytest.raises(ConfigError, match="one head"):
        domain_training_specs("a=folder:/n", meta.for_domain("synthetic_night").replace(domains=()))
