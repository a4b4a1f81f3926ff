"""Errors shared across edgeseg. Each message names the problem and what to do about it."""


class EdgesegError(Exception):
    """Base class for every error edgeseg raises on purpose."""


class ConfigError(EdgesegError, ValueError):
    """A model, data or training setting is invalid."""


class InputShapeError(EdgesegError, ValueError):
    """An input tensor or image has a shape the model cannot take."""


class MissingDependencyError(EdgesegError, ImportError):
    """A command or feature needs a package this install lacks; the message names the extra."""


class CheckpointError(EdgesegError, ValueError):
    """A weights file is missing, unreadable, or does not match the model."""


class EdgesegWarning(UserWarning):
    """Base class for edgeseg's own warnings: shown even where the CLI silences the libraries'."""
