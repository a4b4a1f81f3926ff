"""Quantization-aware training: fine-tune a float checkpoint under the target's fake quantization.

- TFLite, ONNX, OpenVINO: PT2E QAT with litert-torch's quantizer (per-channel symmetric int8
  weights, per-tensor asymmetric int8 activations, conv+BN folded in the fake-quantized graph):
  the scheme all three int8 paths here use (OpenVINO: NNCF preset MIXED; ONNX: QDQ per-channel).
  NNCF's own PyTorch QAT needs a C++ extension compiled at first use, which does not build in
  time on small CPUs, so PT2E stands in for it.
- CoreML: coremltools' ``LinearQuantizer`` (symmetric W8A8).

BatchNorm statistics are frozen (running statistics, as the int8 file will fold them) and the
weights learn around the rounding. Fine-tuning data flows as in ``edgeseg train``: uint8 crops from
loader workers, jitter and normalization batched on the device (:mod:`edgeseg.train.batches`), on
the CPU or a GPU, one process or one per GPU under ``torchrun`` (the fake-quantized graph wrapped
in DDP, each rank its own share of every step's images; rank 0 writes the files). The fine-tuned float weights are saved as an ordinary
checkpoint (header ``extra["qat"]``), which every target then converts to int8 through its own
path, re-calibrated, and gated against the float model QAT started from.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.quantization.options import QuantOptions
from edgeseg.runtime import formats

# The targets QAT trains for and the scheme each one's fake quantization mirrors (see the module
# docstring): the format table's rows with a qat_scheme.
SCHEMES = formats.TableView(lambda: {n: f.qat_scheme for n, f in formats.targets().items() if f.qat_scheme})
QAT_TARGETS = formats.TableView(lambda: dict.fromkeys(SCHEMES))


OPTIMIZERS = ("adamw", "sgd")
# QAT's default lr as a fraction of the checkpoint's training lr, and the lr (AdamW) for a
# checkpoint that records none (imported weights): small, because their training lr is unknown.
LR_FRACTION = 0.01
UNKNOWN_LR = 1e-5


@dataclass(frozen=True)
class QatConfig:
    """One QAT run (the ``edgeseg qat`` flags)."""

    target: str  # tflite | onnx | openvino | coreml | all (one checkpoint, every target)
    epochs: int | None = 1  # passes over the fine-tuning images (or give iters)
    train_data: str = "synthetic:train"  # labelled images for fine-tuning (build_dataset spec[:split])
    # Fine-tuning images, spread over the split; None = the whole split (a full Cityscapes QAT).
    # QAT needs a few hundred steps near a trained optimum, so the CPU default is small.
    train_images: int | None = 256
    batch_size: int = 8  # images per step per process
    # QAT fine-tunes near a trained optimum: None = LR_FRACTION of the lr the checkpoint trained
    # with (Jacob et al. fine-tune at about 1%), with its optimizer (see :func:`resolve_recipe`).
    lr: float | None = None
    # adamw | sgd; None = the optimizer the checkpoint trained with (AdamW when it records none).
    optimizer: str | None = None
    momentum: float | None = None  # SGD momentum; None = the checkpoint's (0.9 when it records none)
    seed: int = 0  # data order and augmentation
    iters: int | None = None  # optimizer steps, instead of epochs
    workers: int = 0  # data loader processes (0 = in this process)
    device: str = "auto"  # auto (cuda when present), cpu, cuda, cuda:1
    # Mixed precision of the fake-quantized forward: off (fp32, the default: int8 rounding is
    # simulated exactly) or bf16 on CUDA.
    amp: str = "off"
    # Training augmentation (random scale in this range, crop, flip, colour jitter); None = each
    # image resized to the model's input size, as the runtime feeds it.
    scale_range: tuple[float, float] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.target not in (*QAT_TARGETS, "all"):
            raise ConfigError(f"--target {self.target!r} is not one of {(*QAT_TARGETS, 'all')}")
        if (self.epochs is None) == (self.iters is None):
            raise ConfigError("give exactly one of --epochs or --iters")
        for name in ("epochs", "iters", "train_images", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.optimizer not in (None, *OPTIMIZERS):
            raise ConfigError(f"--optimizer {self.optimizer!r} is not one of {OPTIMIZERS}")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise ConfigError(f"QAT momentum must be in [0, 1), got {self.momentum}")
        if self.amp not in ("off", "bf16"):
            raise ConfigError(f"--amp {self.amp!r} is not one of ('off', 'bf16') for QAT (fp16 fake quantization overflows)")
        if self.scale_range is not None:
            low, high = (float(v) for v in self.scale_range)
            if not 0 < low <= high:
                raise ConfigError(f"--scale-range {self.scale_range} must be LOW,HIGH with 0 < LOW <= HIGH")
            object.__setattr__(self, "scale_range", (low, high))

    @property
    def scheme(self) -> str:
        return "pt2e" if self.target == "all" else SCHEMES[self.target]


def training_record(checkpoint: str | Path) -> dict:
    """The training config ``checkpoint`` records (``edgeseg train`` writes it; a QAT checkpoint
    passes its source's on), or {} for weights with no record (imported)."""
    from edgeseg.checkpoint import read_checkpoint_header

    return read_checkpoint_header(checkpoint)[0]["extra"].get("train_config") or {}


def resolve_recipe(checkpoint: str | Path, cfg: QatConfig) -> tuple[QatConfig, str]:
    """``cfg`` with the optimizer, lr and momentum it leaves open taken from the training run
    ``checkpoint`` records, and a line saying where each came from.

    The defaults follow the checkpoint: its optimizer at ``LR_FRACTION`` of its base lr. A fixed
    lr is too much for one model and too little for another (measured in int8.md: AdamW 1e-4 is
    2.5% of the LR-ASPP recipes' lr and QAT gained there, but 10% of SegFormer-B0's, where QAT
    fell below PTQ on every target). A QAT checkpoint passes its source's training record on."""
    from edgeseg.train.config import TrainConfig

    trained = training_record(checkpoint)
    known = trained.get("optimizer") in OPTIMIZERS and isinstance(trained.get("lr"), (int, float)) and trained["lr"] > 0
    optimizer = cfg.optimizer or (trained["optimizer"] if known else "adamw")
    momentum = cfg.momentum if cfg.momentum is not None else float(trained.get("momentum", 0.9) if known else 0.9)
    if cfg.lr is not None:
        lr, why = cfg.lr, f"lr {cfg.lr:g} (given)"
    elif known and trained["optimizer"] == optimizer:
        lr = LR_FRACTION * float(trained["lr"])
        why = f"lr {lr:.3g}: {LR_FRACTION:.0%} of the checkpoint's training lr {trained['lr']:g}"
    else:
        lr = UNKNOWN_LR if optimizer == "adamw" else LR_FRACTION * TrainConfig.lr  # edgeseg train's default
        trained_with = f"trained with {trained['optimizer']}, not {optimizer}" if known else "records no training lr"
        why = (f"lr {lr:g}: the checkpoint {trained_with}; give --lr, about {LR_FRACTION:.0%} of the lr it "
               "trained with")
    desc = f"{'AdamW' if optimizer == 'adamw' else f'SGD (momentum {momentum:g})'}, {why}"
    return replace(cfg, lr=lr, optimizer=optimizer, momentum=momentum), desc


@dataclass
class QatResult:
    checkpoint: Path | None  # the fine-tuned float weights (None on ranks other than 0)
    steps: int  # optimizer steps
    seconds: float  # fine-tuning wall time
    losses: list[float]  # mean loss per epoch (the last one may be partial with iters)
    images_per_s: float = 0.0  # fine-tuning throughput, all processes together
    device: str = "cpu"  # where the fake-quantized graph trained
    model: nn.Module | None = None  # the fine-tuned float model (on the CPU)
    recipe: str = ""  # the optimizer and lr it ran with, and where they came from (resolve_recipe)

    @property
    def is_main(self) -> bool:
        return self.checkpoint is not None


def qat_finetune(checkpoint: str | Path, cfg: QatConfig, out: str | Path, *, keep_float: tuple[str, ...] = (),
                 progress=None) -> QatResult:
    """Fine-tune ``checkpoint`` under fake quantization; save the weights to ``out`` (.safetensors).

    Under ``torchrun`` every process calls this; rank 0 alone writes ``out``. ``progress(step,
    total)`` is called after each optimizer step (on rank 0).
    """
    from edgeseg.train.data import keep_sigchld_handler
    from edgeseg.train.device import requested_device_type, resolve_device
    from edgeseg.train.distributed import init_distributed, shutdown_distributed

    dist_info = init_distributed(requested_device_type(cfg.device))
    with keep_sigchld_handler():
        try:
            setup = resolve_device(cfg.device, amp=cfg.amp, channels_last=False, local_rank=dist_info.local_rank)
            return _finetune(checkpoint, cfg, out, keep_float, setup, dist_info,
                             progress if dist_info.is_main else None)
        finally:
            shutdown_distributed(dist_info)


def _finetune(checkpoint, cfg: QatConfig, out, keep_float, setup, dist_info, progress=None) -> QatResult:
    from edgeseg.checkpoint import load_model, save_checkpoint
    from edgeseg.converters import TARGETS
    from edgeseg.converters.options import ExportOptions
    from edgeseg.converters.wrapper import build_graphs
    from edgeseg.quantization.batchnorm import conv_bn_pairs, folded_copy, unfold_into
    from edgeseg.quantization.layers import check_layers
    from edgeseg.train.distributed import barrier

    torch.manual_seed(cfg.seed)
    cfg, recipe = resolve_recipe(checkpoint, cfg)
    trained = training_record(checkpoint)
    model = load_model(checkpoint)
    check_layers(model, keep_float)
    target = "tflite" if cfg.target == "all" else cfg.target
    # The fake-quantized graph trains on the loader's normalized NCHW batches: no pixel
    # preprocessing or NHWC input inside it, whatever the target's file defaults are (the int8
    # file written afterwards takes the target's own defaults).
    training_io = ExportOptions(target, "fp32", layout="nchw", include_preprocess=False)
    # A multi-domain model trains as the file with every head: one graph, one output per domain.
    graph = build_graphs(model, training_io, TARGETS[target])[0]
    batches, steps_per_epoch, total_steps = fine_tuning_batches(cfg, graph.metadata, setup, dist_info)
    domains = max(1, len(graph.metadata.domains))
    trainee, pairs = (model, []) if cfg.scheme == "coreml" else folded_copy(model, graph.sample)
    if pairs:
        graph = build_graphs(trainee, training_io, TARGETS[target])[0]
    fused = conv_bn_pairs(model, graph.sample) if cfg.scheme == "coreml" else []
    graph.module.to(setup.device)
    graph = replace(graph, sample=graph.sample.to(setup.device))
    # One forward per step over every domain's batch together (the encoder sees them all, as in
    # training); each head's loss is taken on its own domain's images.
    fake_quant = _prepare(graph, cfg.scheme, keep_float, cfg.batch_size * domains)
    trainable: nn.Module = fake_quant
    if dist_info.enabled:
        ids = [setup.device.index] if setup.device.type == "cuda" else None
        trainable = nn.parallel.DistributedDataParallel(fake_quant, device_ids=ids)
    t0 = time.perf_counter()
    losses = train_steps(trainable, batches, cfg, total_steps, steps_per_epoch, setup,
                         nhwc=graph.metadata.layout == "nhwc", progress=progress)
    seconds = time.perf_counter() - t0
    images_per_s = total_steps * cfg.batch_size * domains * dist_info.world_size / seconds if seconds > 0 else 0.0
    fake_quant.cpu()
    trainee.cpu()
    _copy_weights(fake_quant, trainee, fused)
    if pairs:
        unfold_into(model, trainee, pairs)
    path = None
    if dist_info.is_main:
        info = {**asdict(cfg), "scheme": cfg.scheme, "keep_float": list(keep_float), "steps": total_steps,
                "source": str(checkpoint), "losses": losses, "device": setup.device.type,
                "processes": dist_info.world_size, "recipe": recipe}
        path = save_checkpoint(model, out, extra={"qat": info, **({"train_config": trained} if trained else {})})
    barrier(dist_info)
    return QatResult(path, total_steps, seconds, losses, images_per_s, setup.device.type, model, recipe)


def domain_training_specs(train_data: str, meta) -> list[tuple[str | None, str]]:
    """(head, dataset spec with split) per head QAT fine-tunes: ``[(None, train_data)]`` for a
    single-domain model. A multi-domain model needs each head's own labelled data: the bare
    ``synthetic[:split]`` spec gives each head its synthetic domain (``synthetic_night`` ->
    ``synthetic:night:split``); other data is given per head as ``HEAD=SPEC,HEAD=SPEC``."""
    from edgeseg.quantization.calibration import domain_specs, split_spec

    heads = tuple(d.name for d in meta.domains)
    if not heads:
        if "=" in train_data:
            raise ConfigError(f"--train-data {train_data!r}: HEAD=SPEC pairs are for multi-domain models; "
                              f"{meta.model} has one head, give one spec such as synthetic:train")
        return [(None, train_data)]
    if "=" not in train_data:
        name, split = split_spec(train_data)
        specs = domain_specs(name, meta)
        if name == "synthetic" and len(specs) == len(heads):
            return [(h, f"{s}:{split}") for h, s in zip(heads, specs)]
        raise ConfigError(
            f"--train-data {train_data!r}: {meta.model} has {len(heads)} heads ({', '.join(heads)}), each "
            "with its own label space, so QAT needs labelled data per head: give HEAD=SPEC pairs, e.g. "
            + ",".join(f"{h}=folder:/data/{h}:train" for h in heads)
        )
    given: dict[str, str] = {}
    for part in train_data.split(","):
        head, sep, spec = part.partition("=")
        head, spec = head.strip(), spec.strip()
        if not sep or not spec or head not in heads or head in given:
            problem = ("is not HEAD=SPEC" if not sep or not spec else
                       f"names {head!r} twice" if head in given else f"names {head!r}, not one of its heads")
            raise ConfigError(f"--train-data {train_data!r} {problem}; {meta.model}'s heads are "
                              f"{', '.join(heads)}: give one HEAD=SPEC pair for each")
        given[head] = spec
    missing = [h for h in heads if h not in given]
    if missing:
        raise ConfigError(f"--train-data {train_data!r} gives no data for head(s) {', '.join(missing)}; "
                          "add a HEAD=SPEC pair for each (MixLoss trains every head at every step)")
    return [(h, given[h]) for h in heads]


def fine_tuning_batches(cfg: QatConfig, meta, setup, dist_info):
    """Endless fine-tuning batches on ``setup.device`` from the training data path, this rank's
    share of each step (one batch per head of a multi-domain model, in domain order); and the
    steps per epoch (over the largest domain's images) and in total."""
    from edgeseg.data.transforms import EvalTransform, TrainTransform
    from edgeseg.quantization.calibration import open_dataset, split_spec, spread_indices
    from edgeseg.train.batches import DeviceBatches, PixelStage
    from edgeseg.train.data import DomainData, train_loader

    world_batch = cfg.batch_size * dist_info.world_size
    datasets = []
    for head, spec in domain_training_specs(cfg.train_data, meta):
        name, split = split_spec(spec)
        dataset = open_dataset(name, split, meta.input_size, cfg.train_images)
        if head is not None and dataset.classes and len(dataset.classes) != len(meta.domain_info(head).classes):
            raise ConfigError(
                f"{spec!r} has {len(dataset.classes)} classes but head {head!r} predicts "
                f"{len(meta.domain_info(head).classes)}; give that head data in its own label space"
            )
        if cfg.train_images is not None:
            if len(dataset) < cfg.train_images:
                raise ConfigError(
                    f"{spec!r} holds {len(dataset)} images, fewer than --train-images {cfg.train_images}; "
                    "lower --train-images, or leave it out to fine-tune on the whole split"
                )
            dataset = _Picked(dataset, spread_indices(len(dataset), cfg.train_images))
        if len(dataset) < world_batch:
            raise ConfigError(
                f"{len(dataset)} fine-tuning images in {spec!r} cannot fill one step of {world_batch} "
                f"(--batch-size {cfg.batch_size} x {dist_info.world_size} processes); lower --batch-size or add images"
            )
        datasets.append((spec, head or "qat", dataset))
    if cfg.scale_range is None:
        transform = EvalTransform(meta.input_size, meta.mean, meta.std)
    else:
        transform = TrainTransform(meta.input_size, meta.mean, meta.std, scale=cfg.scale_range)
    stage = PixelStage(meta.mean, meta.std, jitter=cfg.scale_range is not None)
    on_cuda = setup.device.type == "cuda"
    loaders, steps_per_epoch = [], 0
    for spec, head, dataset in datasets:
        loader, steps = train_loader(
            DomainData(spec, head, (), (), dataset, None), transform, batch_size=cfg.batch_size, seed=cfg.seed,
            start_step=0, workers=cfg.workers, rank=dist_info.rank, world_size=dist_info.world_size,
            pin_memory=on_cuda, finish_in_workers=not on_cuda,
            start_method="forkserver")  # the quantizer imports JAX: no fork
        loaders.append(loader)
        steps_per_epoch = max(steps_per_epoch, steps)
    total = cfg.iters if cfg.iters is not None else cfg.epochs * steps_per_epoch
    return DeviceBatches(loaders, setup.device, stage), steps_per_epoch, total


class _Picked:
    """``dataset`` restricted to ``indices`` (the images spread over the split)."""

    def __init__(self, dataset, indices: list[int]) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]


