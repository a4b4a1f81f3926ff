"""`edgeseg import` (issue 17): bring-your-own weights from the CLI. A torchvision-layout .pth state
dict and a Hugging Face SegFormer folder become edgeseg checkpoints holding the same network;
`convert` on either names `edgeseg import` as the next step."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from edgeseg.checkpoint import load_model  # noqa: E402
from edgeseg.errors import ConfigError  # noqa: E402
from edgeseg.models import create_model  # noqa: E402
from edgeseg.models.import_weights import import_weights  # noqa: E402


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True, timeout=180)


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter and BN statistic off its init, so a mis-mapped tensor shows in the logits."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=generator) * 0.05)
                if "running_var" in name:
                    t.abs_().add_(0.5)
    return model.eval()


def test_cli_imports_a_torchvision_layout_pth(tmp_path):
    original = _randomize(create_model("lraspp_mobilenetv3_small", num_classes=4))
    pth = tmp_path / "lraspp.pth"
    torch.save(original.state_dict(), pth)  # what torchvision's model.state_dict() looks like: plain tensors

    run = _cli("import", str(pth), "--model", "lraspp_mobilenetv3_small", "--classes", "road,car,person,sky",
               "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--input-size", "64x96")
    assert run.returncode == 0, run.stderr[-2000:]
    out = tmp_path / "lraspp.safetensors"
    assert f"wrote {out}" in run.stdout and f"edgeseg convert {out}" in run.stdout
    imported = load_model(out)
    meta = imported.metadata
    assert meta.model == "lraspp_mobilenetv3_small" and meta.classes == ("road", "car", "person", "sky")
    assert meta.mean == (0.5, 0.5, 0.5) and meta.std == (0.25, 0.25, 0.25) and meta.input_size == (64, 96)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(imported(x), original(x))

    # Without --classes, the class count comes from the classifier's shape.
    run = _cli("import", str(pth), "--model", "lraspp_mobilenetv3_small", "--out", str(tmp_path / "n.safetensors"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert load_model(tmp_path / "n.safetensors").metadata.classes == tuple(f"class_{i}" for i in range(4))


def test_cli_imports_a_hugging_face_segformer_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    classes = ["road", "car", "person"]
    config = transformers.SegformerConfig(
        num_labels=3, id2label=dict(enumerate(classes)), label2id={c: i for i, c in enumerate(classes)},
        hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2], decoder_hidden_size=16,
    )
    theirs = _randomize(transformers.SegformerForSemanticSegmentation(config))
    folder = tmp_path / "segformer-tiny"
    theirs.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "SegformerImageProcessor", "image_mean": [0.5, 0.4, 0.3],
         "image_std": [0.2, 0.2, 0.2], "size": {"height": 64, "width": 128}}))

    run = _cli("convert", str(folder / "model.safetensors"), "--target", "onnx")  # the weights inside
    assert run.returncode == 2 and f"edgeseg import {folder}`" in run.stderr and "load_hf_segformer" in run.stderr
    run = _cli("import", str(folder))
    assert run.returncode == 0, run.stderr[-2000:]
    ours = load_model(tmp_path / "segformer-tiny.safetensors")
    meta = ours.metadata
    assert meta.model == "segformer_b0" and meta.classes == tuple(classes)
    assert meta.mean == (0.5, 0.4, 0.3) and meta.std == (0.2, 0.2, 0.2) and meta.input_size == (64, 128)
    # The weights file inside the folder imports the same way (config.json beside it).
    same = import_weights(folder / "model.safetensors")
    assert same.metadata == meta and all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), ours.state_dict().values()))
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        reference = F.interpolate(theirs(pixel_values=x).logits, size=(64, 128), mode="bilinear", align_corners=False)
        assert (ours(x) - reference).abs().max() < 1e-4


def test_cli_errors_name_edgeseg_import(tmp_path):
    pth = tmp_path / "weights.pth"
    torch.save(create_model("lraspp_mobilenetv3_small", num_classes=3).state_dict(), pth)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")

    for source, hint in ((pth, f"edgeseg import {pth} --model NAME"), (folder, f"edgeseg import {folder}`")):
        run = _cli("convert", str(source), "--target", "onnx")
        assert run.returncode == 2 and hint in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert "load_weights" not in run.stderr  # the old, wrong advice
    with pytest.raises(ConfigError, match="give --model .*lraspp_mobilenetv3_large"):
        import_weights(pth)
    with pytest.raises(ConfigError, match="predicts 3"):
        import_weights(pth, model="lraspp_mobilenetv3_small", classes=("a", "b"))
    with pytest.raises(ConfigError, match="without config.json"):
        import_weights(tmp_path)
