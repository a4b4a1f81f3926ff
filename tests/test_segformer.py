"""SegFormer-B0: paper config, parity with Hugging Face transformers, HF checkpoint loading."""

from __future__ import annotations

import pickle

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from edgeseg.checkpoint import load_model, save_checkpoint  # noqa: E402
from edgeseg.errors import CheckpointError, ConfigError  # noqa: E402
from edgeseg.models import create_model, tiny_config  # noqa: E402
from edgeseg.models.hf_segformer import load_hf_segformer  # noqa: E402
from edgeseg.models.profile import count_params  # noqa: E402
from edgeseg.models.segformer import SegFormerConfig  # noqa: E402

transformers = pytest.importorskip("transformers")

# HF's own test config (hidden 8/8/16/16, one block per stage), the same as our registry's tiny.
HF_TINY = dict(
    hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2], decoder_hidden_size=16
)
OUR_TINY = SegFormerConfig(
    hidden_sizes=(8, 8, 16, 16), depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), decoder_channels=16
)
PARITY_ATOL = 1e-4


def hf_segmenter(num_labels: int, **config):
    """A randomly initialised HF SegFormer whose logits reach a few units (HF init gives near-zero logits)."""
    model = transformers.SegformerForSemanticSegmentation(
        transformers.SegformerConfig(num_labels=num_labels, **config)
    ).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():  # norms and biases move most: their init is all 1s / 0s
            p.add_(torch.randn(p.shape, generator=generator) * (0.3 if p.ndim == 1 else 0.05))
        bn = model.decode_head.batch_norm
        bn.running_mean.uniform_(-0.5, 0.5, generator=generator)
        bn.running_var.uniform_(0.2, 2.0, generator=generator)
        # Scale the classifier so logits reach a few units, whatever the width: a 1e-4 tolerance
        # then means about 1e-5 relative.
        probe = model(pixel_values=torch.randn(1, 3, 64, 64, generator=generator)).logits
        model.decode_head.classifier.weight.mul_(5.0 / probe.abs().max())
    return model


