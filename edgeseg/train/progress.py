"""What a run reports: a rich progress bar (loss, lr, images/s) and metrics.csv per evaluation,
plus TensorBoard scalars when the ``tensorboard`` package happens to be installed."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from edgeseg.fileio import write_text_atomic


class ProgressBar:
    """Rank 0's live bar on a terminal; on a redirected stderr (a log file, a pipe) plain lines
    as training goes, at most one per :data:`LINE_SECONDS` (a live bar would show nothing there
    until the run ends). A no-op on other ranks or when disabled (``--no-progress``)."""

    #: Seconds between two plain progress lines.
    LINE_SECONDS = 10.0

    def __init__(self, total_steps: int, start_step: int, *, enabled: bool, stream=None) -> None:
        self._progress = None
        self._lines = None  # the stream of plain progress lines, when not on a terminal
        if not enabled:
            return
        import sys
        import time

        stream = stream or sys.stderr
        if not stream.isatty():
            self._lines = stream
            self._total, self._start, self._last = total_steps, time.perf_counter(), float("-inf")
            self._first_step = start_step
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        )
        self._task = self._progress.add_task("train", total=total_steps, completed=start_step, status="")
        self._progress.start()

    def update(self, step: int, *, loss: float, lr: float, images_per_s: float) -> None:
        if self._lines is not None:
            import time

            now = time.perf_counter()
            if now - self._last >= self.LINE_SECONDS or step == self._total:
                self._last = now
                elapsed = now - self._start
                done = step - self._first_step
                eta = elapsed / done * (self._total - step) if done > 0 else 0.0
                self.log(f"train step {step}/{self._total}  loss {loss:.4f}  lr {lr:.2e}  "
                         f"{images_per_s:.1f} img/s  elapsed {elapsed:.0f} s  eta {eta:.0f} s")
            return
        if self._progress is not None:
            status = f"loss {loss:.4f}  lr {lr:.2e}  {images_per_s:.1f} img/s"
            self._progress.update(self._task, completed=step, status=status)

    def log(self, text: str) -> None:
        if self._lines is not None:
            print(text, file=self._lines, flush=True)
        elif self._progress is not None:
            self._progress.console.print(text)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class MetricsWriter:
    """Rewrites ``metrics.csv`` (atomically) from the full evaluation history at every evaluation,
    so a resumed run's file holds exactly the rows of the steps it kept."""

    def __init__(self, out_dir: Path, *, enabled: bool) -> None:
        self.path = out_dir / "metrics.csv"
        self.enabled = enabled
        self._tensorboard = _tensorboard_writer(out_dir) if enabled else None

    def write(self, history: list[dict[str, Any]]) -> None:
        if not self.enabled or not history:
            return
        columns: list[str] = []
        for row in history:
            columns += [k for k in row if k not in columns]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
        write_text_atomic(self.path, text.getvalue())
        if self._tensorboard is not None:
            last = history[-1]
            for key, value in last.items():
                if isinstance(value, (int, float)) and key != "step":
                    self._tensorboard.add_scalar(key, value, last["step"])
            self._tensorboard.flush()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def _tensorboard_writer(out_dir: Path):
    try:
        import tensorboard  # noqa: F401  (optional: not a dependency of edgeseg)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))
