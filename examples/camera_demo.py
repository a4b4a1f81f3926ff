"""Camera demo in a few lines of the Python API (the same loop as ``edgeseg demo``).

    python examples/camera_demo.py model.onnx                 # camera 0, window if there is a display
    python examples/camera_demo.py model.onnx --source clip.mp4 --out overlay.mp4

Needs numpy, OpenCV (``pip install "edgeseg[demo]"``; ``opencv-python`` for windows) and the
backend of the model file; no torch. Press q or Esc in the window, or Ctrl-C, to stop.
"""

from __future__ import annotations

import argparse

import edgeseg.runtime as rt
from edgeseg.demo import DemoOptions, display_available, open_source, run_demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Segment a camera or video live.")
    parser.add_argument("model", help="converted model file (.onnx, .tflite, .xml)")
    parser.add_argument("--source", default="0", help="camera index, video file, stream URL or image folder")
    parser.add_argument("--out", default=None, help="also write the overlay video here")
    parser.add_argument("--smooth", type=int, default=3, help="majority vote over N frames (1 = off)")
    args = parser.parse_args(argv)

    options = DemoOptions(out=args.out, show=display_available(), smooth=args.smooth)
    with rt.load(args.model) as seg, open_source(args.source) as frames:
        summary = run_demo(seg, frames, options)
    print("\n".join(summary.lines()))


if __name__ == "__main__":
    main()
