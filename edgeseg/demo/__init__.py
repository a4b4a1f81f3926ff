"""Video demos on top of ``edgeseg.runtime``: frame sources, overlays with a legend and a live
FPS / latency readout, flicker measurement and temporal smoothing.

Torch-free: numpy, OpenCV (``pip install "edgeseg[demo]"``) and the runtime's one backend.

    >>> import edgeseg.runtime as rt
    >>> from edgeseg.demo import DemoOptions, open_source, run_demo
    >>> with rt.load("model.onnx") as seg, open_source("clip.mp4") as frames:
    ...     summary = run_demo(seg, frames, DemoOptions(out="overlay.mp4"))
    >>> print("\\n".join(summary.lines()))
"""

from edgeseg.demo.errors import DemoError, DisplayError, SourceError, VideoWriteError
from edgeseg.demo.flicker import FlickerMeter, TemporalSmoother, flicker_rate
from edgeseg.demo.loop import DemoOptions, DemoSummary, run_demo
from edgeseg.demo.sources import Frame, FrameSource, open_source
from edgeseg.demo.stats import LatencySummary, RateMeter
from edgeseg.demo.video import display_available, video_output

__all__ = [
    "DemoError",
    "DemoOptions",
    "DemoSummary",
    "DisplayError",
    "FlickerMeter",
    "Frame",
    "FrameSource",
    "LatencySummary",
    "RateMeter",
    "SourceError",
    "TemporalSmoother",
    "VideoWriteError",
    "display_available",
    "flicker_rate",
    "open_source",
    "run_demo",
    "video_output",
]
