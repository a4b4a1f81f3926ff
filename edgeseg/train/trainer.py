"""The training loop: single process on CPU or GPU, or one process per GPU under ``torchrun``.

Each step draws one batch from every domain, runs each through the shared encoder and its
domain's head, sums the per-domain cross-entropies (MixLoss) and back-propagates once.
Rank 0 alone writes files; evaluation counts are all-reduced so every rank sees the same scores.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.fileio import write_text_atomic
from edgeseg.train.config import TrainConfig
from edgeseg.train.batches import DeviceBatches, PixelStage
from edgeseg.train.data import DomainData, build_domains, eval_loader, keep_sigchld_handler, train_loader
from edgeseg.train.device import DeviceSetup, requested_device_type, resolve_device
from edgeseg.train.distributed import DistInfo, barrier, broadcast_flag, init_distributed, shutdown_distributed
from edgeseg.train.evaluate import evaluate_domain
from edgeseg.train.model import DomainForward, build_model, is_multidomain
from edgeseg.train.progress import MetricsWriter, ProgressBar
from edgeseg.train.schedule import build_optimizer, lr_factor, set_lr
from edgeseg.train.state import TrainState, load_train_state, save_train_state

LAST = "last.safetensors"
BEST = "best.safetensors"
TRAIN_STATE = "train_state.safetensors"
# Fields that may differ between an interrupted run and its resume (they change no result).
RESUMABLE_CHANGES = {"workers", "log_every", "device", "out", "max_minutes", "eval_limit", "compile",
                     "cache_dir"}


@dataclass
class TrainResult:
    model: nn.Module  # the trained model (unwrapped, on the training device)
    step: int  # optimizer steps done in total (including those before a resume)
    resumed_from: int | None  # the step the run resumed at, None for a fresh run
    history: list[dict[str, Any]]  # one row per evaluation (= metrics.csv)
    out_dir: Path
    seconds: float  # wall time of this process's training loop
    images_per_s: float  # training throughput over this process's loop, all ranks together
    checkpoints_written: list[Path] = field(default_factory=list)  # by this process (rank 0 only)

    @property
    def final_metrics(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
          on_step_end: Callable[[int], None] | None = None) -> TrainResult:
    """Train ``cfg``; with ``resume`` continue from ``<out>/train_state.safetensors``.

    ``on_step_end(step)`` is called after every optimizer step and its checkpoint (if any).
    """
    dist_info = init_distributed(requested_device_type(cfg.device))
    with keep_sigchld_handler():
        try:
            return _Run(cfg, dist_info, progress=progress, resume=resume).run(on_step_end=on_step_end)
        finally:
            shutdown_distributed(dist_info)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class _Run:
    def __init__(self, cfg: TrainConfig, dist_info: DistInfo, *, progress: bool, resume: bool) -> None:
        from edgeseg.data.transforms import EvalTransform, TrainTransform
        from edgeseg.losses import MixLoss

        self.cfg = cfg
        self.dist = dist_info
        self.progress_enabled = progress and dist_info.is_main
        self.setup: DeviceSetup = resolve_device(cfg.device, amp=cfg.amp, channels_last=cfg.channels_last,
                                                 local_rank=dist_info.local_rank)
        self.out = cfg.out_dir
        self.resume = resume
        if dist_info.is_main:
            _check_writable(self.out)
        # Rank 0 decides (other nodes may not share its disk), everyone raises together.
        holds_run = broadcast_flag((self.out / TRAIN_STATE).exists(), dist_info, self.setup.device)
        if holds_run and not resume:
            raise ConfigError(
                f"{self.out} already holds a training run ({TRAIN_STATE}); continue it with --resume, "
                "or train into a new --out directory (or delete the old one)"
            )
        _seed_everything(cfg.seed)
        self.domains: list[DomainData] = build_domains(
            cfg.data, train_split=cfg.train_split, val_split=cfg.val_split, options=cfg.data_options)
        if cfg.cache_dir is not None:
            from edgeseg.data.cache import DownscaledCache

            for domain in self.domains:
                domain.train = DownscaledCache(domain.train, cfg.cache_dir, crop=cfg.size,
                                               max_scale=cfg.scale_range[1])
        self.multidomain = is_multidomain(cfg.model)
        # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
        self.model = build_model(cfg.model, cfg.model_options, self.domains, cfg.size).to(self.setup.device)
        if self.setup.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if cfg.sync_bn and self.setup.device.type != "cuda":
            raise ConfigError(
                "sync_bn needs CUDA devices (PyTorch's SyncBatchNorm does not run on CPU); "
                "leave --sync-bn out for CPU runs, where BatchNorm statistics stay per process"
            )
        if cfg.sync_bn and dist_info.enabled:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if cfg.bn_momentum is not None:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = cfg.bn_momentum
        mean, std = self.model.metadata.mean, self.model.metadata.std
        self.train_transform = TrainTransform(cfg.size, mean, std, scale=cfg.scale_range)
        self.pixel_stage = PixelStage(mean, std, jitter=self.train_transform.color_jitter > 0,
                                      channels_last=self.setup.channels_last)
        self.eval_transform = EvalTransform(cfg.size, mean, std)
        self.optimizer = build_optimizer(self.model.parameters(), name=cfg.optimizer, lr=cfg.lr,
                                         momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler(self.setup.device.type, enabled=self.setup.needs_grad_scaler)
        self.loss = MixLoss()
        self.forward = DomainForward(self.model, self.multidomain)
        if dist_info.enabled:
            ids = [self.setup.device.index] if self.setup.device.type == "cuda" else None
            self.forward = nn.parallel.DistributedDataParallel(self.forward, device_ids=ids)
        world_batch = cfg.batch_size * dist_info.world_size
        self.steps_per_epoch = max(len(d.train) // world_batch for d in self.domains)
        if self.steps_per_epoch == 0:
            smallest = min(len(d.train) for d in self.domains)
            raise ConfigError(f"{smallest} training samples cannot fill one batch of {world_batch}; lower batch_size")
        self.total_steps = cfg.iters if cfg.iters is not None else cfg.epochs * self.steps_per_epoch
        self.compiled = _use_compile(cfg.compile, self.setup.device, self.total_steps)
        if self.compiled:
            self.model.compile()  # in place: state_dict keys and checkpoints stay as they are
        self.state = TrainState(step=0, epoch=0, history=[], best_miou=-math.inf, config=cfg.to_dict())
        self.written: list[Path] = []

    # --- the loop ----------------------------------------------------------------------------
    def run(self, *, on_step_end: Callable[[int], None] | None) -> TrainResult:
        cfg = self.cfg
        resumed_from = self._resume() if self.resume else None
        if self.dist.is_main:
            write_text_atomic(self.out / "config.yaml", cfg.to_yaml())
        batches = DeviceBatches([self._train_loader(d) for d in self.domains], self.setup.device, self.pixel_stage)
        bar = ProgressBar(self.total_steps, self.state.step, enabled=self.progress_enabled)
        if resumed_from is not None:
            left = self.total_steps - resumed_from
            bar.log(f"resuming {self.out} from step {resumed_from} of {self.total_steps}"
                    + (f" ({left} left)" if left > 0 else " (already finished: nothing left to train)"))
        metrics = MetricsWriter(self.out, enabled=self.dist.is_main)
        images_per_step = cfg.batch_size * len(self.domains) * self.dist.world_size
        start = time.perf_counter()
        first_step = self.state.step
        window = _Window()
        last_eval_step = self.state.history[-1]["step"] if self.state.history else -1
        self.model.train()
        try:
            while self.state.step < self.total_steps:
                lr = cfg.lr * lr_factor(self.state.step, self.total_steps, schedule=cfg.schedule,
                                        warmup_steps=cfg.warmup_steps, poly_power=cfg.poly_power)
                set_lr(self.optimizer, lr)
                loss = self._step(next(batches))
                batches.prefetch()  # the next step's copy overlaps this step's queued GPU work
                self.state.step += 1
                window.add(loss, images_per_step)
                step = self.state.step
                if step % cfg.log_every == 0 or step == self.total_steps:
                    bar.update(step, loss=window.loss, lr=lr, images_per_s=window.images_per_s)
                end_of_epoch = step % self.steps_per_epoch == 0
                if end_of_epoch:
                    self.state.epoch += 1
                out_of_time = cfg.max_minutes is not None and time.perf_counter() - start > 60 * cfg.max_minutes
                if self.dist.enabled:
                    # Rank 0's clock decides, read every log_every steps: a per-step broadcast would
                    # wait for the GPU at every step.
                    out_of_time = step % cfg.log_every == 0 and broadcast_flag(out_of_time, self.dist, self.setup.device)
                done = step == self.total_steps or out_of_time
                if (end_of_epoch and cfg.eval_every == 0) or (cfg.eval_every and step % cfg.eval_every == 0) or done:
                    self._evaluate(lr, window, bar)
                    metrics.write(self.state.history)
                    last_eval_step = step
                    window = _Window()
                if step % cfg.checkpoint_every == 0 or done:
                    self._checkpoint()
                if on_step_end is not None:
                    on_step_end(step)
                if out_of_time:
                    bar.log(f"time budget of {cfg.max_minutes} min reached at step {step}")
                    break
            if last_eval_step != self.state.step:  # e.g. resumed at the very end
                self._evaluate(cfg.lr, window, bar)
                metrics.write(self.state.history)
                self._checkpoint()
        finally:
            bar.close()
            metrics.close()
        seconds = time.perf_counter() - start
        done_steps = self.state.step - first_step
        return TrainResult(
            model=self.model, step=self.state.step, resumed_from=resumed_from,
            history=self.state.history, out_dir=self.out, seconds=seconds,
            images_per_s=done_steps * images_per_step / seconds if seconds > 0 else 0.0,
            checkpoints_written=self.written,
        )

    def _step(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Queue one optimizer step; returns the loss as a device tensor (reading it would make
        the host wait for the GPU, so :class:`_Window` reads it every ``log_every`` steps)."""
        setup = self.setup
        images, masks = {}, {}
        for domain, (x, y) in zip(self.domains, batches):  # on the device, in the model's layout
            images[domain.name] = x
            masks[domain.name] = y
        autocast = (torch.autocast(setup.device.type, dtype=setup.amp_dtype) if setup.amp_dtype
                    else contextlib.nullcontext())
        with autocast:
            logits = self.forward(images)
        # The loss in fp32: a cross-entropy over many pixels loses precision in bf16/fp16.
        result = self.loss({name: (logits[name].float(), masks[name]) for name in images})
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(result.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return result.total.detach()

    def _train_loader(self, domain: DomainData):
        on_cuda = self.setup.device.type == "cuda"
        loader, _ = train_loader(
            domain, self.train_transform, batch_size=self.cfg.batch_size, seed=self.cfg.seed,
            start_step=self.state.step, workers=self.cfg.workers, rank=self.dist.rank,
            world_size=self.dist.world_size, pin_memory=on_cuda,
            finish_in_workers=not on_cuda)  # CPU: the workers finish the crops
        return loader

    # --- evaluation and checkpoints ----------------------------------------------------------
    def _evaluate(self, lr: float, window: _Window, bar: ProgressBar) -> None:
        self._sync_buffers()
        row: dict[str, Any] = {
            "step": self.state.step, "epoch": round(self.state.step / self.steps_per_epoch, 3),
            "loss": window.loss, "lr": lr, "images_per_s": window.images_per_s,
        }
        mious = []
        for domain in self.domains:
            loader = eval_loader(domain, self.eval_transform, batch_size=self.cfg.batch_size,
                                 limit=self.cfg.eval_limit, workers=min(self.cfg.workers, 1),
                                 rank=self.dist.rank, world_size=self.dist.world_size)
            scores = evaluate_domain(self.model, loader, domain=domain.name if self.multidomain else None,
                                     classes=domain.classes, setup=self.setup, dist_info=self.dist)
            prefix = f"{domain.name}/" if len(self.domains) > 1 or self.multidomain else ""
            row[f"{prefix}miou"] = scores.miou
            row[f"{prefix}pixel_accuracy"] = scores.pixel_accuracy
            row[f"{prefix}mean_accuracy"] = scores.mean_accuracy
            for name, iou in scores.as_dict()["per_class_iou"].items():
                row[f"{prefix}iou/{name}"] = iou
            mious.append(scores.miou)
        if prefix:
            row["miou"] = float(np.nanmean(mious))
        self.state.history.append(row)
        self._save_best(row["miou"])
        summary = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.endswith("miou"))
        bar.log(f"step {self.state.step}: {summary}")

    def _sync_buffers(self) -> None:
        # DDP broadcasts rank 0's BN statistics at each forward, but every rank then updates its
        # own copy; make them identical before scoring or saving.
        if self.dist.enabled:
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)

    def _checkpoint(self) -> None:
        from edgeseg.checkpoint import save_checkpoint

        self._sync_buffers()
        if self.dist.is_main:
            self.written.append(save_checkpoint(self.model, self.out / LAST, extra=self._extra()))
            # The state last: whatever it records, last.safetensors is at least that new.
            self.written.append(save_train_state(
                self.out / TRAIN_STATE, model=self.model, optimizer=self.optimizer,
                scaler_state=self.scaler.state_dict(), state=self.state))
        barrier(self.dist)

    def _save_best(self, miou: float) -> None:
        """best.safetensors right after an evaluation that beats every earlier one (all ranks
        hold the same all-reduced mIoU, so they agree on the decision)."""
        if math.isnan(miou) or miou <= self.state.best_miou:
            return
        self.state.best_miou = miou
        if self.dist.is_main:
            from edgeseg.checkpoint import save_checkpoint

            self.written.append(save_checkpoint(self.model, self.out / BEST, extra=self._extra()))

    def _extra(self) -> dict[str, Any]:
        """Training facts stored in the checkpoint header (step, latest metrics, config)."""
        latest = self.state.history[-1] if self.state.history else {}
        return {"step": self.state.step, "epoch": self.state.epoch, "metrics": latest,
                "train_config": self.cfg.to_dict()}

    def _resume(self) -> int:
        state, scaler_state = load_train_state(self.out / TRAIN_STATE, model=self.model,
                                               optimizer=self.optimizer, map_location=self.setup.device)
        # A field newer than the interrupted run's config counts as its default there.
        defaults = TrainConfig(iters=1).to_dict()
        changed = sorted(k for k, v in self.cfg.to_dict().items()
                         if k not in RESUMABLE_CHANGES and state.config.get(k, defaults[k]) != v)
        if changed:
            raise ConfigError(
                f"cannot resume {self.out}: the config differs from the interrupted run's in {changed}. "
                f"Resume with the same settings (only {sorted(RESUMABLE_CHANGES)} may change), "
                "or train into a new output directory"
            )
        if scaler_state:
            self.scaler.load_state_dict(scaler_state)
        state.config = self.cfg.to_dict()
        self.state = state
        return state.step


