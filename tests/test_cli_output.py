"""What the CLI prints: third-party chatter silenced unless --verbose, progress lines on a
redirected stderr as long commands go, resume messages, JSON on stdout, shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
from cli_files import write_labelled_folder
from runtime_helpers import random_image
from train_helpers import tiny_cfg

ROOT = Path(__file__).resolve().parents[1]


def clean_env() -> dict[str, str]:
    """This process's environment without the switches edgeseg.quiet sets (an in-process CLI test
    may have set them here, and a child would inherit them)."""
    from edgeseg.quiet import QUIET_ENVIRONMENT

    return {k: v for k, v in os.environ.items() if k not in QUIET_ENVIRONMENT}


def edgeseg(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """The CLI in a fresh process, stdout and stderr piped (not a terminal, as in a log file)."""
    return subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env=clean_env())


def test_train_prints_progress_to_a_log_and_resume_says_from_where(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(tiny_cfg(tmp_path, log_every=1).to_yaml())
    out = tmp_path / "run"
    # A time budget this small stops the run after its first step, as an interrupted run.
    first = edgeseg("train", "--config", str(cfg), "--iters", "3", "--out", str(out), "--max-minutes", "1e-6")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "train step 1/3" in first.stderr and "time budget of 1e-06 min reached at step 1" in first.stderr

    resumed = edgeseg("train", "--resume", "--out", str(out), "--max-minutes", "60")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {out} from step 1 of 3 (2 left)" in resumed.stderr
    lines = [line for line in resumed.stderr.splitlines() if line.startswith("train step ")]
    # Plain lines as training goes (the first logged step at once), and one at the end.
    assert lines[0].startswith("train step 2/3") and lines[-1].startswith("train step 3/3"), resumed.stderr
    assert "eta" in lines[0] and "trained lraspp_mobilenetv3_small from step 1 to 3" in resumed.stdout

    again = edgeseg("train", "--resume", "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming {out} from step 3 of 3 (already finished: nothing left to train)" in again.stderr
    assert f"{out} was already trained to step 3: nothing left to train" in again.stdout
    assert "0.0 images/s" not in again.stdout


def test_third_party_output_is_quiet_unless_verbose(model_files, tmp_path):
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), random_image(40, 48, seed=2))
    args = ("predict", str(model_files["tflite"]), str(image), "--out", str(tmp_path / "m"), "--threads", "1")
    quiet, loud = edgeseg(*args), edgeseg("--verbose", *args)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    # LiteRT's C++ logger writes this line straight to the process's stderr.
    assert "XNNPACK delegate" in loud.stderr and "XNNPACK delegate" not in quiet.stderr
    assert quiet.stdout == loud.stdout == f"wrote 1 mask to {tmp_path / 'm'}\n"


def test_quiet_silences_library_warnings_and_logs_but_not_edgeseg_s():
    code = """
