"""``bench``: latency of several model files measured interleaved (round robin), so a burst of
machine noise hits every file alike, plus cold start and peak memory from a fresh process each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeseg.validate.environment import environment
from edgeseg.validate.errors import ValidationSetupError
from edgeseg.validate.files import backend_of, file_size, open_file
from edgeseg.validate.latency import LatencyStats

#: Seconds between two "round" progress lines of a long bench.
PROGRESS_SECONDS = 10.0
MEASURED = "measured"  # the bench status of a file that ran (the others reuse the gate statuses)


@dataclass
class BenchResult:
    """One file's timings. Latencies in ms; sizes in bytes; times in seconds."""

    path: str
    backend: str | None
    precision: str | None
    size_bytes: int
    status: str
    reason: str = ""
    image_size: tuple[int, int] | None = None
    model_call: LatencyStats | None = None  # the backend's graph call alone
    predict: LatencyStats | None = None  # the full predict: pre + graph + post
    load_s: float | None = None  # load() in this process (backend library already imported)
    device: str | None = None  # what ran the graph (seg.device)
    device_note: str = ""  # what auto picked, ops left to the CPU
    cold: dict = field(default_factory=dict)  # fresh-process cold start and peak RSS (probe.py)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def throughput(self) -> float | None:
        """Images per second, one stream, full predict (1000 / mean predict ms)."""
        return 1000.0 / self.predict.mean if self.predict and self.predict.mean > 0 else None

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "name": self.name,
            "backend": self.backend,
            "device": self.device,
            "device_note": self.device_note,
            "precision": self.precision,
            "size_bytes": self.size_bytes,
            "status": self.status,
            "reason": self.reason,
            "image_size": list(self.image_size) if self.image_size else None,
            "model_call": self.model_call.as_dict() if self.model_call else None,
            "predict": self.predict.as_dict() if self.predict else None,
            "throughput_fps": self.throughput,
            "load_s": self.load_s,
            "cold_start": self.cold or None,
        }


@dataclass
class BenchRun:
    environment: dict
    threads: int | None
    warmup: int
    runs: int
    image: str  # where the timed image came from
    files: list[BenchResult]

    def result_for(self, path: str) -> BenchResult | None:
        return next((f for f in self.files if f.path == path or f.name == Path(path).name), None)

    def to_dict(self) -> dict:
        return {
            "environment": self.environment,
            "threads": self.threads,
            "warmup": self.warmup,
            "runs": self.runs,
            "image": self.image,
            "order": "round robin: each run times every file once, in the order given",
            "files": [f.to_dict() for f in self.files],
        }


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An RGB uint8 image from disk, as :func:`edgeseg.runtime.read_image` reads it."""
    from edgeseg.runtime.errors import ImageFileError
    from edgeseg.runtime.imagefile import read_image as read

    try:
        return read(path)
    except ImageFileError as exc:
        raise ValidationSetupError(f"--image: {exc}") from exc


def bench(
    files: Sequence[str | os.PathLike[str]],
    *,
    threads: int | None = None,
    warmup: int = 5,
    runs: int = 50,
    input_size: tuple[int, int] | None = None,
    image: str | os.PathLike[str] | np.ndarray | None = None,
    cold_start: bool = True,
    progress: Callable[[str], None] | None = None,
    device: str | None = None,
) -> BenchRun:
    """Time every file round robin: ``warmup`` untimed rounds, then ``runs`` timed rounds.

    The image is ``image`` (a path or an array), else a fixed random image of ``input_size``
    (default: each file's own input size, so no resize). ``cold_start`` adds a fresh-process
    probe per file: load + first predict time and peak resident memory. ``device``: where every
    file runs (``edgeseg.runtime.load(device=...)``); each result says what actually ran.
    """
    if warmup < 0 or runs < 1:
        raise ValidationSetupError(f"warmup={warmup}, runs={runs}: need warmup >= 0 and runs >= 1")
    if threads is not None and threads < 1:
        raise ValidationSetupError(f"threads={threads} must be >= 1 (or left out for the backend default)")
    if not files:
        raise ValidationSetupError("no model files given; pass one or more files to bench")
    say = progress or (lambda _: None)
    fixed = read_image(image) if isinstance(image, (str, os.PathLike)) else image
    results, live = [], []
    for path in files:
        path = Path(path)
        start = time.perf_counter()
        opened = open_file(path, threads, device=device)
        load_s = time.perf_counter() - start
        session = opened.session
        result = BenchResult(
            str(path), backend_of(path), session.precision if session else None,
            file_size(path), opened.status or MEASURED, opened.reason,
        )
        results.append(result)
        if session is None:
            continue
        result.load_s = load_s
        result.device, result.device_note = session.device, session.device_note
        pixels = fixed if fixed is not None else _noise(input_size or session.metadata.input_size)
        result.image_size = tuple(pixels.shape[:2])
        # A file with one output per domain is timed on its first head (each head costs the same graph).
        domain = session.domains[0] if session.domains else session.metadata.domain
        live.append((result, session, pixels, domain, [], []))
    say(f"timing {len(live)} file(s): {warmup} warm-up + {runs} timed rounds, round robin")
    started = last_said = time.perf_counter()
    for round_index in range(warmup + runs):
        if time.perf_counter() - last_said >= PROGRESS_SECONDS:  # a big model: minutes of rounds
            last_said = time.perf_counter()
            say(f"  round {round_index}/{warmup + runs}, {last_said - started:.0f} s")
        for result, session, pixels, domain, predict_s, model_s in live:
            start = time.perf_counter()
            session.predict(pixels, domain=domain)
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                predict_s.append(elapsed)
                model_s.append(session.last_model_call_s)  # the graph call inside that predict
    for result, session, _, _, predict_s, model_s in live:
        result.predict, result.model_call = LatencyStats.of(predict_s), LatencyStats.of(model_s)
        session.close()
    if cold_start:
        for result in (r for r in results if r.status == MEASURED):
            say(f"cold start and peak memory of {result.name} in a fresh process")
            result.cold = probe_file(result.path, threads, result.image_size, device)
    source = "given image" if fixed is not None else "fixed random image at each file's input size"
    if input_size and fixed is None:
        source = f"fixed random image {input_size[0]}x{input_size[1]}"
    return BenchRun(environment(threads), threads, warmup, runs, source, results)


def _noise(size: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)


def probe_file(path: str, threads: int | None, size: tuple[int, int] | None, device: str | None = None) -> dict:
    """Run :mod:`edgeseg.validate.probe` on one file in a fresh interpreter."""
    command = [sys.executable, "-m", "edgeseg.validate.probe", path, "--runs", "3"]
    if threads:
        command += ["--threads", str(threads)]
    if size:
        command += ["--height", str(size[0]), "--width", str(size[1])]
    if device:
        command += ["--device", device]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"the probe process failed: {tail[0]}"}
    return json.loads(lines[-1])
