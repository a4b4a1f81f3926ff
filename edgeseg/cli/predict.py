"""``edgeseg predict``: segment image files with a converted model; write palette PNG masks.

Images are read by :func:`edgeseg.runtime.read_image` (OpenCV); masks are written with Pillow
(imported on use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from edgeseg.errors import ConfigError
from edgeseg.fileio import atomic_output, ensure_folder


def predict(
    model: Path = typer.Argument(..., help="Model file: .onnx, .tflite, .xml, .mlpackage or .safetensors."),
    images: list[Path] = typer.Argument(..., help="Image files (PNG, JPEG, ...) or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the masks (created if missing)."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write <name>_overlay.png."),
    alpha: float = typer.Option(0.5, "--alpha", min=0.0, max=1.0, help="Mask opacity in overlays."),
    domain: Optional[str] = typer.Option(None, "--domain", help="Head of a multi-domain file."),  # noqa: UP007
    backend: Optional[str] = typer.Option(None, "--backend", help="Force a backend."),  # noqa: UP007
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for the backend."),  # noqa: UP007
) -> None:
    """Write each image's class mask as <name>.png (palette PNG: pixel value = class id)."""
    from rich.progress import Progress

    import edgeseg.runtime as rt
    from edgeseg.cli.inputs import expand_image_paths

    images = expand_image_paths(images)  # a folder stands for the images in it
    check_output_names(images, out, overlay)
    ensure_folder(out)  # a file in the way or a read-only folder: said before the model loads
    seg = rt.load(model, backend=backend, threads=threads)
    palette = seg.palette(domain)
    with Progress(transient=True, disable=len(images) < 2) as progress:
        task = progress.add_task("segmenting", total=len(images))
        for path in images:
            image = read_rgb(path)
            mask = seg.predict(image, domain=domain)
            write_mask_png(out / f"{path.stem}.png", mask, palette)
            if overlay:
                write_rgb_png(out / f"{path.stem}_overlay.png", seg.overlay(image, mask, alpha, domain=domain))
            progress.advance(task)
    typer.echo(f"wrote {len(images)} mask{'s' if len(images) != 1 else ''} to {out}")


def check_output_names(images: list[Path], out: Path, overlay: bool) -> None:
    """Refuse a run whose outputs would overwrite each other or an input: two images with one
    stem, ``a.jpg`` + ``a_overlay.jpg`` with --overlay (both write ``a_overlay.png``), or an
    input image that is itself one of the outputs (``predict m.onnx a.png --out .``). Names are
    compared case-insensitively, as macOS and Windows file systems do."""
    owners: dict[str, Path] = {}
    inputs = {str(p.resolve()).casefold(): p for p in images}
    for image in images:
        names = [f"{image.stem}.png"] + ([f"{image.stem}_overlay.png"] if overlay else [])
        for name in names:
            target = out / name
            key = str(target.resolve()).casefold()
            if key in owners and owners[key] != image:
                raise ConfigError(
                    f"{owners[key]} and {image} would both write {target}; run them in separate calls "
                    "or rename one of them"
                )
            if key in inputs:
                raise ConfigError(
                    f"writing {target} would overwrite the input image {inputs[key]}; choose another --out folder"
                )
            owners[key] = image


# --- image files (Pillow), every write atomic -----------------------------------------------
def _pil():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ConfigError('reading and writing image files needs Pillow: `pip install pillow`') from exc
    return Image


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, as displayed (EXIF orientation applied; 16-bit
    scaled, not saturated; decompression bombs refused): :func:`edgeseg.runtime.read_image`."""
    from edgeseg.runtime.imagefile import read_image

    return read_image(path)


def write_mask_png(path: Path, mask: np.ndarray, palette: np.ndarray) -> None:
    """Palette PNG (pixel value = class id, colours = the model's palette); masks of more than 256
    classes do not fit a palette and are written as 16-bit grayscale PNG."""
    Image = _pil()
    if mask.dtype == np.uint8:
        image = Image.fromarray(mask, mode="P")
        image.putpalette(palette.astype(np.uint8).ravel().tolist())
    else:
        image = Image.fromarray(mask.astype(np.uint16), mode="I;16")
    with atomic_output(path) as tmp:
        image.save(tmp, format="PNG")


def write_rgb_png(path: Path, rgb: np.ndarray) -> None:
    Image = _pil()
    with atomic_output(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
