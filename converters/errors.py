"""Errors of the converters. Each names the problem, the target and a way out."""

from __future__ import annotations

from edgeseg.errors import EdgesegError


class ConversionError(EdgesegError, RuntimeError):
    """A target's converter failed; no output file was left behind."""


class UnsupportedOpError(ConversionError):
    """The target cannot take an operator of the model.

    Attributes:
        target: the target that refused it (``onnx``, ``tflite`` ...).
        op: the PyTorch operator (``aten.linalg_inv.default``).
        layers: the model layers (``nn.Module`` paths) that call it, when torch.export knows them.
    """

    def __init__(self, message: str, *, target: str, op: str, layers: tuple[str, ...]) -> None:
        super().__init__(message)
        self.target = target
        self.op = op
        self.layers = layers


class VerificationError(ConversionError):
    """The converted file ran but its outputs disagree with PyTorch beyond the tolerance."""

    def __init__(self, message: str, report: object) -> None:
        super().__init__(message)
        self.report = report
