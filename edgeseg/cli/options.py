"""Parsers shared by the CLI commands."""

from __future__ import annotations

import re

from edgeseg.errors import ConfigError


def parse_size(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> ``(512, 1024)`` (height x width); ``"512"`` -> ``(512, 512)``."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+))?\s*", text)
    if not match:
        raise ConfigError(f"size {text!r} is not HxW (for example 512x1024) or a single number")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    if height < 1 or width < 1:
        raise ConfigError(f"size {text!r} must be positive")
    return height, width