class _Window:
    """Running loss and throughput since the last evaluation (what the bar and CSV show)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.steps = 0
        self.images = 0
        self.loss_sum: torch.Tensor | float = 0.0  # summed on the device; read only in .loss

    def add(self, loss: torch.Tensor, images: int) -> None:
        self.steps += 1
        self.images += images
        self.loss_sum = self.loss_sum + loss

    @property
    def loss(self) -> float:
        return float(self.loss_sum) / self.steps if self.steps else float("nan")

    @property
    def images_per_s(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.images / elapsed if elapsed > 0 else 0.0


# torch.compile saves ~12% of a step on an H200 (LR-ASPP-L 332 vs 294 images/s, SegFormer-B0 238 vs
# 207) but costs 1-2 minutes of compilation plus a recompile for evaluation: it wins back that time
# after roughly 15,000 steps (benchmarks/results/gpu_train.md).
COMPILE_AUTO_MIN_STEPS = 20_000


def _use_compile(mode: str, device: torch.device, total_steps: int) -> bool:
    """``auto``: torch.compile for CUDA runs long enough to win its compile time back; never on
    CPU, where compiling costs minutes too and was not measured faster."""
    if mode == "auto":
        return device.type == "cuda" and total_steps >= COMPILE_AUTO_MIN_STEPS
    return mode == "on"


def _check_writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output directory {out} is a file; give a directory with --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {out} ({exc.strerror}); choose another --out") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"output directory {out} is not writable; choose another --out or fix its permissions")
