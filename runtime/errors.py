"""Typed errors of the runtime. Each message names the problem and how to fix it.

Every error here subclasses :class:`edgeseg.errors.EdgesegError`, so an application can catch
``EdgesegError`` once and show the message: it is written for the person holding the device.
"""

from __future__ import annotations

# ConfigError is re-exported: a bad option to load() (threads, precision, backend name).
from edgeseg.errors import ConfigError, EdgesegError, EdgesegWarning, InputShapeError

__all__ = [
    "BackendUnavailableError", "ConfigError", "DeviceUnavailableError", "DomainError", "ImageChannelsError", "ImageDtypeError",
    "ImageError", "ImageFileError", "ImageSizeError", "ImageValueError", "LogitsUnavailableError",
    "MaskError", "MissingMetadataWarning", "ModelFileError", "ModelFileNotFoundError", "UnsupportedModelError",
]


class ImageError(InputShapeError):
    """An image the runtime cannot segment (wrong channels, dtype, size or values)."""


class ImageChannelsError(ImageError):
    """Grayscale, RGBA, channel-first or otherwise not an H x W x 3 image."""


class ImageDtypeError(ImageError):
    """A pixel type other than uint8, or float in [0, 1]."""


class ImageSizeError(ImageError):
    """Empty, too small to mean anything, or too large to hold in memory."""


class ImageValueError(ImageError):
    """NaN, infinity or out-of-range values in a float image."""


class ImageFileError(ImageError):
    """An image file that is missing, unreadable, not an image, or too large to decode."""


class DomainError(EdgesegError, ValueError):
    """A ``domain=`` the file does not have, or none given where the file needs one."""


class MaskError(EdgesegError, ValueError):
    """A mask given to ``colorize``/``overlay`` that does not fit the model or the image."""


class LogitsUnavailableError(EdgesegError, ValueError):
    """``logits=True`` on a file whose graph ends in argmax (it outputs only the mask)."""


class ModelFileError(EdgesegError, ValueError):
    """A model file that is missing, truncated, corrupted or of another format than its name says."""


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """The model path (or a companion such as the OpenVINO ``.bin``) does not exist."""


class UnsupportedModelError(ModelFileError):
    """A suffix no backend reads, or a graph whose inputs/outputs do not follow the edgeseg contract."""


class BackendUnavailableError(EdgesegError, ImportError):
    """The inference library for this file is not installed, or cannot run on this platform."""


class DeviceUnavailableError(BackendUnavailableError):
    """A ``device=`` the backend knows but this machine or install lacks (no CUDA provider, no
    GPU plugin, a delegate library that will not load); the message lists what is available."""


class MetadataError(EdgesegError, ValueError):
    """Metadata that ``load(metadata=...)`` or a file's standard metadata gives and the runtime
    cannot use: an unknown field, a bad value, or one that contradicts the graph."""


class MissingMetadataWarning(EdgesegWarning):
    """The file carries no edgeseg metadata; the runtime guessed from the graph and says how."""
