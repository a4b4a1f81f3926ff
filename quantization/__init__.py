"""Int8 for every target, matched to the target's own int8 scheme, with accuracy kept.

- PTQ (``edgeseg convert --precision int8``): one module per target (the format table's ``int8``
  row entry) with the converters' interface (``export(graph, files, options)``), and
  ``check_options(quant)`` where it owns options (the row's ``int8_options``):
  ``tflite`` (PT2E, litert-torch's quantizer, full-int8 I/O via ``tflite_io``), ``openvino``
  (NNCF, optional accuracy control), ``onnx`` (onnxruntime QDQ, per-channel), ``coreml`` (W8A8 with
  coremltools.optimize, weight-only int8, palette). Calibration images are prepared by the
  runtime's own preprocessing (``calibration``); every file passes the harness gate (``gate``)
  before it is kept.
- QAT (``edgeseg qat``): ``qat`` fine-tunes under fake quantization mirroring the target scheme
  (BN folded and frozen, ``batchnorm``), then each target converts the QAT weights.
- Sensitivity (``edgeseg int8-report``): ``sensitivity`` scores each layer alone in int8;
  ``QuantOptions.keep_float`` leaves the worst in float.

Importing this package is light (no torch); the target modules import their libraries.
"""

from edgeseg.quantization.errors import AccuracyGateError, QuantizationError
from edgeseg.quantization.options import COREML_MODES, IO_TYPES, QuantOptions

__all__ = ["COREML_MODES", "IO_TYPES", "AccuracyGateError", "QuantOptions", "QuantizationError"]
