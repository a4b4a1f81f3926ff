"""Reports (JSON / Markdown / HTML rendered in headless Chromium), bench, and the two commands,
on the hand-made ONNX files of tests/validate_helpers.py (no torch)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgeseg.validate import CANNOT_RUN_HERE, FAILED_TO_LOAD, FAILED_VALIDATION, PASSED, ValidationSetupError, validate
from edgeseg.validate.bench import MEASURED, bench
from edgeseg.validate.report import SCHEMA, SCHEMA_VERSION, write_report
from validate_helpers import IDENTITY, SWAP_RED_GREEN, colour_onnx, hand_made_sample, write_folder_dataset

pytest.importorskip("onnxruntime")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    coreml = root / "model.mlpackage"
    coreml.mkdir()
    return {
        "root": root,
        "identity": colour_onnx(root / "identity.onnx", {None: IDENTITY}),
        "swapped": colour_onnx(root / "swapped.onnx", {None: SWAP_RED_GREEN}),
        "coreml": coreml,
        "data": f"folder:{write_folder_dataset(root / 'data', [hand_made_sample(), hand_made_sample()])}",
    }


@pytest.fixture(scope="module")
def report(setup):
    files = [setup["identity"], setup["swapped"], setup["coreml"]]
    run = validate(files, setup["identity"], setup["data"], samples=1)
    timing = bench(files, threads=1, warmup=1, runs=5, cold_start=False)
    return run, timing, write_report(setup["root"] / "out", validation=run, bench=timing)


def test_json_report_has_versioned_schema_and_every_row(report):
    run, _, written = report
    data = json.loads(written.json.read_text())
    assert data["schema"] == SCHEMA and data["schema_version"] == SCHEMA_VERSION
    rows = {f["name"]: f for f in data["validation"]["files"]}
    assert rows["identity.onnx"]["status"] == PASSED
    assert rows["swapped.onnx"]["status"] == FAILED_VALIDATION
    assert rows["swapped.onnx"]["domains"][0]["miou_drop_points"] == pytest.approx(47.5)
    if sys.platform != "darwin":
        assert rows["model.mlpackage"]["status"] == CANNOT_RUN_HERE
    assert data["validation"]["passed"] is False
    timed = {f["name"]: f for f in data["bench"]["files"]}
    assert timed["identity.onnx"]["predict"]["runs"] == 5
    assert data["environment"]["libraries"]["onnxruntime"]
    assert data["bench"]["environment"]["threads"] == 1


def test_markdown_report_lists_files_and_reasons(report):
    text = report[2].markdown.read_text()
    assert re.search(r"^\| identity\.onnx \| onnxruntime \| fp32 .* \| passed \| 85\.00 \| 85\.00 \| 0\.00 \|", text, re.M)
    assert re.search(r"^\| swapped\.onnx .* \| converted but failed validation \| 37\.50 \| 85\.00 \| 47\.50 \|", text, re.M)
    assert "## Latency" in text and "CPU:" in text and "threads: 1" in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium); CI installs it")
def test_html_report_renders_its_tables_and_images_in_chromium(report, tmp_path):
    html_path = report[2].html
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
               "--dump-dom", html_path.as_uri()]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom).group(0)
    total = int(re.search(r'data-images="(\d+)"', body).group(1))
    rendered = int(re.search(r'data-images-rendered="(\d+)"', body).group(1))
    # accuracy vs latency, per-class IoU bars, one sample overlay (samples=1), latency bars
    assert total == 4 and rendered == total
    table = re.search(r'<table id="accuracy">.*?</table>', dom, re.S).group(0)
    assert table.count("<tr") == 4  # header + three files
    assert "swapped.onnx" in table and "converted but failed validation" in table
    assert re.search(r'<table id="latency">', dom)


def test_failed_report_write_leaves_the_old_report(report, setup, monkeypatch):
    run, timing, written = report
    before = written.json.read_text()

    def broken(*args):
        raise RuntimeError("plot failed")

    monkeypatch.setattr("edgeseg.validate.plots.latency_bars", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(written.json.parent, validation=run, bench=timing)
    assert written.json.read_text() == before
    assert sorted(p.name for p in written.json.parent.iterdir()) == ["report.html", "report.json", "report.md"]


def test_bench_times_files_round_robin_with_statistics(setup, monkeypatch, tmp_path):
    from edgeseg.runtime import SegmentationSession

    order = []
    predict = SegmentationSession.predict

    def recording(self, *args, **kwargs):
        order.append(self.backend.path.name)
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(SegmentationSession, "predict", recording)
    timing = bench(
        [setup["identity"], setup["swapped"], setup["root"] / "missing.onnx", setup["coreml"]],
        threads=1, warmup=2, runs=6, input_size=(24, 40), cold_start=True,
    )
    assert order == ["identity.onnx", "swapped.onnx"] * 8  # interleaved, warm-up included
    ok = {r.name: r for r in timing.files}
    assert ok["missing.onnx"].status == FAILED_TO_LOAD
    if sys.platform != "darwin":
        assert ok["model.mlpackage"].status == CANNOT_RUN_HERE
    for name in ("identity.onnx", "swapped.onnx"):
        r = ok[name]
        assert r.status == MEASURED and r.image_size == (24, 40)
        for stats in (r.model_call, r.predict):
            assert stats.runs == 6 and 0 < stats.min <= stats.p50 <= stats.p90 <= stats.p99
        assert r.model_call.mean <= r.predict.mean  # the graph call is part of predict
        assert r.throughput == pytest.approx(1000 / r.predict.mean)
        assert r.load_s > 0 and r.size_bytes == setup[name.split(".")[0]].stat().st_size
        assert r.cold["peak_rss_bytes"] > r.cold["baseline_rss_bytes"] > 0, r.cold
        assert r.cold["cold_start_s"] >= r.cold["load_s"] > 0
    assert timing.environment["threads"] == 1 and timing.environment["cpu"]


def test_bench_on_a_given_image_and_bad_inputs(setup, tmp_path):
    from PIL import Image

    picture = tmp_path / "street.png"
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(picture)
    timing = bench([setup["identity"]], warmup=0, runs=2, image=picture, cold_start=False)
    assert timing.files[0].image_size == (20, 30) and timing.image == "given image"
    with pytest.raises(ValidationSetupError, match="does not exist"):
        bench([setup["identity"]], image=tmp_path / "none.png")
    with pytest.raises(ValidationSetupError, match="runs >= 1"):
        bench([setup["identity"]], runs=0)


def test_cli_validate_exit_codes_and_report(setup, tmp_path):
    from typer.testing import CliRunner

    from edgeseg.cli import app

    runner = CliRunner()
    base = ["validate", "--reference", str(setup["identity"]), "--data", setup["data"]]
    good = runner.invoke(app, base + [str(setup["identity"]), "--report", str(tmp_path / "r")])
    assert good.exit_code == 0, good.output
    assert "passed" in good.output and (tmp_path / "r" / "report.html").is_file()
    bad = runner.invoke(app, base + [str(setup["identity"]), str(setup["swapped"])])
    assert bad.exit_code == 1 and "FAILED: swapped.onnx" in bad.output
    loose = runner.invoke(app, base + [str(setup["swapped"]), "--max-miou-drop", "50", "--min-agreement", "0.2"])
    assert loose.exit_code == 0, loose.output
    if sys.platform != "darwin":
        unverified = runner.invoke(app, base + [str(setup["identity"]), str(setup["coreml"])])
        assert unverified.exit_code == 3 and "cannot run here" in unverified.output
        # Nothing that ran failed: the heading names the file not run here instead of NOT PASSED.
        assert "NOT PASSED" not in unverified.output
        assert "not run here: " in unverified.output and "(CoreML runs on macOS only)" in unverified.output


def test_cli_bench(setup):
    from typer.testing import CliRunner

    from edgeseg.cli import app

    result = CliRunner().invoke(
        app, ["bench", str(setup["identity"]), "--threads", "1", "--warmup", "1", "--runs", "3", "--no-cold-start"]
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"\| identity\.onnx \| onnxruntime \| fp32 .* \| measured \|", result.output)
