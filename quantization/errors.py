"""Errors of int8 quantization. Each names the problem and a way out."""

from __future__ import annotations

from edgeseg.converters.errors import ConversionError


class QuantizationError(ConversionError):
    """Quantizing a model for a target failed; no file was left behind."""


class AccuracyGateError(QuantizationError):
    """The int8 file converted and ran, but lost more accuracy than the gate allows.

    Attributes:
        result: the harness's :class:`~edgeseg.validate.FileResult` for the file.
    """

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result
