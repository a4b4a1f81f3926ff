"""A hand-built ONNX model whose masks are known in advance, and short generated videos.

The model is one 1x1 convolution with identity weights: its logits are the RGB channels, so the
class of a pixel is its strongest colour channel (0 red, 1 green, 2 blue). A test can then say
exactly which class every block of a frame must get, without torch and in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ("red", "green", "blue")
# Colours unlike the blocks they mark, so an overlay visibly changes every pixel.
PALETTE = ((0, 200, 255), (255, 0, 255), (255, 255, 0))
MODEL_SIZE = (32, 32)
FRAME_SIZE = (144, 128)  # (height, width)
# BGR block colours (as OpenCV writes them) and their classes.
BLOCKS = {"red": ((0, 0, 220), 0), "green": ((0, 220, 0), 1), "blue": ((220, 0, 0), 2)}


def channel_argmax_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.metadata import METADATA_KEY, ModelMetadata

    h, w = MODEL_SIZE
    weight = numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "weight")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "weight"], ["logits"])],
        "channel_argmax",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, h, w])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ModelMetadata(
        model="channel_argmax_test", classes=CLASSES, palette=PALETTE, mean=(0, 0, 0), std=(1, 1, 1),
        input_size=MODEL_SIZE,
    )
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def block_frame(index: int) -> np.ndarray:
    """A BGR frame: red on the left, green in the middle, blue on the right; the red/green
    border moves 8 pixels right every frame, so consecutive masks differ."""
    h, w = FRAME_SIZE
    frame = np.zeros((h, w, 3), np.uint8)
    edge = 24 + 8 * (index % 4)
    frame[:, :edge] = BLOCKS["red"][0]
    frame[:, edge:96] = BLOCKS["green"][0]
    frame[:, 96:] = BLOCKS["blue"][0]
    return frame


def expected_classes(index: int) -> np.ndarray:
    """The class of every column of block_frame(index) (a (W,) vector)."""
    w = FRAME_SIZE[1]
    edge = 24 + 8 * (index % 4)
    classes = np.full(w, 1, np.uint8)
    classes[:edge] = 0
    classes[96:] = 2
    return classes


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0, fourcc: str = "FFV1") -> Path:
    """A lossless video (FFV1 in .avi by default) so the decoded frames equal the written ones."""
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames
