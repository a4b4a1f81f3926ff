"""Command-line inputs shared by the commands that read images (no torch, no Pillow)."""

from __future__ import annotations

from pathlib import Path

from edgeseg.errors import ConfigError

# What a folder given in place of image files contributes (OpenCV decodes all of these).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def expand_image_paths(paths: list[Path]) -> list[Path]:
    """Image files as given, with each folder replaced by the images directly inside it (sorted by
    name; subfolders are not searched). A folder without images is an error naming the suffixes."""
    expanded = []
    for path in paths:
        if not path.is_dir():
            expanded.append(path)
            continue
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ConfigError(
                f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); give image files or a "
                "folder of them (subfolders are not searched)"
            )
        expanded.extend(found)
    return expanded
