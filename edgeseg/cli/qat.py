"""``edgeseg qat`` (fine-tune under the target's fake quantization, then write gated int8 files)
and ``edgeseg int8-report`` (which layers cost most in int8)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeseg.metadata import parse_size
from edgeseg.runtime.formats import targets


def quant_options(calibration: str, calib_size: int, io: str, keep_float: list[str] | None,
                  accuracy_control: bool, coreml_mode: str, max_miou_drop: float, gate_images: int,
                  min_agreement: float = 0.90):
    """The int8 flags shared by ``edgeseg convert --precision int8`` and ``edgeseg qat``."""
    from edgeseg.quantization.options import QuantOptions

    return QuantOptions(
        calibration=calibration, calib_size=calib_size, io=io, keep_float=tuple(keep_float or ()),
        accuracy_control=accuracy_control, coreml_mode=coreml_mode, max_miou_drop=max_miou_drop,
        gate_images=gate_images, min_agreement=min_agreement,
    )


CALIBRATION = typer.Option(
    "synthetic:train", "--calibration",
    help="Calibration images: synthetic:train, folder:PATH (labelled: mIoU gate), or plain images "
    "images:PATH (no masks: the gate compares int8 with float on held-out images).")
CALIB_SIZE = typer.Option(64, "--calib-size", help="Number of calibration images.")
IO = typer.Option("float", "--io", help="TFLite: image input and output type, float, int8 or uint8.")
KEEP_FLOAT = typer.Option(None, "--keep-float", help="A layer to leave in float (repeat); names from `edgeseg int8-report`.")
ACCURACY_CONTROL = typer.Option(False, "--accuracy-control", help="OpenVINO: nncf.quantize_with_accuracy_control.")
COREML_MODE = typer.Option("w8a8", "--coreml-mode", help="CoreML: w8a8, weights (int8 weights only) or palette.")
MAX_MIOU_DROP = typer.Option(0.5, "--max-miou-drop", help="Gate: mIoU points the int8 file may lose vs float (as validate).")
MIN_AGREEMENT = typer.Option(0.90, "--min-agreement", help="Gate: smallest fraction of pixels whose class equals float's (as validate).")
GATE_IMAGES = typer.Option(32, "--gate-images", help="Gate: held-out images scored (val split of --calibration).")


def qat(
    checkpoint: str = typer.Argument(..., help="A float edgeseg .safetensors checkpoint."),
    target: str = typer.Option(..., "--target", help=", ".join(n for n, f in targets().items() if f.qat_scheme) + ", or all (one QAT checkpoint, every target)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the fine-tuning images (default 1, unless --iters)."),  # noqa: UP007
    iters: Optional[int] = typer.Option(None, "--iters", help="Optimizer steps, instead of --epochs."),  # noqa: UP007
    train_data: str = typer.Option("synthetic:train", "--train-data", help="Labelled fine-tuning images: a dataset spec (cityscapes:PATH, folder:PATH, synthetic), :SPLIT optional; a multi-domain model takes HEAD=SPEC,HEAD=SPEC (synthetic: each head its own domain)."),
    train_images: int = typer.Option(256, "--train-images", help="Fine-tuning images spread over the split; 0 = the whole split."),
    batch_size: int = typer.Option(8, "--batch-size", help="Images per step per process."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default: 1% of the lr the checkpoint trained with, which it records; 1e-5 when it records none)."),  # noqa: UP007
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adamw or sgd (default: the checkpoint's training optimizer; adamw when it records none)."),  # noqa: UP007
    workers: int = typer.Option(0, "--workers", help="Data loader processes (0: load in this process)."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when present), cpu, cuda, cuda:1."),
    amp: str = typer.Option("off", "--amp", help="off (fp32 fake quantization) or bf16 (CUDA)."),
    scale_range: Optional[str] = typer.Option(None, "--scale-range", help="Augment as training does, random scale LOW,HIGH (e.g. 0.5,2.0); default: resize only."),  # noqa: UP007
    seed: int = typer.Option(0, "--seed", help="Seed of data order and augmentation."),
    out_dir: Optional[str] = typer.Option(None, "--out-dir", help="Where the QAT checkpoint and int8 files go (default: beside the checkpoint)."),  # noqa: UP007
    calibration: str = CALIBRATION,
    calib_size: int = CALIB_SIZE,
    io: str = IO,
    keep_float: Optional[list[str]] = KEEP_FLOAT,  # noqa: UP007
    accuracy_control: bool = ACCURACY_CONTROL,
    coreml_mode: str = COREML_MODE,
    max_miou_drop: float = MAX_MIOU_DROP,
    min_agreement: float = MIN_AGREEMENT,
    gate_images: int = GATE_IMAGES,
) -> None:
    """Fine-tune with fake quantization mirroring the target's int8 scheme, then convert and gate.

    On a GPU: --device cuda --workers 8 --train-images 0 --epochs 3 fine-tunes on a whole dataset.
    Several GPUs: torchrun --nproc-per-node N -m edgeseg qat ... (rank 0 writes and gates the files).
    """
    from edgeseg.quantization.qat import QatConfig, qat_and_convert

    cfg = QatConfig(
        target, epochs=None if iters is not None and epochs is None else (epochs or 1), iters=iters,
        train_data=train_data, train_images=train_images or None, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed,
        workers=workers, device=device, amp=amp, scale_range=_pair(scale_range, "--scale-range"))
    quant = quant_options(calibration, calib_size, io, keep_float, accuracy_control, coreml_mode, max_miou_drop,
                          gate_images, min_agreement)
    from edgeseg.cli.options import ProgressLines
    from edgeseg.quiet import say

    say(f"qat: fine-tuning {checkpoint} under {cfg.target} fake quantization")
    result, files = qat_and_convert(checkpoint, cfg, quant, out_dir or Path(checkpoint).parent, progress=say,
                                    step_progress=ProgressLines("qat: step", every=10.0))
    if not result.is_main:
        return  # another torchrun process: rank 0 reports
    typer.echo(f"QAT on {result.device}: {result.recipe}; {result.steps} steps in {result.seconds:.0f} s "
               f"({result.images_per_s:.1f} images/s), loss per epoch "
               f"{', '.join(f'{v:.3f}' for v in result.losses)}; weights in {result.checkpoint}")
    failed = False
    for name, outcome in files.items():
        if isinstance(outcome, Exception):
            failed = True
            typer.echo(f"{name}: NOT written: {outcome}")
            continue
        converted = outcome.files[0]
        typer.echo(f"{name}: wrote {converted.path}\n  {converted.report.summary()}")
    if failed:
        raise typer.Exit(1)


def _pair(text: str | None, flag: str) -> tuple[float, float] | None:
    from edgeseg.errors import ConfigError

    if text is None:
        return None
    parts = text.replace("x", ",").split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{flag} {text!r} must be two numbers LOW,HIGH, e.g. 0.5,2.0") from None
    return low, high


def int8_report(
    checkpoint: str = typer.Argument(..., help="A float edgeseg .safetensors checkpoint."),
    calibration: str = CALIBRATION,
    calib_size: int = typer.Option(8, "--calib-size", help="Images the layers are scored on."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="HxW (default: the checkpoint's)."),  # noqa: UP007
    top: int = typer.Option(15, "--top", help="Layers listed."),
    out: Optional[str] = typer.Option(None, "--out", help="Also write the report as Markdown here."),  # noqa: UP007
) -> None:
    """Per-layer int8 sensitivity: each layer alone in int8, the logits' SQNR against float."""
    from edgeseg.checkpoint import load_model
    from edgeseg.fileio import write_text_atomic
    from edgeseg.quantization.calibration import calibration_inputs
    from edgeseg.quantization.sensitivity import layer_sensitivity, report_markdown

    model = load_model(checkpoint)
    meta = model.metadata.replace(input_size=parse_size(input_size)) if input_size else model.metadata
    from edgeseg.cli.options import ProgressLines, say

    say(f"int8-report: scoring each layer of {checkpoint} alone in int8 on {calib_size} images")
    results = layer_sensitivity(model, calibration_inputs(calibration, calib_size, meta),
                                progress=ProgressLines("int8-report: layer"))
    text = report_markdown(results, top)
    typer.echo(text)
    typer.echo("Leave the worst in float with --keep-float LAYER (repeat the flag).")
    if out:
        write_text_atomic(out, f"# int8 sensitivity of {checkpoint}\n\n{text}\n")
