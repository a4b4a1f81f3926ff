"""Quantization-aware training: fine-tune a float checkpoint under the target's fake quantization.

- TFLite, ONNX, OpenVINO: PT2E QAT with litert-torch's quantizer (per-channel symmetric int8
  weights, per-tensor asymmetric int8 activations, conv+BN folded in the fake-quantized graph):
  the scheme all three int8 paths here use (OpenVINO: NNCF preset MIXED; ONNX: QDQ per-channel).
  NNCF's own PyTorch QAT needs a C++ extension compiled at first use, which does not build in
  time on small CPUs, so PT2E stands in for it.
- CoreML: coremltools' ``LinearQuantizer`` (symmetric W8A8).

BatchNorm statistics are frozen (running statistics, as the int8 file will fold them) and the
weights learn around the rounding. The fine-tuned float weights are saved as an ordinary
checkpoint (header ``extra["qat"]``), which every target then converts to int8 through its own
path, re-calibrated, and gated against the float model QAT started from.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.quantization.options import QuantOptions

QAT_TARGETS = ("tflite", "onnx", "openvino", "coreml")
# The scheme each target's fake quantization mirrors (see the module docstring).
SCHEMES = {"tflite": "pt2e", "onnx": "pt2e", "openvino": "pt2e", "coreml": "coreml"}


@dataclass(frozen=True)
class QatConfig:
    """One QAT run (the ``edgeseg qat`` flags)."""

    target: str  # tflite | onnx | openvino | coreml | all (one checkpoint, every target)
    epochs: int = 1  # passes over the fine-tuning images
    train_data: str = "synthetic:train"  # labelled images for fine-tuning (build_dataset spec)
    train_images: int = 256  # fine-tuning images; QAT needs a few hundred steps, not a full training run
    batch_size: int = 8  # images per step
    lr: float = 1e-4  # AdamW; QAT fine-tunes near a trained optimum (Jacob et al. use ~1% of the training lr)
    seed: int = 0  # data order

    def __post_init__(self) -> None:
        if self.target not in (*QAT_TARGETS, "all"):
            raise ConfigError(f"--target {self.target!r} is not one of {QAT_TARGETS + ('all',)}")
        for name in ("epochs", "train_images", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")

    @property
    def scheme(self) -> str:
        return "pt2e" if self.target == "all" else SCHEMES[self.target]


@dataclass
class QatResult:
    checkpoint: Path  # the fine-tuned float weights
    steps: int
    seconds: float
    losses: list[float]  # mean loss per epoch


def qat_finetune(checkpoint: str | Path, cfg: QatConfig, out: str | Path, *, keep_float: tuple[str, ...] = ()) -> QatResult:
    """Fine-tune ``checkpoint`` under fake quantization; save the weights to ``out`` (.safetensors)."""
    from edgeseg.checkpoint import load_model, save_checkpoint
    from edgeseg.converters import TARGETS
    from edgeseg.converters.options import ExportOptions
    from edgeseg.converters.wrapper import build_graphs
    from edgeseg.quantization.batchnorm import conv_bn_pairs, folded_copy, unfold_into
    from edgeseg.quantization.calibration import labelled_inputs
    from edgeseg.quantization.layers import check_layers

    model = load_model(checkpoint)
    check_layers(model, keep_float)
    target = "tflite" if cfg.target == "all" else cfg.target
    graph = build_graphs(model, ExportOptions(target, "fp32"), TARGETS[target])[0]
    data = labelled_inputs(cfg.train_data, cfg.train_images, graph.metadata)
    trainee, pairs = (model, []) if cfg.scheme == "coreml" else folded_copy(model, graph.sample)
    if pairs:
        graph = build_graphs(trainee, ExportOptions(target, "fp32"), TARGETS[target])[0]
    fake_quant = _prepare(graph, cfg.scheme, keep_float, min(cfg.batch_size, len(data)))
    t0 = time.perf_counter()
    steps, losses = train_steps(fake_quant, data, cfg)
    seconds = time.perf_counter() - t0
    _copy_weights(fake_quant, trainee, conv_bn_pairs(model, graph.sample) if cfg.scheme == "coreml" else [])
    if pairs:
        unfold_into(model, trainee, pairs)
    info = {**asdict(cfg), "scheme": cfg.scheme, "keep_float": list(keep_float), "steps": steps,
            "source": str(checkpoint), "losses": losses}
    path = save_checkpoint(model, out, extra={"qat": info})
    return QatResult(path, steps, seconds, losses)


def qat_and_convert(checkpoint: str | Path, cfg: QatConfig, quant: QuantOptions, out_dir: str | Path):
    """QAT, then the int8 file of every target asked (all four for ``target="all"``), each gated
    against the float ``checkpoint``. Returns (QatResult, {target: ConversionResult or error})."""
    from edgeseg.converters import convert
    from edgeseg.errors import EdgesegError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(checkpoint).stem
    result = qat_finetune(checkpoint, cfg, out_dir / f"{stem}_qat.safetensors", keep_float=quant.keep_float)
    gated = replace(quant, reference=str(checkpoint))
    targets = QAT_TARGETS if cfg.target == "all" else (cfg.target,)
    files = {}
    for target in targets:
        suffix = {"tflite": ".tflite", "onnx": ".onnx", "openvino": ".xml", "coreml": ".mlpackage"}[target]
        try:
            files[target] = convert(result.checkpoint, target, precision="int8", quant=gated,
                                    out=out_dir / f"{stem}_qat_int8{suffix}")
        except EdgesegError as exc:
            if cfg.target != "all":
                raise
            files[target] = exc  # "all": report each target, do not stop at the first miss
    return result, files


class _Logits(nn.Module):
    """The fake-quantized graph as ``x -> logits`` (PT2E graphs take ``image=`` and return a dict)."""

    def __init__(self, graph_module: nn.Module, input_name: str | None, output_name: str | None) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.input_name = input_name  # None: positional input (CoreML's prepared module)
        self.output_name = output_name  # None: the module returns the logits tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.graph_module(x) if self.input_name is None else self.graph_module(**{self.input_name: x})
        return out if self.output_name is None else out[self.output_name]


def _prepare(graph, scheme: str, keep_float: tuple[str, ...], batch: int) -> _Logits:
    if scheme == "coreml":
        from edgeseg.quantization.coreml import freeze_batchnorm, prepare

        sample = graph.sample.expand(batch, *graph.sample.shape[1:]).contiguous()
        prepared, _ = prepare(graph.module.net, graph.metadata.input_size, sample, keep_float)
        prepared.train()
        freeze_batchnorm(prepared)
        return _Logits(prepared, None, None)
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from edgeseg.quantization.tflite import export_program, quantizer

    q = quantizer(keep_float, qat=True)
    q.STATIC_QAT_ONLY_OPS = []  # conv+BN patterns: BN is already folded (see batchnorm.py)
    prepared = prepare_qat_pt2e(export_program(graph.module, graph, batch), q)
    # Eval-mode ops: BN uses (and keeps) its running statistics; fake quantizers still observe.
    return _Logits(move_exported_model_to_eval(prepared), graph.input_name, graph.output_names[0])


def train_steps(module: nn.Module, data, cfg: QatConfig) -> tuple[int, list[float]]:
    """``cfg.epochs`` passes of AdamW over (input, mask) pairs; ``module(x)`` gives the logits."""
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)
    rng = np.random.default_rng(cfg.seed)
    batch = min(cfg.batch_size, len(data))
    per_epoch = len(data) // batch  # full batches only: the fake-quantized graph has a fixed batch size
    steps, losses = 0, []
    for _ in range(cfg.epochs):
        order = rng.permutation(len(data))
        total = 0.0
        for b in range(per_epoch):
            picks = order[b * batch:(b + 1) * batch]
            x = torch.from_numpy(np.concatenate([data[i][0] for i in picks]))
            y = torch.from_numpy(np.stack([data[i][1] for i in picks]).astype(np.int64))
            loss = loss_fn(module(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
            steps += 1
        losses.append(total / per_epoch)
    return steps, losses


def _copy_weights(trained: nn.Module, model: nn.Module, fused_pairs: list[tuple[str, str]] = ()) -> None:
    """Fine-tuned parameters and BN buffers back into the float model, matched by module path
    (the fake-quantized graph keeps the paths under ``net.``; coremltools moves a BN that follows
    a conv into it, ``<conv>.conv.bn.*`` or ``<conv>.bn.*``, listed in ``fused_pairs``)."""
    renames = {}
    for name, module in model.named_modules():  # conv+act fused modules hold the conv as .conv
        if isinstance(module, nn.Conv2d):
            renames.update({f"{name}.conv.weight": f"{name}.weight", f"{name}.conv.bias": f"{name}.bias"})
    for conv, bn in fused_pairs:
        for stem in (f"{conv}.conv.bn", f"{conv}.bn"):  # conv+BN+act and conv+BN fused modules
            renames.update({f"{stem}.{p}": f"{bn}.{p}" for p in ("weight", "bias", "running_mean", "running_var")})
    trained_state = {}
    for key, value in trained.state_dict().items():
        path = key.split("net.", 1)[1] if "net." in key else key
        trained_state[renames.get(path, path)] = value
    state = model.state_dict()
    missing = []
    for key in state:
        if key.endswith("num_batches_tracked"):
            continue  # a training counter; eval-mode BN does not read it
        match = trained_state.get(key)
        if match is None or match.shape != state[key].shape:
            missing.append(key)
            continue
        state[key] = match.detach().clone()
    if missing:
        raise ConfigError(
            f"QAT could not map {len(missing)} weights back to the float model (first: {missing[:3]}); "
            "report the model and target as a bug"
        )
    model.load_state_dict(state)