import logging, sys, warnings
from edgeseg.quiet import quiet_third_party
quiet_third_party(verbose=sys.argv[1] == "verbose")
library = {"__name__": "torchao.ops", "warnings": warnings, "logging": logging}
exec("warnings.warn('JAX is multithreaded', RuntimeWarning)", library)
logging.basicConfig()
logging.getLogger("torchao").warning("Failed to load _C_mxfp8.so")
logging.warning("Your model is converted in training mode")  # litert-torch logs through the root logger
import torch  # torch resets its own logger's level when imported: TORCH_LOGS keeps it at ERROR
logging.getLogger("torch.onnx").warning("torchvision is not installed")
own = {"__name__": "edgeseg.data.build", "warnings": warnings}
exec("warnings.warn('split val is not held out', UserWarning)", own)
"""
    runs = {mode: subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, cwd=ROOT,
                                 timeout=120, env=clean_env()) for mode in ("quiet", "verbose")}
    for text in ("JAX is multithreaded", "Failed to load _C_mxfp8.so", "torchvision is not installed",
                 "converted in training mode"):
        assert text in runs["verbose"].stderr and text not in runs["quiet"].stderr, runs["quiet"].stderr
    assert "split val is not held out" in runs["quiet"].stderr


def test_json_output_and_shell_completion(model_files, tmp_path):
    folder = write_labelled_folder(tmp_path / "labelled", count=2)
    proc = edgeseg("validate", str(model_files["onnx"]), "--reference", str(model_files["ckpt"]),
                   "--data", f"folder:{folder}", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # stdout is the JSON document and nothing else
    assert report["validation"]["passed"] is True
    assert report["validation"]["files"][0]["device"] == "CPUExecutionProvider"
    assert report["validation"]["files"][0]["domains"][0]["agreement"] == 1.0
    # Shell completion: offered in --help, and the completions the installed script asks the CLI
    # for (--show-completion needs to detect the calling shell, which a test process has not).
    help_text = edgeseg("--help").stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text
    env = {**clean_env(), "_EDGESEG_COMPLETE": "complete_bash", "COMP_WORDS": "edgeseg bench --dev", "COMP_CWORD": "2"}
    done = subprocess.run([sys.executable, "-m", "edgeseg"], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=60)
    assert done.stdout.split() == ["--device"], done.stdout + done.stderr


def test_long_commands_print_progress_and_convert_prints_only_edgeseg_lines(model_files, tmp_path):
    # convert: the stages as they start, then the result; nothing of torch.export, onnxscript or
    # ONNX Runtime (with --verbose: the torchvision/FutureWarning lines, benchmarks/quiet_output.md).
    out = tmp_path / "m.onnx"
    proc = edgeseg("convert", str(model_files["ckpt"]), "--target", "onnx", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == ["onnx fp32: converting m.onnx", "onnx fp32: checking m.onnx against PyTorch"]
    assert proc.stdout.splitlines()[0] == f"wrote {out}" and len(proc.stdout.splitlines()) == 2
    proc = edgeseg("models", "--size", "64x64", "--name", "lraspp_mobilenetv3_small", "--name", "lraspp_mobilenetv3_large")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line.split(",")[0] for line in proc.stderr.splitlines()] == [
        "models: measuring 1/2 (lraspp_mobilenetv3_small)", "models: measuring 2/2 (lraspp_mobilenetv3_large)"]
    proc = edgeseg("int8-report", str(model_files["ckpt"]), "--calib-size", "1", "--calibration",
                   f"folder:{write_labelled_folder(tmp_path / 'labelled', count=1)}", "--top", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    layers = [line for line in proc.stderr.splitlines() if line.startswith("int8-report: layer ")]
    assert layers and layers[-1].split(" (")[0].split()[-1].split("/")[0] == layers[-1].split(" (")[0].split("/")[-1]


def test_native_output_capture_nests_and_shows_what_it_held_on_an_error():
    # A conversion holds the libraries' C++ output back and loads its file in LiteRT, which holds
    # back its own line: the inner capture must leave the outer one working.
    code = """
import os, sys
import edgeseg.quiet as q
q._state["quiet"] = True  # as the CLI's quiet_third_party() leaves it
with q.native_output_captured():
    os.write(2, b"native outer\\n")
    with q.native_output_captured():
        os.write(2, b"native inner\\n")
        q.say("progress inner")
    q.say("progress outer")
os.write(2, b"restored\\n")
try:
    with q.native_output_captured():
        os.write(2, b"held before the error\\n")
        raise RuntimeError("boom")
except RuntimeError:
    os.write(2, b"caught\\n")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["progress inner", "progress outer", "restored",
                                        "output of the libraries before the error:", "held before the error",
                                        "caught"]


def test_demo_prints_a_progress_line_every_few_seconds(capsys):
    from edgeseg.cli.demo import _FrameProgress

    progress = _FrameProgress()
    progress.SECONDS = 0.0  # a line for every frame here; 10 s in a real run
    progress(None, None)
    progress(None, None)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["demo: 1 frames", "demo: 2 frames"] and "FPS" in lines[0]


def test_validate_and_bench_report_progress_as_they_go(model_files, tmp_path, monkeypatch):
    import edgeseg.validate.accuracy as accuracy
    import edgeseg.validate.bench as bench

    monkeypatch.setattr(accuracy, "PROGRESS_SECONDS", 0.0)  # a line per image / round (10 s in a real run)
    monkeypatch.setattr(bench, "PROGRESS_SECONDS", 0.0)
    said: list[str] = []
    folder = write_labelled_folder(tmp_path / "labelled", count=2)
    accuracy.validate([model_files["onnx"]], None, f"folder:{folder}", threads=1, progress=said.append)
    assert [s.split(",")[0] for s in said[1:]] == ["  0/2 images scored", "  1/2 images scored"]
    said.clear()
    bench.bench([model_files["onnx"]], threads=1, warmup=0, runs=2, cold_start=False, progress=said.append)
    assert [s.split(",")[0] for s in said[1:]] == ["  round 0/2", "  round 1/2"]
