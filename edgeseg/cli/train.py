"""``edgeseg train``: train a zoo model on one or several datasets (CPU, GPU or torchrun DDP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edgeseg.errors import ConfigError


def _key_values(items: list[str] | None, flag: str) -> dict[str, Any] | None:
    """``["length=200", "size=[128, 256]"]`` -> ``{"length": 200, "size": [128, 256]}`` (YAML values)."""
    if not items:
        return None
    import yaml

    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r} must be KEY=VALUE, e.g. {flag} length=200")
        parsed[key.strip()] = yaml.safe_load(value)
    return parsed


def train(
    config: Optional[str] = typer.Option(None, "--config", help="YAML file of TrainConfig fields; flags override it."),  # noqa: UP007
    model: Optional[str] = typer.Option(None, "--model", help="Registry name (see `edgeseg models`)."),  # noqa: UP007
    model_option: Optional[list[str]] = typer.Option(None, "--model-option", help="Builder option KEY=VALUE (repeatable)."),  # noqa: UP007
    data: Optional[list[str]] = typer.Option(None, "--data", help="Dataset spec, repeat for several domains (synthetic, synthetic:night, cityscapes:PATH)."),  # noqa: UP007
    data_option: Optional[list[str]] = typer.Option(None, "--data-option", help="Dataset option KEY=VALUE (repeatable), e.g. length=2000."),  # noqa: UP007
    size: Optional[str] = typer.Option(None, "--size", help="Training crop HxW, e.g. 128x256."),  # noqa: UP007
    iters: Optional[int] = typer.Option(None, "--iters", help="Optimizer steps to train."),  # noqa: UP007
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs to train (instead of --iters)."),  # noqa: UP007
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop after this many minutes."),  # noqa: UP007
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per domain per step per process."),  # noqa: UP007
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd or adamw."),  # noqa: UP007
    lr: Optional[float] = typer.Option(None, "--lr", help="Base learning rate."),  # noqa: UP007
    schedule: Optional[str] = typer.Option(None, "--schedule", help="poly or cosine."),  # noqa: UP007
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", help="Linear warm-up steps."),  # noqa: UP007
    workers: Optional[int] = typer.Option(None, "--workers", help="Data loader processes per domain."),  # noqa: UP007
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Keep decoded training images here, downscaled to the largest size the random scale draws (large photos, small crops)."),  # noqa: UP007
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Evaluate every N steps (0: each epoch)."),  # noqa: UP007
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Checkpoint every N steps."),  # noqa: UP007
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of init, data order and augmentation."),  # noqa: UP007
    out: Optional[str] = typer.Option(None, "--out", help="Output directory."),  # noqa: UP007
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1."),  # noqa: UP007
    amp: Optional[str] = typer.Option(None, "--amp", help="auto (bf16/fp16 on CUDA, off on CPU), off, bf16, fp16."),  # noqa: UP007
    compile: Optional[str] = typer.Option(None, "--compile", help="torch.compile the model: auto (on CUDA), on, off."),  # noqa: UP007
    sync_bn: Optional[bool] = typer.Option(None, "--sync-bn/--no-sync-bn", help="SyncBatchNorm across torchrun processes (CUDA)."),  # noqa: UP007
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint (its config.yaml unless --config)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Train a segmentation model; writes last/best.safetensors, train_state and metrics.csv to --out.

    Several --data specs train a multidomain_* model with MixLoss (one head per dataset).
    For several GPUs: torchrun --nproc-per-node N -m edgeseg train ...
    """
    from edgeseg.train import TrainConfig
    from edgeseg.train import train as run_training

    flags = {
        "model": model, "model_options": _key_values(model_option, "--model-option"),
        "data": tuple(data) if data else None, "data_options": _key_values(data_option, "--data-option"),
        "size": size, "iters": iters, "epochs": epochs, "max_minutes": max_minutes,
        "batch_size": batch_size, "optimizer": optimizer, "lr": lr, "schedule": schedule,
        "warmup_steps": warmup_steps, "workers": workers, "cache_dir": cache_dir, "eval_every": eval_every,
        "checkpoint_every": checkpoint_every, "seed": seed, "out": out, "device": device, "amp": amp,
        "compile": compile, "sync_bn": sync_bn,
    }
    given = {k: v for k, v in flags.items() if v is not None}
    if epochs is not None and iters is None:
        given["iters"] = None  # --epochs replaces iterations set in the config file
    if iters is not None and epochs is None:
        given["epochs"] = None
    if resume and not config and out:
        # `--resume --out DIR` alone continues DIR's run with the config it saved.
        saved = Path(out) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"cannot resume: {saved} does not exist; is {out} the output directory of a run?")
        config = str(saved)
    cfg = TrainConfig.from_yaml(config, **given) if config else TrainConfig.from_dict(given)
    result = run_training(cfg, resume=resume, progress=progress)
    final = result.final_metrics
    scores = "  ".join(f"{k} {v:.4f}" for k, v in final.items() if k.endswith("miou"))
    if result.resumed_from is not None and result.step <= result.resumed_from:
        what = f"{result.out_dir} was already trained to step {result.step}: nothing left to train"
    elif result.resumed_from is not None:
        what = (f"trained {cfg.model} from step {result.resumed_from} to {result.step} "
                f"({result.images_per_s:.1f} images/s)")
    else:
        what = f"trained {cfg.model} for {result.step} steps ({result.images_per_s:.1f} images/s)"
    typer.echo(f"{what}; {scores}\ncheckpoint: {result.out_dir / 'last.safetensors'}")


# The options default to None so that a --config file's values win over them; --help shows what a
# run without --config uses: TrainConfig's defaults (edgeseg.train.config, not imported here: it
# imports torch, and --help stays fast). tests/test_cli_messages.py checks these against it.
CONFIG_DEFAULTS = {
    "model": "lraspp_mobilenetv3_small", "data": "synthetic", "size": "128x256", "batch_size": 8,
    "optimizer": "sgd", "lr": 0.02, "schedule": "poly", "warmup_steps": 0, "workers": 2, "eval_every": 0,
    "checkpoint_every": 200, "seed": 0, "out": "runs/train", "device": "auto", "amp": "auto", "compile": "auto",
    "sync_bn": "no-sync-bn", "iters": "none: give --iters or --epochs",
}


def _show_config_defaults() -> None:
    import inspect

    for name, parameter in inspect.signature(train).parameters.items():
        if name in CONFIG_DEFAULTS:
            parameter.default.show_default = str(CONFIG_DEFAULTS[name])


_show_config_defaults()
