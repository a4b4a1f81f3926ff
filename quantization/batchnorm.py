"""Conv + BatchNorm folding for QAT, and putting the folded weights back into the float model.

PT2E QAT needs the BN folded out of the graph here (torchao's conv+BN QAT rewrite does not run
with this torch), and LiteRT/OpenVINO/ONNX Runtime fold BN into the conv at conversion anyway, so
QAT trains the folded conv directly, with frozen statistics. Afterwards the float model keeps its
layout: the conv holds the folded weight and its BN becomes an exact per-channel bias
(gamma 1, mean 0, var 1 - eps, beta = folded bias).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgeseg.errors import ConfigError


def conv_bn_pairs(model: nn.Module, sample: torch.Tensor) -> list[tuple[str, str]]:
    """(conv path, bn path) for every BatchNorm2d whose input is a Conv2d's output, found by
    running ``sample`` (so it holds however the forward wires them)."""
    made_by: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []

    def conv_hook(name):
        return lambda _m, _i, out: made_by.__setitem__(id(out), name)

    def bn_hook(name):
        def hook(_m, inputs):
            conv = made_by.get(id(inputs[0]))
            if conv is not None:
                pairs.append((conv, name))
        return hook

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook(name)))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(bn_hook(name)))
    try:
        with torch.no_grad():
            model.eval()
            getattr(model, "forward_all", model)(sample)  # a multi-domain model: every head
    finally:
        for h in handles:
            h.remove()
    return list(dict.fromkeys(pairs))


def folded_copy(model: nn.Module, sample: torch.Tensor) -> tuple[nn.Module, list[tuple[str, str]]]:
    """A copy of ``model`` with every conv+BN pair folded into one conv (BN -> Identity)."""
    folded = copy.deepcopy(model).eval()
    pairs = conv_bn_pairs(folded, sample)
    for conv_path, bn_path in pairs:
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(folded.get_submodule(conv_path), folded.get_submodule(bn_path))
        folded.set_submodule(conv_path, fused)
        folded.set_submodule(bn_path, nn.Identity())
    left = [n for n, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ConfigError(
            f"QAT folds BatchNorm into the preceding conv; {left[:3]} do not follow a conv "
            "and cannot be folded. Use --target coreml (its QAT keeps BN) or report the model"
        )
    return folded, pairs


@torch.no_grad()
def unfold_into(model: nn.Module, trained: nn.Module, pairs: list[tuple[str, str]]) -> None:
    """Copy ``trained`` (a folded copy, fine-tuned) back into ``model`` without changing its layout."""
    folded_paths = {p for pair in pairs for p in pair}
    state = model.state_dict()
    trained_state = trained.state_dict()
    for key in state:
        owner = key.rsplit(".", 1)[0]
        if owner not in folded_paths and key in trained_state:
            state[key] = trained_state[key].clone()
    model.load_state_dict(state)
    for conv_path, bn_path in pairs:
        conv, bn = model.get_submodule(conv_path), model.get_submodule(bn_path)
        fused = trained.get_submodule(conv_path)
        conv.weight.copy_(fused.weight)
        if conv.bias is not None:
            conv.bias.zero_()
        bn.weight.fill_(1.0)
        bn.bias.copy_(fused.bias)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(1 - eps + eps) = x