def qat_and_convert(checkpoint: str | Path, cfg: QatConfig, quant: QuantOptions, out_dir: str | Path, *,
                    progress=None, step_progress=None):
    """QAT, then the int8 file of every target asked (all four for ``target="all"``), each gated
    against the float ``checkpoint``. Returns (QatResult, {target: ConversionResult or error}).
    ``progress(text)`` hears each stage, ``step_progress(step, total)`` each fine-tuning step."""
    from edgeseg.converters import convert
    from edgeseg.errors import EdgesegError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(checkpoint).stem
    result = qat_finetune(checkpoint, cfg, out_dir / f"{stem}_qat.safetensors", keep_float=quant.keep_float,
                          progress=step_progress)
    if not result.is_main:
        return result, {}  # under torchrun, rank 0 converts and gates
    gated = replace(quant, reference=str(checkpoint))
    targets = tuple(QAT_TARGETS) if cfg.target == "all" else (cfg.target,)
    files = {}
    for target in targets:
        suffix = formats.FORMATS[target].suffix
        try:
            files[target] = convert(result.checkpoint, target, precision="int8", quant=gated,
                                    out=out_dir / f"{stem}_qat_int8{suffix}", progress=progress)
        except EdgesegError as exc:
            if cfg.target != "all":
                raise
            files[target] = exc  # "all": report each target, do not stop at the first miss
    return result, files


