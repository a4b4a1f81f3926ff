"""The format table is the one place formats are known: a toy target added as one row (its
converter module and backend in tests/toy_target.py) converts, is checked and runs through the
ordinary ``convert`` and ``edgeseg.runtime.load`` paths, and shows up in every derived table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import edgeseg.runtime as rt
from edgeseg.errors import ConfigError
from edgeseg.runtime import formats
from edgeseg.runtime.errors import ModelFileError

torch = pytest.importorskip("torch")

from toy_target import NPZ  # noqa: E402

from edgeseg.converters import TARGETS, ConversionError, VerificationError, convert, read_metadata  # noqa: E402
from edgeseg.converters.verify import graph_input, sample_images  # noqa: E402
from edgeseg.metadata import ModelMetadata  # noqa: E402
from edgeseg.models.base import SegmentationModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class PixelClassifier(SegmentationModel):
    """A per-pixel linear classifier: the one network the toy target converts."""

    size_divisor = 1

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Identity()
        self.decoder = torch.nn.Conv2d(3, num_classes, 1)
        self.metadata = ModelMetadata(model="pixel_classifier", classes=tuple(f"c{i}" for i in range(num_classes)),
                                      input_size=(32, 48))
        self.build_config = {}
        self.eval()


@pytest.fixture
def npz_row():
    """The toy target's row, in the table for one test."""
    formats.register(NPZ)
    yield NPZ
    del formats.FORMATS[NPZ.name]


def test_a_target_is_a_converter_a_backend_and_one_row(npz_row, tmp_path):
    model = PixelClassifier()
    converted = convert(model, "npz", out=tmp_path / "toy.npz").files[0]
    # The conversion check ran the file on its backend (through edgeseg.runtime) against PyTorch.
    report = converted.report
    assert report.passed and report.numerics_checked and report.metadata_matches
    assert report.images == 4 and report.min_agreement == 1.0 and report.max_abs_error < 1e-5
    assert read_metadata(converted.path) == converted.metadata
    # The ordinary runtime path: the suffix picks the backend, predict gives the mask.
    seg = rt.load(converted.path)
    assert seg.backend.name == "npz"
    image = sample_images(32, 48, count=1, seed=5)[0]
    with torch.no_grad():
        want = model(torch.from_numpy(graph_input(image, model.metadata))).argmax(1)[0].numpy()
    assert np.array_equal(seg.predict(image), want)
    # What the converter refuses is a ConversionError, and leaves no file.
    with pytest.raises(ConversionError, match="npz target takes"):
        convert(model, "npz", argmax=True, out=tmp_path / "mask.npz")
    assert not (tmp_path / "mask.npz").exists()


def test_the_check_runs_the_file_through_its_backend(npz_row, tmp_path, monkeypatch):
    """A backend that computes something else than the graph fails the conversion, no file left."""
    import toy_target

    run = toy_target.NpzBackend.run
    monkeypatch.setattr(toy_target.NpzBackend, "run", lambda self, x: {"logits": -run(self, x)["logits"]})
    with pytest.raises(VerificationError, match="does not match PyTorch"):
        convert(PixelClassifier(), "npz", out=tmp_path / "toy.npz")
    assert [p.name for p in tmp_path.iterdir()] == []
    # A file the runtime refuses to open is not kept either.
    def refuse(self, path, **kwargs):
        raise ModelFileError(f"{path.name}: unreadable")

    monkeypatch.setattr(toy_target.NpzBackend, "__init__", refuse)
    with pytest.raises(ConversionError, match="runtime refuses the file just written .toy.npz: unreadable"):
        convert(PixelClassifier(), "npz", out=tmp_path / "toy.npz")
    assert [p.name for p in tmp_path.iterdir()] == []


def test_every_derived_table_reads_the_row(npz_row, tmp_path):
    from edgeseg.converters.failures import WAYS_OUT
    from edgeseg.quantization.qat import QAT_TARGETS
    from edgeseg.validate.files import backend_of, file_size

    assert "npz" in TARGETS and TARGETS["npz"] is npz_row and "npz" in WAYS_OUT
    assert rt.SUFFIX_BACKENDS[".npz"] == "npz" and rt.BACKENDS["npz"] == "toy_target:NpzBackend"
    assert "npz" not in QAT_TARGETS  # no qat_scheme in its row
    assert backend_of(Path("m.npz")) == "npz" and backend_of(Path("m.onnx")) == "onnxruntime"
    # Its magic bytes are checked like every format's: a zip named .onnx is called what it is.
    renamed = tmp_path / "m.onnx"
    renamed.write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(ModelFileError, match="NumPy archive file; it was renamed: give it the suffix .npz"):
        rt.load(renamed)
    assert file_size(renamed) == 64


def test_rows_are_unique():
    with pytest.raises(ConfigError, match="suffix is already format 'onnx'"):
        formats.register(formats.Format("onnx2", "ONNX again", ".onnx", "x:Y", "ort2", "x"))
    with pytest.raises(ConfigError, match="name is already"):
        formats.register(formats.FORMATS["tflite"])
    assert list(formats.FORMATS) == ["onnx", "tflite", "coreml", "openvino", "checkpoint"]


# Format knowledge outside the table: a suffix literal, or a sequence of two different target names.
_SUFFIX = re.compile(r"""["'](\.onnx|\.tflite|\.xml|\.mlpackage|\.mlmodel)["']""")
_TARGET_LIST = re.compile(
    r"""["'](onnx|tflite|coreml|openvino)["']\s*,\s*["'](?!\1["'])(onnx|tflite|coreml|openvino)["']""")


def test_no_other_table_of_formats():
    """The package and the examples name suffixes and target lists only through the table."""
    found = []
    for folder in ("edgeseg", "converters", "quantization", "runtime", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "runtime" / "formats.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if _SUFFIX.search(line) or _TARGET_LIST.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "format tables outside runtime/formats.py:\n" + "\n".join(found)
