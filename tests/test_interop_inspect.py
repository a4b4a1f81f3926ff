"""`edgeseg inspect FILE [--json]`: inputs, outputs, every metadata block, checksum state; torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.converters import convert
from interop_helpers import ColourSegModel

ROOT = Path(__file__).resolve().parents[1]
_CLI_WITHOUT_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'torch':
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
sys.argv = ['edgeseg', *sys.argv[1:]]
from edgeseg.cli import main
main()
"""


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _CLI_WITHOUT_TORCH, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspect")
    model = ColourSegModel(num_classes=3, size=(64, 64))
    tflite = convert(model, "tflite", out=folder / "m.tflite").path
    xml = convert(model, "openvino", out=folder / "m.xml").path
    return tflite, xml


def test_inspect_json_lists_every_block_without_torch(files):
    tflite, xml = files
    result = _cli("inspect", str(tflite), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["checksum"]["state"] == "verified"
    assert report["inputs"][0]["shape"] == [1, 64, 64, 3] and report["inputs"][0]["dtype"] == "uint8"
    assert report["outputs"][0]["name"] == "logits"
    blocks = report["metadata"]
    assert blocks["edgeseg"]["classes"] == ["region_0", "region_1", "region_2"]
    assert blocks["TFLITE_METADATA"]["outputs"][0]["labels"] == ["region_0", "region_1", "region_2"]
    assert blocks["associated_files"] == {"labels.txt": "27 bytes"}
    assert report["runtime_metadata"]["layout"] == "nhwc" and report["runtime_warnings"] == []

    result = _cli("inspect", str(xml), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["metadata"]["model_info"]["model_type"] == "Segmentation"
    assert report["checksum"]["state"] == "verified"


def test_inspect_text_says_a_damaged_file_fails_its_checksum(files, tmp_path):
    tflite, _ = files
    damaged = tmp_path / "damaged.tflite"
    data = bytearray(tflite.read_bytes())
    data[-40] ^= 0xFF  # inside the appended labels archive: the model still parses
    damaged.write_bytes(bytes(data))
    result = _cli("inspect", str(damaged))
    assert result.returncode == 0, result.stderr
    assert "checksum: MISMATCH" in result.stdout
    assert "metadata block 'TFLITE_METADATA':" in result.stdout and "the runtime would run it with:" in result.stdout


def test_inspect_a_missing_file_is_a_clean_error(tmp_path):
    result = _cli("inspect", str(tmp_path / "nothing.tflite"))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_inspect_shows_control_characters_from_a_file_as_escapes(tmp_path):
    # A file's own words (here an ONNX metadata property) must not drive the terminal.
    import onnx

    path = convert(ColourSegModel(num_classes=3, size=(64, 64)), "onnx", out=tmp_path / "m.onnx").path
    model = onnx.load(str(path))
    prop = model.metadata_props.add()
    prop.key, prop.value = "note", "\x1b[2Jcleared\nfake line"
    onnx.save(model, str(path))
    result = _cli("inspect", str(path))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\\x1b[2Jcleared\\nfake line" in result.stdout
