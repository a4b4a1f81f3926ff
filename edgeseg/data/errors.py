"""Typed dataset errors. Each message names what is wrong, where, and how to fix it."""

from __future__ import annotations

from edgeseg.errors import EdgesegError


class DatasetError(EdgesegError):
    """Base class of every error raised by ``edgeseg.data``."""


class DatasetLayoutError(DatasetError, FileNotFoundError):
    """A folder is missing or misnamed, or images and masks do not pair up."""


class DatasetLabelError(DatasetError, ValueError):
    """A mask holds values outside the dataset's class list (and is not the ignore index)."""


class DatasetSpecError(DatasetError, ValueError):
    """``build_dataset`` got an unknown spec, split or option."""