def assert_parity(ours, theirs, size, batch=2):
    """HF returns 1/4-resolution logits. Compared: our decoder output (before the model's final
    upsample) with HF's logits, and our full output with HF's logits upsampled the same way
    (bilinear, align_corners=False) to the input size."""
    x = torch.randn(batch, 3, *size)
    with torch.no_grad():
        ref = theirs(pixel_values=x).logits
        quarter = ours.decoder(ours.encoder(x))
        full = ours(x)
    assert ref.abs().max() > 1.0, "logits too small for the tolerance to mean anything"
    assert quarter.shape == ref.shape == (batch, ours.num_classes, size[0] // 4, size[1] // 4)
    assert (quarter - ref).abs().max() < PARITY_ATOL
    upsampled = F.interpolate(ref, size=size, mode="bilinear", align_corners=False)
    assert (full - upsampled).abs().max() < PARITY_ATOL


def test_default_config_is_mit_b0_and_registry_tiny_is_hf_tiny():
    b0 = create_model("segformer_b0", num_classes=150).config
    assert b0 == SegFormerConfig()
    assert (b0.patch_sizes, b0.strides, b0.hidden_sizes) == ((7, 3, 3, 3), (4, 2, 2, 2), (32, 64, 160, 256))
    assert (b0.depths, b0.num_heads, b0.sr_ratios) == ((2, 2, 2, 2), (1, 2, 5, 8), (8, 4, 2, 1))
    assert (b0.mlp_ratios, b0.decoder_channels) == ((4, 4, 4, 4), 256)
    assert create_model("segformer_b0", num_classes=3, **tiny_config("segformer_b0")).config == OUR_TINY


def test_tiny_parity_with_transformers():
    theirs = hf_segmenter(5, **HF_TINY)
    ours = load_hf_segformer(theirs.state_dict(), config=OUR_TINY)
    assert count_params(ours) == count_params(theirs)
    assert_parity(ours, theirs, (64, 96))


def test_b0_parity_and_param_count_with_transformers():
    theirs = hf_segmenter(150)  # transformers' default SegformerConfig is B0
    ours = load_hf_segformer(theirs.state_dict())  # no config: inferred from the weight shapes
    assert ours.config == SegFormerConfig()
    registered = create_model("segformer_b0", num_classes=150)
    assert count_params(ours) == count_params(theirs) == count_params(registered)
    assert_parity(ours, theirs, (64, 64), batch=1)


def test_loads_save_pretrained_folder_and_file_without_unpickling(tmp_path, monkeypatch):
    classes = ["road", "car", "person"]
    theirs = hf_segmenter(3, id2label=dict(enumerate(classes)), **HF_TINY)
    theirs.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    for source in (tmp_path, tmp_path / "model.safetensors"):
        ours = load_hf_segformer(source)  # heads 1/1/2/2 can only come from config.json
        assert ours.config == OUR_TINY
        assert ours.metadata.classes == tuple(classes)
        assert not ours.training
        assert_parity(ours, theirs, (64, 64), batch=1)
    # ... and saves as an edgeseg checkpoint that rebuilds the same model.
    monkeypatch.undo()
    reloaded = load_model(save_checkpoint(ours, tmp_path / "edgeseg.safetensors"))
    assert reloaded.config == OUR_TINY and reloaded.metadata.classes == tuple(classes)
    assert_parity(reloaded, theirs, (64, 64), batch=1)


# The names transformers 4.x wrote (most Hub checkpoints), from our layout's HF-5 names; written
# out independently of edgeseg's mapping so the test checks it.
HF5_TO_HF4 = [
    ("segformer.stages.{i}.patch_embeddings.", "segformer.encoder.patch_embeddings.{i}."),
    ("segformer.stages.{i}.blocks.", "segformer.encoder.block.{i}."),
    ("segformer.stages.{i}.layer_norm.", "segformer.encoder.layer_norm.{i}."),
    ("attention.q_proj.", "attention.self.query."),
    ("attention.k_proj.", "attention.self.key."),
    ("attention.v_proj.", "attention.self.value."),
    ("attention.sequence_reduction.sequence_reduction.", "attention.self.sr."),
    ("attention.sequence_reduction.layer_norm.", "attention.self.layer_norm."),
    ("attention.o_proj.", "attention.output.dense."),
    ("mlp.fc1.", "mlp.dense1."),
    ("mlp.fc2.", "mlp.dense2."),
    ("layernorm_before.", "layer_norm_1."),
    ("layernorm_after.", "layer_norm_2."),
    ("decode_head.linear_projections.", "decode_head.linear_c."),
]


def to_transformers4_names(state):
    out = {}
    for key, tensor in state.items():
        for new, old in HF5_TO_HF4:
            for i in range(4):
                key = key.replace(new.format(i=i), old.format(i=i))
        out[key] = tensor
    return out


def test_loads_transformers4_checkpoint_file(tmp_path):
    from safetensors.torch import save_file

    theirs = hf_segmenter(4, **HF_TINY)
    legacy = to_transformers4_names(theirs.state_dict())
    assert "segformer.encoder.block.0.0.attention.self.query.weight" in legacy
    assert "decode_head.linear_c.3.proj.weight" in legacy
    path = tmp_path / "segformer_hf4.safetensors"
    save_file({k: v.contiguous() for k, v in legacy.items()}, str(path))
    ours = load_hf_segformer(path, config=OUR_TINY)
    assert_parity(ours, theirs, (64, 64), batch=1)


def test_pytorch_bin_loads_with_weights_only(tmp_path):
    theirs = hf_segmenter(4, **HF_TINY)
    path = tmp_path / "pytorch_model.bin"
    torch.save(theirs.state_dict(), path)
    assert_parity(load_hf_segformer(path, config=OUR_TINY), theirs, (64, 64), batch=1)


def test_encoder_only_checkpoint_needs_opt_in_and_loads_encoder():
    backbone = transformers.SegformerModel(transformers.SegformerConfig(**HF_TINY)).eval()
    state = backbone.state_dict()  # keys without the "segformer." prefix, no decode head
    with pytest.raises(CheckpointError, match="require_decoder=False"):
        load_hf_segformer(state, config=OUR_TINY, num_classes=3)
    ours = load_hf_segformer(state, config=OUR_TINY, num_classes=3, require_decoder=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = backbone(pixel_values=x, output_hidden_states=True).hidden_states
        feats = ours.encoder(x)
    assert len(ref) == len(feats) == 4
    for a, b in zip(feats, ref):
        assert (a - b).abs().max() < PARITY_ATOL


def test_bad_checkpoints_raise_clear_errors(tmp_path):
    theirs = hf_segmenter(4, **HF_TINY)
    state = theirs.state_dict()
    with pytest.raises(CheckpointError, match="not Hugging Face SegFormer weights.*backbone.block1"):
        load_hf_segformer({**state, "backbone.block1.0.attn.q.weight": torch.zeros(1)}, config=OUR_TINY)
    with pytest.raises(CheckpointError, match="does not fit.*shape mismatches"):
        load_hf_segformer(state, config=SegFormerConfig(hidden_sizes=(8, 8, 16, 32), num_heads=(1, 1, 2, 2)))
    with pytest.raises(CheckpointError, match="cannot infer.*config.json"):
        load_hf_segformer(state)  # 16 channels cannot take the default 5 heads of stage 3
    with pytest.raises(CheckpointError, match="neither model.safetensors nor pytorch_model.bin"):
        load_hf_segformer(tmp_path)


def test_adapter_sites_are_mix_ffn_outputs_as_tokens():
    model = create_model("segformer_b0", num_classes=3, **tiny_config("segformer_b0")).eval()
    sites = model.encoder.adapter_sites()
    assert len(sites) == sum(model.config.depths)
    seen = {}
    for path, channels in sites:
        module = model.encoder.get_submodule(path)
        assert module.out_features == channels
        module.register_forward_hook(lambda m, i, out, path=path: seen.update({path: out.shape}))
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        before = model(x)
    for (path, channels), stride in zip(sites, model.encoder.strides):  # tiny: one block per stage
        assert seen[path] == (2, (64 // stride) * (96 // stride), channels)
    # The site lies on the residual branch: zeroing it changes the output but keeps it finite.
    model.encoder.get_submodule(sites[0][0]).register_forward_hook(lambda m, i, out: out * 0)
    with torch.no_grad():
        after = model(x)
    assert torch.isfinite(after).all() and not torch.allclose(before, after)


def test_drop_path_only_in_training():
    model = create_model(
        "segformer_b0", num_classes=3, drop_path_rate=0.5, classifier_dropout=0.0, **tiny_config("segformer_b0")
    )
    x = torch.randn(4, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(0)
        a = model.encoder(x)[-1]
        torch.manual_seed(1)
        b = model.encoder(x)[-1]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 3, "hidden_sizes": [8, 8, 16]}, "one entry per stage"),
        ({"num_classes": 3, "hidden_sizes": [8, 8, 16, 18], "num_heads": [1, 1, 2, 4]}, "18 is not divisible by 4"),
        ({"num_classes": 3, "hidden_size": [8, 8, 16, 16]}, "unknown option.*hidden_sizes"),
        ({}, "give num_classes"),
        ({"num_classes": 2, "classes": ["a", "b", "c"]}, "num_classes=2 but 3 class names"),
    ],
)
def test_bad_config_is_refused_with_the_fix(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_model("segformer_b0", **kwargs)


def test_classes_become_metadata():
    model = create_model("segformer_b0", classes=["sky", "road"], **tiny_config("segformer_b0"))
    assert model.metadata.classes == ("sky", "road") and model.num_classes == 2
    assert model.metadata.model == "segformer_b0"
