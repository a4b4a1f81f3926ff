"""Typed errors of the demo. Each message names the problem and how to fix it."""

from __future__ import annotations

from edgeseg.errors import EdgesegError


class DemoError(EdgesegError):
    """Base class of every error raised by ``edgeseg.demo``."""


class SourceError(DemoError, ValueError):
    """A frame source that cannot be opened or read (camera, video file, stream, folder)."""


class VideoWriteError(DemoError, OSError):
    """The output video cannot be written (unknown container, no encoder, unwritable folder)."""


class DisplayError(DemoError, RuntimeError):
    """``--show`` was asked where no window can be opened (no display, headless OpenCV)."""
