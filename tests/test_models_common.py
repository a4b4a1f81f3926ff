"""Every registered model, tested the day it is registered: builds, shapes, export, save/load."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edgeseg.checkpoint import load_model, save_checkpoint  # noqa: E402
from edgeseg.errors import ConfigError, InputShapeError  # noqa: E402
from edgeseg.models import SegmentationModel, create_model, list_models, tiny_config  # noqa: E402

SIZE = (64, 96)  # H != W catches transposed sizes
NAMES = list_models()


def build(name: str, num_classes: int = 5) -> SegmentationModel:
    return create_model(name, num_classes=num_classes, **tiny_config(name)).eval()


def test_zoo_is_populated():
    for family in ("mobilenetv3", "segformer", "mobileformer", "multidomain"):
        assert any(family in n for n in NAMES), f"no {family} model registered: {NAMES}"


@pytest.mark.parametrize("name", NAMES)
def test_logits_at_input_resolution(name):
    model = build(name)
    x = torch.randn(2, 3, *SIZE)
    out = model(x)
    assert out.shape == (2, model.num_classes, *SIZE)
    assert torch.isfinite(out).all()
    assert model.metadata.model == name


@pytest.mark.parametrize("name", NAMES)
def test_encoder_contract(name):
    model = build(name)
    feats = model.encoder(torch.randn(1, 3, *SIZE))
    assert isinstance(feats, list)
    assert len(feats) == len(model.encoder.out_channels) == len(model.encoder.strides)
    for f, c, s in zip(feats, model.encoder.out_channels, model.encoder.strides):
        assert f.shape[1] == c
        assert f.shape[-2:] == (SIZE[0] // s, SIZE[1] // s), (name, s, f.shape)
    for path, channels in model.encoder.adapter_sites():
        assert isinstance(model.encoder.get_submodule(path), torch.nn.Module)
        assert channels > 0


@pytest.mark.parametrize("name", NAMES)
def test_torch_export_matches_eager(name):
    model = build(name)
    x = torch.randn(1, 3, *SIZE)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        ref = model(x)
        got = exported.module()(x)
    assert isinstance(got, torch.Tensor), "exported graphs return one logits tensor"
    torch.testing.assert_close(got, ref, atol=model.export_atol, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_size_names_working_sizes(name):
    model = build(name)
    d = model.size_divisor
    with pytest.raises(InputShapeError, match=f"multiples of {d}"):
        model(torch.randn(1, 3, d * 2 + 1, d * 2))
    with pytest.raises(InputShapeError, match="3-channel"):
        model(torch.randn(1, 1, d * 2, d * 2))


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip(name, tmp_path):
    model = build(name)
    with torch.no_grad():  # move BN statistics off their defaults so they are really compared
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert loaded.metadata == model.metadata
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


def test_unknown_model_lists_known_ones():
    with pytest.raises(ConfigError, match="Known models:.*lraspp"):
        create_model("lraspp_mobilenetv3_larg", num_classes=3)


def test_checkpoint_of_model_built_with_metadata(tmp_path):
    from edgeseg.metadata import ModelMetadata

    meta = ModelMetadata(model="segformer_b0", classes=("road", "car", "person"), input_size=(64, 64))
    model = create_model("segformer_b0", metadata=meta, **tiny_config("segformer_b0")).eval()
    loaded = load_model(save_checkpoint(model, tmp_path / "m.safetensors"))
    assert loaded.metadata.classes == ("road", "car", "person")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


@pytest.mark.parametrize("name", [n for n in list_models() if not n.startswith("multidomain_")])
def test_every_builder_takes_the_same_metadata_keywords(name):
    # One resolver: classes/palette/input_size as keywords, or a whole ModelMetadata, on every model.
    from edgeseg.metadata import ModelMetadata

    palette = ((1, 2, 3), (4, 5, 6))
    a = create_model(name, classes=("road", "car"), palette=palette, input_size=(64, 96), **tiny_config(name))
    b = create_model(name, metadata=ModelMetadata(model="x", classes=("road", "car"), palette=palette,
                                                  input_size=(64, 96)), **tiny_config(name))
    for model in (a, b):
        assert model.metadata.model == name
        assert model.metadata.classes == ("road", "car") and model.metadata.palette == palette
        assert model.metadata.input_size == (64, 96)
