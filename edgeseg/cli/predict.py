"""``edgeseg predict``: segment image files with a converted model; write palette PNG masks.

Images are read by :func:`edgeseg.runtime.read_image` (OpenCV); palette masks are encoded by
:mod:`edgeseg.pngio`, overlays by OpenCV: no Pillow, so predict runs on the runtime-only install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from edgeseg.cli.options import DEVICE, JSON, ProgressLines, print_json, say
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
    device: Optional[str] = DEVICE,  # noqa: UP007
    as_json: bool = JSON,
    legend: bool = typer.Option(False, "--legend", help="With --overlay: draw the classes in view with their colours (top right)."),
    mask_format: str = typer.Option(
        "palette", "--mask-format",
        help="palette: PNG whose pixel values are class ids, coloured in viewers (Pillow reads the ids; "
        "OpenCV converts it to colours). raw: grayscale PNG of class ids (cv2.imread(p, cv2.IMREAD_UNCHANGED))."),
) -> None:
    """Write each image's class mask as <name>.png (pixel value = class id; palette or raw PNG)."""
    from rich.console import Console
    from rich.progress import Progress

    import edgeseg.runtime as rt
    from edgeseg.cli.inputs import expand_image_paths

    images = expand_image_paths(images)  # a folder stands for the images in it
    if mask_format not in MASK_FORMATS:
        raise ConfigError(f"--mask-format {mask_format!r} is not one of {', '.join(MASK_FORMATS)}")
    if legend and not overlay:
        raise ConfigError("--legend draws on the overlay: add --overlay")
    if alpha != 0.5 and not overlay:  # the default is harmless; another value would be ignored
        raise ConfigError(f"--alpha {alpha} sets the mask's opacity in overlays: add --overlay")
    seg = rt.load(model, backend=backend, threads=threads, device=device)
    if device is not None:
        say(f"device: {seg.device}" + (f" ({seg.device_note})" if seg.device_note else ""))
    palette = seg.palette(domain)
    # Before any image is segmented: outputs that collide, and an --out that cannot be written.
    check_output_names(images, out, overlay)
    ensure_folder(out)
    written = []
    console = Console(stderr=True)
    # A bar on a terminal; plain lines (every 5 s) in a log file, where a bar shows nothing.
    lines = ProgressLines("predict: image", every=5.0) if not console.is_terminal and len(images) > 1 else None
    with Progress(transient=True, disable=len(images) < 2 or lines is not None, console=console) as progress:
        task = progress.add_task("segmenting", total=len(images))
        for path in images:
            image = read_rgb(path)
            mask = seg.predict(image, domain=domain)
            write_mask_png(out / f"{path.stem}.png", mask, palette, raw=mask_format == "raw")
            if overlay:
                picture = seg.overlay(image, mask, alpha, domain=domain)
                if legend:
                    picture = with_legend(picture, mask, seg.classes(domain), palette)
                write_rgb_png(out / f"{path.stem}_overlay.png", picture)
            progress.advance(task)
            if lines is not None:
                lines(progress.tasks[0].completed, len(images), path.name)
            if as_json:
                written.append(_mask_summary(path, out, mask, seg.classes(domain), overlay))
    if as_json:
        print_json({
            "model": str(model), "backend": seg.backend.name, "device": seg.device,
            "device_note": seg.device_note, "domain": domain, "out": str(out), "images": written,
        })
        return
    typer.echo(f"wrote {len(images)} mask{'s' if len(images) != 1 else ''} to {out}")


def _mask_summary(path: Path, out: Path, mask: np.ndarray, classes, overlay: bool) -> dict:
    """One image's entry in ``predict --json``: where its files went, and its class shares."""
    counts = np.bincount(mask.ravel(), minlength=len(classes))
    return {
        "image": str(path), "mask": str(out / f"{path.stem}.png"),
        "overlay": str(out / f"{path.stem}_overlay.png") if overlay else None,
        "height": int(mask.shape[0]), "width": int(mask.shape[1]),
        "class_fractions": {classes[i]: round(float(c) / mask.size, 6) for i, c in enumerate(counts) if c},
    }


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
                    f"{owners[key]} and {image} would both write {target}: their outputs would overwrite "
                    "each other. Run them in separate calls or rename one of them"
                )
            if key in inputs:
                raise ConfigError(
                    f"writing {target} would overwrite the input image {inputs[key]}; choose another --out folder"
                )
            owners[key] = image


# --- image files (OpenCV; no Pillow), every write atomic ------------------------------------
def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, as displayed (EXIF orientation applied; 16-bit
    scaled, not saturated; decompression bombs refused): :func:`edgeseg.runtime.read_image`."""
    from edgeseg.runtime.imagefile import read_image

    return read_image(path)


MASK_FORMATS = ("palette", "raw")


def write_mask_png(path: Path, mask: np.ndarray, palette: np.ndarray, raw: bool = False) -> None:
    """Palette PNG (pixel value = class id, colours = the model's palette), or with ``raw`` a
    grayscale PNG of the ids; masks of more than 256 classes do not fit a palette and are written as
    16-bit grayscale PNG. No Pillow: the palette PNG is encoded by :mod:`edgeseg.pngio`, the others
    by OpenCV."""
    from edgeseg.pngio import encode_palette_png

    if mask.dtype != np.uint8:
        data = _png_bytes(mask.astype(np.uint16))
    else:
        data = _png_bytes(mask) if raw else encode_palette_png(mask, palette)
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(data)


def with_legend(overlay: np.ndarray, mask: np.ndarray, names, palette: np.ndarray) -> np.ndarray:
    """The overlay with the demo's legend (classes in view first, then the others, by area)."""
    from edgeseg.demo.annotate import draw_legend, legend_classes

    bgr = np.ascontiguousarray(overlay[..., ::-1])
    draw_legend(bgr, legend_classes(mask, len(names)), names, palette)
    return bgr[..., ::-1]


def write_rgb_png(path: Path, rgb: np.ndarray) -> None:
    data = _png_bytes(np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV writes BGR
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(data)


def _png_bytes(pixels: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise ConfigError(f"OpenCV could not encode a {pixels.dtype} {pixels.shape} PNG")
    return encoded.tobytes()
