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


def channel_argmax_onnx(path: Path, *, two_domains: bool = False) -> Path:
    """The identity-conv model; ``two_domains`` adds a second head ("night") whose weights
    reverse the channels, so its class k is the strongest channel 2 - k."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.metadata import METADATA_KEY, DomainInfo, ModelMetadata

    h, w = MODEL_SIZE
    heads = {"day": np.eye(3, dtype=np.float32), "night": np.eye(3, dtype=np.float32)[::-1].copy()}
    if not two_domains:
        heads = {"logits": heads["day"]}
    names = {d: (d if not two_domains else f"logits_{d}") for d in heads}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", f"weight_{d}"], [names[d]]) for d in heads],
        "channel_argmax",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info(names[d], TensorProto.FLOAT, [1, 3, h, w]) for d in heads],
        [numpy_helper.from_array(weight.reshape(3, 3, 1, 1), f"weight_{d}") for d, weight in heads.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    domains = {}
    if two_domains:
        domains = {"domains": tuple(DomainInfo(d, CLASSES, PALETTE) for d in heads), "output_names": names}
    meta = ModelMetadata(
        model="channel_argmax_test", classes=CLASSES, palette=PALETTE, mean=(0, 0, 0), std=(1, 1, 1),
        input_size=MODEL_SIZE, **domains,
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


def load_example(name: str):
    """``examples/<name>.py`` as a module (the examples are scripts, not a package), registered in
    ``sys.modules`` because dataclasses look their module up by name."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
