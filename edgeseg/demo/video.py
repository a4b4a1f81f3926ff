"""Where annotated frames go: a video file written atomically, and a window when one can open."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgeseg.demo.errors import DisplayError, VideoWriteError
from edgeseg.demo.sources import import_cv2
from edgeseg.fileio import atomic_output

# Container suffix -> FourCC that the stock opencv-python wheels encode without extra codecs.
CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}
# When the source reports no frame rate (folders, some streams), the file plays at this rate.
DEFAULT_FPS = 10.0
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or Esc closes the window


class VideoFile:
    """Encodes BGR frames into one file; opened at the first frame, whose size fixes the video's."""

    def __init__(self, file: Path, fourcc: str, fps: float, name: str):
        self.file, self.fourcc, self.fps, self.name = file, fourcc, fps, name
        self.frames = 0
        self._writer = None

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self._writer = self._open(frame.shape[1], frame.shape[0])
        self._writer.write(frame)
        self.frames += 1

    def _open(self, width: int, height: int):
        cv2 = import_cv2()
        writer = cv2.VideoWriter(str(self.file), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (width, height))
        if not writer.isOpened():
            raise VideoWriteError(
                f"OpenCV cannot encode {self.fourcc} into {self.name} here; try --out with .avi "
                "(MJPG) or .mp4 (mp4v), and check that the folder is writable"
            )
        return writer

    def release(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


@contextlib.contextmanager
def video_output(path: str | os.PathLike[str], fps: float | None) -> Iterator[VideoFile]:
    """A :class:`VideoFile` whose result appears at ``path`` only when the block succeeds.

    Frames go to a temporary file beside ``path`` with the same suffix (OpenCV picks the
    container from it); it is renamed onto ``path`` after the last frame, or removed on error.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CODECS:
        raise VideoWriteError(
            f"--out {path}: unknown video container {suffix or '(no suffix)'!r}; use one of "
            f"{', '.join(CODECS)} (e.g. overlay.mp4)"
        )
    rate = fps if fps and fps > 0 else DEFAULT_FPS
    with atomic_output(path) as tmp:
        video = VideoFile(tmp.with_name(tmp.name + suffix), CODECS[suffix], rate, path.name)
        try:
            yield video
            video.release()
            if video.frames == 0:
                raise VideoWriteError(f"no frames were written to {path}: the source gave none")
            os.replace(video.file, tmp)
        finally:
            video.release()
            with contextlib.suppress(FileNotFoundError):
                video.file.unlink()


def display_available() -> bool:
    """True when a window can open: a display server is set (or not Linux) and OpenCV has GUI support."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    cv2 = import_cv2()
    try:
        cv2.namedWindow("edgeseg-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("edgeseg-probe")
    except cv2.error:
        return False  # opencv-python-headless: no highgui
    return True


class Window:
    """One OpenCV window; ``show`` returns False once the user pressed q/Esc or closed it."""

    def __init__(self, title: str):
        if not display_available():
            raise DisplayError(
                "--show needs a display and OpenCV with GUI support: this machine has no DISPLAY, or "
                "opencv-python-headless is installed. Write a file with --out overlay.mp4 instead, or "
                "`pip install opencv-python` on a desktop"
            )
        self._cv2 = import_cv2()
        self.title = title
        self._cv2.namedWindow(title, self._cv2.WINDOW_NORMAL)

    def show(self, frame: np.ndarray) -> bool:
        cv2 = self._cv2
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1) & 0xFF
        if key in QUIT_KEYS:
            return False
        # Closing the window with the mouse ends the demo too.
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._cv2.destroyWindow(self.title)
