"""Validation harness: accuracy and latency of every converted file beside the PyTorch reference,
with pass/fail gates, written as JSON, Markdown and HTML.

    >>> from edgeseg.validate import Gates, validate, write_report
    >>> from edgeseg.validate.bench import bench
    >>> run = validate(["m.onnx", "m.tflite"], reference="m.safetensors", data="synthetic:val", limit=50)
    >>> timing = bench(["m.onnx", "m.tflite"], threads=1, runs=50)
    >>> write_report("report/", validation=run, bench=timing)
    >>> run.passed

Torch-free: the PyTorch reference runs through ``edgeseg.runtime``'s torch backend, the only
place torch is imported, and only when a ``.safetensors`` file is loaded.
"""

from edgeseg.validate.accuracy import validate
# The bench function stays at edgeseg.validate.bench.bench: exporting it here would shadow
# the submodule of the same name.
from edgeseg.validate.bench import BenchResult, BenchRun
from edgeseg.validate.data import DataSpec, parse_data_spec
from edgeseg.validate.errors import DataMismatchError, ValidationSetupError
from edgeseg.validate.gates import CANNOT_RUN_HERE, FAILED_TO_LOAD, FAILED_VALIDATION, PASSED, STATUSES, Gates
from edgeseg.validate.report import ReportFiles, write_report
from edgeseg.validate.results import DomainResult, FileResult, ValidationRun

__all__ = [
    "BenchResult",
    "BenchRun",
    "CANNOT_RUN_HERE",
    "FAILED_TO_LOAD",
    "FAILED_VALIDATION",
    "PASSED",
    "STATUSES",
    "DataMismatchError",
    "DataSpec",
    "DomainResult",
    "FileResult",
    "Gates",
    "ReportFiles",
    "ValidationRun",
    "ValidationSetupError",
    "parse_data_spec",
    "validate",
    "write_report",
]
