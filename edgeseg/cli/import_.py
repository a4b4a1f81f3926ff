"""``edgeseg import``: a torchvision-layout ``.pth`` state dict or a Hugging Face SegFormer folder ->
an edgeseg checkpoint (weights + model name, classes, mean/std, input size)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeseg.metadata import parse_size


def import_(
    source: str = typer.Argument(..., help="A .pth/.pt/.bin state dict, or a Hugging Face SegFormer folder (config.json + model.safetensors)."),
    model: Optional[str] = typer.Option(None, "--model", help="Architecture of a state dict (e.g. lraspp_mobilenetv3_large for torchvision's lraspp_mobilenet_v3_large); a SegFormer folder says its own."),  # noqa: UP007
    classes: Optional[str] = typer.Option(None, "--classes", help="Class names, comma-separated in output order, or a classes.yaml/.json file (default: the folder's id2label, else class_0..)."),  # noqa: UP007
    mean: Optional[str] = typer.Option(None, "--mean", help="Normalization mean R,G,B of pixels in [0, 1] (default: the folder's preprocessor_config.json, else ImageNet's)."),  # noqa: UP007
    std: Optional[str] = typer.Option(None, "--std", help="Normalization std R,G,B (same defaults as --mean)."),  # noqa: UP007
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Input HxW the files are converted at (default: the folder's, else 512x512)."),  # noqa: UP007
    out: Optional[str] = typer.Option(None, "--out", help="The .safetensors checkpoint to write (default: beside the source)."),  # noqa: UP007
) -> None:
    """Import weights trained elsewhere as an edgeseg checkpoint, ready for `edgeseg convert`."""
    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.models.import_weights import import_weights

    net = import_weights(
        source, model=model, classes=_classes(classes), mean=_triple(mean, "--mean"), std=_triple(std, "--std"),
        input_size=parse_size(input_size) if input_size else None,
    )
    path = save_checkpoint(net, _destination(Path(source), out))
    meta = net.metadata
    shown = ", ".join(meta.classes[:8]) + (f", ... ({len(meta.classes)})" if len(meta.classes) > 8 else "")
    typer.echo(f"wrote {path}: {meta.model}, classes {shown}; mean {_fmt(meta.mean)}, std {_fmt(meta.std)}, "
               f"input {meta.input_size[0]}x{meta.input_size[1]}")
    typer.echo(f"next: edgeseg convert {path} --target onnx")


def _destination(source: Path, out: str | None) -> Path:
    from edgeseg.errors import ConfigError

    if out is not None:
        path = Path(out)
    elif source.is_dir():
        path = source.parent / f"{source.name}.safetensors"
    else:
        path = source.with_suffix(".safetensors")
        if path == source:
            path = source.with_name(f"{source.stem}_edgeseg.safetensors")
    if path.resolve() == source.resolve():
        raise ConfigError(f"--out {path} is the source itself; give another path")
    return path


def _classes(text: str | None) -> tuple[str, ...] | None:
    from edgeseg.errors import ConfigError

    if text is None:
        return None
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml", ".json") and path.is_file():
        import yaml  # JSON is YAML

        data = yaml.safe_load(path.read_text())
        names = data.get("classes") if isinstance(data, dict) else data
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{path} must hold a list of class names, or {{classes: [road, car, ...]}}")
        return tuple(str(n) for n in names)
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise ConfigError(f"--classes {text!r} has an empty name; write e.g. --classes road,car,person")
    return names


def _triple(text: str | None, flag: str) -> tuple[float, float, float] | None:
    from edgeseg.errors import ConfigError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"{flag} {text!r} must be three numbers R,G,B, e.g. 0.485,0.456,0.406")
    if any(v > 1.0 for v in values):
        raise ConfigError(f"{flag} {text!r}: give values for pixels scaled to [0, 1] (divide 0..255 values by 255)")
    return values


def _fmt(values) -> str:
    return ",".join(f"{v:.3g}" for v in values)
