"""Frame sources: a camera index, a video file, a network stream or a folder of images, all read
as one iterator of :class:`Frame` (BGR pixels as OpenCV delivers them, and when they were taken).

    >>> with open_source("0") as frames:      # or "clip.mp4", "rtsp://cam/stream", "images/"
    ...     for frame in frames: ...
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.demo.errors import SourceError

# URL schemes OpenCV's FFmpeg backend opens as network streams.
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
# Image suffixes a folder source reads (sorted by name: frame numbers should be zero-padded).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based position in the source
    timestamp: float  # time.monotonic() seconds when the frame was read (capture time for cameras)
    image: np.ndarray  # (H, W, 3) uint8 BGR, as OpenCV delivers it


def import_cv2():
    """OpenCV, or an error naming the extra that installs it."""
    try:
        import cv2
    except ImportError as exc:
        raise SourceError(
            f"the demo reads and writes video with OpenCV, which is not installed ({exc}); install "
            'it with `pip install "edgeseg[demo]"` (or opencv-python for a build with windows)'
        ) from exc
    return cv2


def describe_source(source: str) -> tuple[str, str]:
    """(kind, target) of a source string: camera / stream / folder / video."""
    text = str(source).strip()
    if text.isdigit():
        return "camera", text
    if text.lower().startswith(STREAM_SCHEMES):
        return "stream", text
    path = Path(text).expanduser()
    if path.is_dir():
        return "folder", str(path)
    if path.is_file():
        return "video", str(path)
    raise SourceError(
        f"source {text!r} is neither a camera index (0, 1, ...), a stream URL "
        f"({', '.join(s.rstrip(':/') for s in STREAM_SCHEMES)}), a folder of images nor an existing "
        "video file; check the path"
    )


class FrameSource:
    """Frames from one source; a context manager that releases the camera or file on exit."""

    def __init__(self, source: str | int):
        self.kind, self.target = describe_source(str(source))
        self._cv2 = import_cv2()
        self._capture = None
        self._images: list[Path] = []
        if self.kind == "folder":
            self._images = sorted(p for p in Path(self.target).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._images:
                raise SourceError(
                    f"folder {self.target} holds no images ({', '.join(IMAGE_SUFFIXES)}); give a folder "
                    "of frames or a video file"
                )
        else:
            self._capture = self._open_capture()

    def _open_capture(self):
        cv2 = self._cv2
        target = int(self.target) if self.kind == "camera" else self.target
        capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            capture.release()
            raise SourceError(self._open_failure())
        return capture

    def _open_failure(self) -> str:
        if self.kind == "camera":
            return (
                f"camera {self.target} could not be opened: check that it is connected, that no other "
                f"program holds it, and that this user may read /dev/video{self.target} (group video)"
            )
        if self.kind == "stream":
            return (
                f"stream {self.target} could not be opened: check the URL, the network and the "
                "credentials (OpenCV's FFmpeg backend must support the protocol)"
            )
        return (
            f"video {self.target} could not be opened by OpenCV: it is not a video, it is corrupted, "
            "or its codec is missing from this OpenCV build; re-encode it to H.264 MP4 or pass a folder "
            "of images"
        )

    @property
    def fps(self) -> float | None:
        """The frame rate the source reports (None for folders and sources that report none)."""
        if self._capture is None:
            return None
        fps = float(self._capture.get(self._cv2.CAP_PROP_FPS))
        return fps if 0 < fps < 1000 else None

    @property
    def live(self) -> bool:
        """True for cameras and streams: frames arrive in real time and cannot be replayed."""
        return self.kind in ("camera", "stream")

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "folder":
            yield from self._folder_frames()
            return
        index = 0
        while self._capture is not None:
            ok, image = self._capture.read()
            if not ok or image is None:
                if index == 0:  # opened, but nothing in it: not a video (or an image pattern) at all
                    why = self._open_failure().split(": ", 1)[-1]
                    raise SourceError(f"{self.kind} {self.target} opened but delivered no frame: {why}")
                return  # end of stream (a camera that stops delivering ends the demo too)
            yield Frame(index, time.monotonic(), _as_bgr(image, f"{self.kind} {self.target} frame {index}"))
            index += 1

    def _folder_frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self._images):
            image = self._cv2.imread(str(path), self._cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError(f"{path} could not be read as an image; remove it or replace it")
            yield Frame(index, time.monotonic(), image)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(source: str | int) -> FrameSource:
    """Open ``source``: a camera index (``0``), a video file, a stream URL or a folder of images."""
    return FrameSource(source)


def _as_bgr(image: np.ndarray, where: str) -> np.ndarray:
    """Cameras may deliver grayscale or BGRA; the model takes three channels."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise SourceError(f"{where} has shape {image.shape}; expected (H, W, 3) colour frames")
