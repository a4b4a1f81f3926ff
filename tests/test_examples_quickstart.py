"""examples/quickstart.py --tiny: every stage end to end (train, QAT, convert, validate, bench, report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from demo_helpers import load_example

ROOT = Path(__file__).resolve().parents[1]
# --tiny converts for every target whose runtime works here (CoreML only converts off macOS, so
# it is left out by default): about a minute on a quiet 2-core CPU, most of it the converters.


def load_quickstart():
    return load_example("quickstart")


@pytest.mark.slow
def test_quickstart_tiny_end_to_end(tmp_path, capfd):
    quickstart = load_quickstart()
    out = tmp_path / "qs"
    code = quickstart.main(["--tiny", "--quiet", "--out", str(out), "--threads", "1"])
    printed = capfd.readouterr()
    # The converters' libraries stay quiet without --verbose (litert-torch's task lines, NNCF's
    # progress bars, LiteRT's C++ log); quickstart.md is what it prints.
    chatter = ("[START]", "Statistics collection", "XNNPACK delegate", "os.fork()")
    assert not [c for c in chatter if c in printed.out + printed.err], printed.out[-2000:] + printed.err[-2000:]
    assert printed.out.startswith("# edgeseg quickstart")
    summary = json.loads((out / "quickstart.json").read_text())
    stages = {s["name"]: s for s in summary["stages"]}
    assert stages["train"]["status"] == "done", stages["train"]
    assert stages["convert"]["status"] == "done" and stages["validate + bench"]["status"] == "done"
    # The dev install has the qat extra (torchao, litert-torch): QAT must run, not be skipped.
    assert stages["qat"]["status"] == "done", stages["qat"]
    assert summary["qat_checkpoint"] is not None
    assert Path(summary["checkpoint"]).is_file() and summary["train"]["steps"] == quickstart.TINY.train_iters
    files = {(f["target"], f["precision"]): f for f in summary["files"]}
    from edgeseg.converters import TARGETS

    here = [t for t in quickstart.TARGET_ORDER if TARGETS[t].runs_here()]
    assert set(here) >= {"onnx", "openvino", "tflite"}
    for target in here:
        for precision in ("fp32", "int8"):
            entry = files[(target, precision)]
            assert entry["status"] == "converted", entry
            assert Path(entry["path"]).is_file()
            # Scored against the float checkpoint on the same held-out images, and timed.
            validation = entry["validation"]
            assert validation["status"] == "passed", validation
            # The harness's own gates, restated: a "passed" that broke them would be a lie.
            from edgeseg.validate.gates import Gates

            gates = Gates()
            assert validation["reference_miou"] is not None
            assert validation["miou"] >= validation["reference_miou"] - gates.max_miou_drop - 1e-9
            assert validation["agreement"] >= gates.agreement_for(validation["ran_at"])
            # OpenVINO runs a file at the fastest precision its conversion verified (bf16 where the
            # CPU has it and the file passed there; an int8 IR's float ops likewise).
            faster = {("openvino", "fp32"): "bf16", ("openvino", "int8"): "int8+bf16"}.get((target, precision))
            assert validation["ran_at"] in ((precision, faster) if faster else (precision,))
            assert entry["latency_ms"]["predict_p50"] > 0
    assert code == 0
    report = out / "report"
    assert {p.name for p in report.iterdir()} >= {"report.html", "report.md", "report.json"}
    text = (out / "quickstart.md").read_text()
    assert "| train | done" in text and "model_int8.tflite" in text and "model_int8.xml" in text


def test_quickstart_refuses_unknown_targets(capsys):
    quickstart = load_quickstart()
    with pytest.raises(SystemExit):
        quickstart.main(["--tiny", "--targets", "onnx,tensorrt"])
    assert "tensorrt" in capsys.readouterr().err


def test_quickstart_keeps_an_earlier_run_unless_told(tmp_path, capsys):
    quickstart = load_quickstart()
    (tmp_path / "notes.txt").write_text("not a quickstart run")
    with pytest.raises(SystemExit):
        quickstart.main(["--tiny", "--out", str(tmp_path)])
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        quickstart.main(["--tiny", "--out", str(tmp_path), "--overwrite"])
    assert "does not look like a quickstart folder" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").exists()
