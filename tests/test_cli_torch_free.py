"""The CLI on a runtime-only install (numpy + one backend + the cli extra): predict, bench,
validate against labels, demo and inspect run with torch, Pillow, safetensors and matplotlib
unimportable; the commands that need torch say which extra to install, without a traceback.

Imports are blocked in a fresh interpreter (fast, in every test run); .ci/run also installs the
wheel with the cli and runtime-onnx extras into a clean venv without torch and runs the same
commands there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_files import write_labelled_folder

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = {"torch", "torchvision", "safetensors", "PIL", "matplotlib", "litert_torch", "onnx", "onnxscript"}
_RUN = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ModuleNotFoundError('blocked for this test: ' + name, name=name)
sys.meta_path.insert(0, Block())
sys.argv = ['edgeseg', *{args!r}]
try:
    from edgeseg.__main__ import main
    main()
finally:
    leaked = sorted(m for m in sys.modules if m.split('.')[0] in {blocked!r})
    assert not leaked, leaked
"""


def edgeseg(*args: str) -> subprocess.CompletedProcess:
    code = _RUN.format(blocked=BLOCKED, args=list(args))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=180)


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory) -> Path:
    return write_labelled_folder(tmp_path_factory.mktemp("labelled"))


def test_runtime_commands_run_without_torch(model_files, labelled_folder, tmp_path):
    onnx = str(model_files["onnx"])
    frames = sorted(str(p) for p in (labelled_folder / "images").iterdir())
    proc = edgeseg("predict", onnx, *frames[:2], "--out", str(tmp_path / "masks"), "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = json.loads(proc.stdout)["images"]
    assert [Path(w["mask"]).is_file() for w in written] == [True, True]

    proc = edgeseg("bench", onnx, "--runs", "2", "--warmup", "0", "--no-cold-start", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["files"][0]["predict"]["runs"] == 2

    proc = edgeseg("validate", onnx, "--data", f"folder:{labelled_folder}", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    validation = json.loads(proc.stdout)["validation"]
    assert validation["reference"] is None
    scores = validation["files"][0]["domains"][0]["scores"]
    assert 0.0 <= scores["miou"] <= 1.0 and scores["pixel_accuracy"] > 0.0

    proc = edgeseg("demo", "--model", onnx, "--source", str(labelled_folder / "images"), "--max-frames", "2",
                   "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "frames" in proc.stdout

    proc = edgeseg("inspect", onnx, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)


@pytest.mark.parametrize(("command", "extra"), [
    (["train", "--model", "lraspp_mobilenetv3_small", "--iters", "1"], "torch"),
    (["models"], "torch"),
    (["convert", "x.safetensors", "--target", "tflite"], "tflite"),
])
def test_torch_commands_name_the_extra(command, extra):
    proc = edgeseg(*command)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f'pip install "edgeseg[{extra}]"' in proc.stderr and "Traceback" not in proc.stderr


def test_validate_with_a_reference_needs_torch(model_files, labelled_folder):
    proc = edgeseg("validate", str(model_files["onnx"]), "--reference", str(model_files["ckpt"]),
                   "--data", f"folder:{labelled_folder}")
    assert proc.returncode == 2 and 'pip install "edgeseg[torch]"' in proc.stderr, proc.stderr[-3000:]


def test_without_the_cli_extra_the_command_names_it():
    code = _RUN.format(blocked={"typer", "torch"}, args=["--help"])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and 'pip install "edgeseg[cli]"' in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
