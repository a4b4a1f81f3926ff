"""``device=`` / ``--device``: what this machine offers runs and says so; what it lacks is a typed
error that lists what it has. Runs on whatever providers/devices this machine has (a CPU-only
machine: ``auto`` must say it found no accelerator and run on the CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_helpers import random_image

import edgeseg.runtime as rt
from edgeseg.runtime.devices import parse_device
from edgeseg.runtime.errors import ConfigError, DeviceUnavailableError

ROOT = Path(__file__).resolve().parents[1]
FILES = ("onnx", "openvino", "tflite")
# What each backend calls the CPU it runs on by default.
CPU_NAMES = {"onnx": "CPUExecutionProvider", "openvino": "CPU", "tflite": "cpu (XNNPACK)"}


def test_parse_device():
    assert parse_device(None) is None
    cuda = parse_device("CUDA:1?gpu_mem_limit=1000&arena_extend_strategy=kSameAsRequested")
    assert (cuda.name, cuda.index, cuda.options) == (
        "cuda", "1", {"gpu_mem_limit": "1000", "arena_extend_strategy": "kSameAsRequested"})
    assert (parse_device("GPU.1").name, parse_device("GPU.1").index) == ("gpu", "1")
    lib = parse_device("delegate:/opt/v/libvx_delegate.so?device=npu")
    assert (lib.name, lib.index, lib.options) == ("delegate", "/opt/v/libvx_delegate.so", {"device": "npu"})
    for bad in ("", "cuda:", "delegate:", "cuda?x"):
        with pytest.raises(ConfigError):
            parse_device(bad)


@pytest.mark.parametrize("name", FILES)
def test_cpu_and_auto_run_and_say_what_ran(model_files, name):
    image = random_image(50, 70, seed=3)
    default = rt.load(model_files[name], threads=1)
    expected = default.predict(image)
    assert default.device == CPU_NAMES[name] and default.device_note == ""
    cpu = rt.load(model_files[name], threads=1, device="cpu")
    assert cpu.device == CPU_NAMES[name]
    np.testing.assert_array_equal(cpu.predict(image), expected)
    auto = rt.load(model_files[name], threads=1, device="auto")
    offered = type(auto.backend).available_devices()
    assert offered[0] == "cpu"
    accelerators = [d for d in offered if d not in ("cpu", "delegate:/path/lib.so", "xnnpack", "openvino")]
    if not accelerators:  # this machine: auto must say it found nothing and ran on the CPU
        assert auto.device == CPU_NAMES[name]
        assert auto.device_note.startswith("auto: no accelerator available (available: cpu")
        np.testing.assert_array_equal(auto.predict(image), expected)
    else:
        assert auto.device_note.startswith("auto picked "), auto.device_note
    assert f"device {auto.device}" in auto.describe() and auto.device_note in auto.describe()


def test_unknown_and_unavailable_devices_are_typed_errors(model_files):
    import onnxruntime as ort
    import openvino as ov

    with pytest.raises(ConfigError, match=r"'bogus' is not a device ONNX Runtime knows .*available here: cpu"):
        rt.load(model_files["onnx"], device="bogus")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(DeviceUnavailableError, match=r"'cuda' is not available to ONNX Runtime.*no "
                           r"CUDAExecutionProvider.*onnxruntime-gpu.*available here: cpu"):
            rt.load(model_files["onnx"], device="cuda")
    if not any(d.startswith("NPU") for d in ov.Core().available_devices):
        with pytest.raises(DeviceUnavailableError, match=r"'npu' is not available to OpenVINO.*available here: cpu"):
            rt.load(model_files["openvino"], device="npu")
    with pytest.raises(ConfigError, match="not a device OpenVINO knows"):
        rt.load(model_files["openvino"], device="cuda")
    with pytest.raises(DeviceUnavailableError, match=r"delegate library did not load: .*missing_delegate\.so"):
        rt.load(model_files["tflite"], device="delegate:/nonexistent/missing_delegate.so")
    with pytest.raises(ConfigError, match="not a device LiteRT knows"):
        rt.load(model_files["tflite"], device="npu")
    # Unavailable devices are "cannot run here" to validate/bench (a BackendUnavailableError).
    assert issubclass(DeviceUnavailableError, rt.BackendUnavailableError)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=180)


def test_cli_device_flag_reports_what_ran(model_files, tmp_path):
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), random_image(40, 56, seed=5)[..., ::-1])
    proc = run_cli("predict", str(model_files["onnx"]), str(image), "--out", str(tmp_path / "m"),
                   "--device", "auto", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "device: CPUExecutionProvider" in proc.stderr or "auto picked" in proc.stderr
    proc = run_cli("predict", str(model_files["openvino"]), str(image), "--out", str(tmp_path / "m"),
                   "--device", "bogus")
    assert proc.returncode == 2 and "error: device 'bogus' is not a device OpenVINO knows" in proc.stderr
    assert "Traceback" not in proc.stderr
    # bench: the row says what ran it, in the table and in --json.
    proc = run_cli("bench", str(model_files["onnx"]), str(model_files["tflite"]), "--runs", "2", "--warmup", "0",
                   "--no-cold-start", "--threads", "1", "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {f["name"]: f for f in json.loads(proc.stdout)["files"]}
    assert rows[model_files["onnx"].name]["device"] == "CPUExecutionProvider"
    assert rows[model_files["tflite"].name]["device"] == "cpu (XNNPACK)"


def test_onnx_placement_tells_which_provider_ran_each_node(model_files):
    seg = rt.load(model_files["onnx"], threads=1)
    placed = seg.backend.placement()  # from ONNX Runtime's profile of one run
    assert list(placed) == ["CPUExecutionProvider"] and "Conv" in placed["CPUExecutionProvider"]
    # With an accelerator chosen, the note counts the nodes left to the CPU provider (on this
    # CPU-only machine the CPU provider stands in for it: every node "fell back").
    seg.backend.device = "CUDAExecutionProvider"
    note = seg.backend._fallback_note()
    total = len(placed["CPUExecutionProvider"])
    assert note.startswith(f"{total} of {total} nodes fell back to CPUExecutionProvider: ") and "Conv" in note
