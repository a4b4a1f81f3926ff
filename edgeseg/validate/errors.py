"""Typed errors of the validation harness. Each message names the problem and the fix."""

from __future__ import annotations

from edgeseg.errors import ConfigError, EdgesegError


class ValidationSetupError(EdgesegError, ValueError):
    """The harness cannot start: a bad reference, data spec, option or report folder."""


class DataMismatchError(ValidationSetupError):
    """The dataset's classes are not the classes the model predicts (wrong --data for this model)."""


__all__ = ["ConfigError", "DataMismatchError", "ValidationSetupError"]
