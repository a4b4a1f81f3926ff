"""``edgeseg demo``: segment a camera, video, stream or folder of images live with a model file."""

from __future__ import annotations

from typing import Optional

import typer

from edgeseg.cli.options import DEVICE


def demo(
    model: str = typer.Option(..., "--model", help="A converted file (.onnx, .tflite, .xml, .mlpackage) or a .safetensors checkpoint."),
    source: str = typer.Option(..., "--source", help="Camera index (0), video file, stream URL (rtsp://...) or folder of images."),
    out: Optional[str] = typer.Option(None, "--out", help="Write the overlay video here (.mp4, .avi, .mkv)."),  # noqa: UP007
    show: bool = typer.Option(False, "--show", help="Open a window (q/Esc quits); needs a display."),
    domain: Optional[str] = typer.Option(None, "--domain", help="Multi-domain files: the head to run."),  # noqa: UP007
    smooth: int = typer.Option(1, "--smooth", help="Majority vote over N frames to calm flicker (1 = off)."),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of the class colours in the overlay."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after N frames."),  # noqa: UP007
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for the backend."),  # noqa: UP007
    backend: Optional[str] = typer.Option(None, "--backend", help="Force a backend instead of the file suffix's."),  # noqa: UP007
    summary_json: Optional[str] = typer.Option(None, "--summary-json", help="Also write the summary as JSON here."),  # noqa: UP007
    device: Optional[str] = DEVICE,  # noqa: UP007
) -> None:
    """Overlay the class mask, legend and FPS / latency on every frame; print a summary at the end.

    Without --out or --show nothing is drawn to disk or screen, but the summary is still printed
    (a quick latency and flicker check). Ends at end of stream, on q/Esc and on Ctrl-C.
    """
    import edgeseg.runtime as rt
    from edgeseg.demo import DemoOptions, display_available, open_source, run_demo
    from edgeseg.fileio import write_json_atomic

    window = show and display_available()
    if show and not window:
        keep = f"the overlay goes to {out} only" if out else "add --out overlay.mp4 to keep the overlay"
        typer.echo(f"no display here (or headless OpenCV): no window opens; {keep}", err=True)
    options = DemoOptions(out=out, show=window, domain=domain, alpha=alpha,
                          smooth=smooth, max_frames=max_frames)
    options.check()
    with rt.load(model, backend=backend, threads=threads, device=device) as session, open_source(source) as frames:
        typer.echo(f"{session.describe()}\nsource: {frames.kind} {frames.target}", err=True)
        summary = run_demo(session, frames, options, on_frame=_FrameProgress())
    typer.echo("\n".join(summary.lines()))
    if summary_json:
        write_json_atomic(summary_json, summary.to_dict())
        typer.echo(f"summary: {summary_json}")
    if summary.frames == 0:
        raise typer.Exit(1)


class _FrameProgress:
    """A progress line on stderr every :attr:`SECONDS` of a long demo (frames so far, FPS), so a
    headless run writing a video into a log file shows it is alive."""

    SECONDS = 10.0

    def __init__(self) -> None:
        import time

        self.frames = 0
        self.start = self.last = time.perf_counter()

    def __call__(self, frame, mask) -> None:
        import time

        self.frames += 1
        now = time.perf_counter()
        if now - self.last >= self.SECONDS:
            self.last = now
            typer.echo(f"demo: {self.frames} frames, {self.frames / (now - self.start):.1f} FPS, "
                       f"{now - self.start:.0f} s", err=True)
