"""The int8 TFLite export graph: hard-swish / hard-sigmoid rewritten into ops XNNPACK runs in int8,
with the float outputs unchanged (the int8 file itself is checked in test_quant_ptq)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from edgeseg.models import create_model, tiny_config  # noqa: E402
from edgeseg.quantization.tflite import export_program  # noqa: E402
from edgeseg.quantization.tflite_quantizer import decompose_hard_activations  # noqa: E402

HARD = {torch.ops.aten.hardswish.default, torch.ops.aten.hardsigmoid.default}


def _targets(module):
    return [n.target for n in module.graph.nodes if n.op == "call_function"]


@pytest.mark.parametrize("activation", [nn.Hardswish, nn.Hardsigmoid])
def test_decomposition_equals_the_activation_everywhere(activation):
    # Both kinks (-3, 3), both flat parts and the curve between: the same value to float rounding.
    x = torch.linspace(-8, 8, 4001).view(1, 1, 1, -1)
    program = torch.export.export(activation(), (x,), strict=False).module()
    assert decompose_hard_activations(program) == 1
    assert not set(_targets(program)) & HARD
    assert torch.ops.aten.hardtanh.default in _targets(program)
    torch.testing.assert_close(program(x), activation()(x), rtol=1e-6, atol=1e-6)


def test_lraspp_export_graph_has_no_hard_activations_and_same_logits():
    model = create_model("lraspp_mobilenetv3_small", num_classes=5, **tiny_config("lraspp_mobilenetv3_small")).eval()
    with torch.no_grad():  # BN statistics that are not the identity, so every activation sees real ranges
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    hard = sum(isinstance(m, (nn.Hardswish, nn.Hardsigmoid)) for m in model.modules())
    graph = SimpleNamespace(output_names=("logits",), input_name="image", sample=torch.randn(1, 3, 64, 64))
    program = export_program(model, graph)
    targets = _targets(program)
    assert not set(targets) & HARD
    assert targets.count(torch.ops.aten.hardtanh.default) == hard > 10
    for seed in range(3):
        x = 2 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            torch.testing.assert_close(program(image=x)["logits"], model(x), rtol=1e-4, atol=1e-5)


def test_input_normalization_becomes_one_depthwise_conv_with_the_same_logits():
    from edgeseg.converters.wrapper import ExportWrapper

    model = create_model("lraspp_mobilenetv3_small", num_classes=5, **tiny_config("lraspp_mobilenetv3_small")).eval()
    wrapper = ExportWrapper(model, model.metadata.replace(include_preprocess=True, layout="nhwc", input_size=(64, 64))).eval()
    pixels = torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    program = export_program(wrapper, SimpleNamespace(output_names=("logits",), input_name="image", sample=pixels))
    calls = [n for n in program.graph.nodes if n.op == "call_function"]
    first_conv = next(n for n in calls if n.target == torch.ops.aten.conv2d.default)
    assert first_conv.args[-1] == 3  # groups: the per-channel x * scale + shift, before the stem
    assert first_conv.args[0].target == torch.ops.aten.to.dtype  # reads the cast pixels directly
    with torch.no_grad():
        torch.testing.assert_close(program(image=pixels)["logits"], wrapper(pixels), rtol=1e-4, atol=1e-5)


class _ChunkGate(nn.Module):
    """Mobile-Former's dynamic ReLU in small: slopes from a hard-sigmoid, split with chunk, scaled
    by Python ints."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.hyper = nn.Sequential(nn.Linear(4, 8), nn.Hardsigmoid())

    def forward(self, x):
        x = self.conv(x)
        slopes = self.hyper(x.mean((2, 3)))[:, :, None, None]
        a1, a2 = slopes.chunk(2, dim=1)
        return torch.maximum(x * (2 * a1), x * (2 * a2 - 1))


def test_chunk_pieces_keep_their_inputs_int8_scale_and_int_scalars_become_floats():
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from edgeseg.quantization.tflite import quantizer

    model = _ChunkGate().eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    program = export_program(model, SimpleNamespace(output_names=("out",), input_name="image", sample=x))
    calls = [n for n in program.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.chunk.default not in {n.target for n in calls}
    slices = [n for n in calls if n.target == torch.ops.aten.slice.Tensor and n.args[1] == 1]
    assert [(n.args[2], n.args[3]) for n in slices] == [(0, 4), (4, 8)]
    assert not [a for n in calls for a in n.args if type(a) is int and n.target == torch.ops.aten.mul.Tensor]
    with torch.no_grad():
        torch.testing.assert_close(program(image=x)["out"], model(x), rtol=1e-6, atol=1e-6)
    # Observed through the quantizer: each piece is read through the observer of the tensor it
    # slices (one int8 scale on both sides of TFLite's SLICE), not an observer of its own.
    prepared = prepare_pt2e(program, quantizer(()))
    for piece in [n for n in prepared.graph.nodes if n.target == torch.ops.aten.slice.Tensor and n.args[1] == 1]:
        before = piece.args[0]
        after = next(iter(piece.users))
        assert before.op == "call_module" and after.op == "call_module"
        assert getattr(prepared, before.target) is getattr(prepared, after.target)