class _Logits(nn.Module):
    """The fake-quantized graph as ``x -> (logits, ...)``, one per head in domain order (PT2E
    graphs take ``image=`` and return a dict by output name)."""

    def __init__(self, graph_module: nn.Module, input_name: str | None, output_names: tuple[str, ...] | None) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.input_name = input_name  # None: positional input (CoreML's prepared module)
        self.output_names = output_names  # None: the module returns the logits tensor or a tuple of them

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.graph_module(x) if self.input_name is None else self.graph_module(**{self.input_name: x})
        if self.output_names is not None:
            return tuple(out[name] for name in self.output_names)
        return (out,) if isinstance(out, torch.Tensor) else tuple(out)


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
    return _Logits(move_exported_model_to_eval(prepared), graph.input_name, graph.output_names)


def train_steps(module: nn.Module, batches, cfg: QatConfig, total_steps: int, steps_per_epoch: int,
                setup, *, nhwc: bool = False, progress=None) -> list[float]:
    """``total_steps`` optimizer steps (``cfg`` completed by :func:`resolve_recipe`) over ``batches`` (``[(images, masks)]`` per step, one pair per
    head, on the device); ``module(x)`` gives a tuple of logits, one per head. The heads' batches
    go through one forward together and the loss is MixLoss: the sum of each head's cross-entropy
    on its own domain's images (plain cross-entropy for one head). Returns the mean loss of each
    epoch, read once per epoch (no per-step wait for the GPU)."""
    from edgeseg.train.schedule import build_optimizer

    if cfg.lr is None or cfg.optimizer is None or cfg.momentum is None:
        raise ValueError("train_steps takes a QatConfig completed by resolve_recipe")
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, name=cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum, weight_decay=0.0)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)
    autocast = (torch.autocast(setup.device.type, dtype=setup.amp_dtype) if setup.amp_dtype
                else contextlib.nullcontext())
    losses: list[float] = []
    total: torch.Tensor | float = 0.0
    for step in range(1, total_steps + 1):
        pairs = next(batches)
        x = pairs[0][0] if len(pairs) == 1 else torch.cat([images for images, _ in pairs])
        if nhwc:
            x = x.permute(0, 2, 3, 1)
        with autocast:
            heads = module(x)
        loss = 0.0
        start = 0
        for logits, (images, y) in zip(heads, pairs, strict=True):
            loss = loss + loss_fn(logits[start:start + len(images)].float(), y)
            start += len(images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        batches.prefetch()
        total = total + loss.detach()
        done_in_epoch = (step - 1) % steps_per_epoch + 1
        if done_in_epoch == steps_per_epoch or step == total_steps:
            losses.append(float(total) / done_in_epoch)
            total = 0.0
        if progress is not None:
            progress(step, total_steps)
    return losses


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
        path = path.removeprefix("heads.model.")  # the every-head graph of a multi-domain model
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
        state[key] = match.detach().to(state[key].device).clone()
    if missing:
        raise ConfigError(
            f"QAT could not map {len(missing)} weights back to the float model (first: {missing[:3]}); "
            "report the model and target as a bug"
        )
    model.load_state_dict(state)
