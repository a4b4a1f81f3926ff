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
from edgeseg.fileio import atomic_output


def predict(
    model: Path = typer.Argument(..., help="Model file: .onnx, .tflite, .xml, .mlpackage or .safetensors."),
    images: list[Path] = typer.Argument(..., help="Image files (PNG, JPEG, ...)."),
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

    stems = [image.stem for image in images]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"several images are named {repeated}; their masks would overwrite each other in {out}. "
            "Run them in separate calls or rename them"
        )
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
