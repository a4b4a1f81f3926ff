"""Hand-made files and data for the validation harness tests: no torch, exact expected numbers.

``colour_onnx`` writes an ONNX graph whose logits are a 1x1 convolution of the raw RGB pixels
(mean 0, std 1): with the identity matrix, a pure red pixel is class 0, green 1, blue 2, so every
prediction on a pure-colour image is known in advance and IoU can be worked out by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeseg.metadata import METADATA_KEY, DomainInfo, ModelMetadata

CLASSES = ("red", "green", "blue")
PALETTE = ((200, 0, 0), (0, 200, 0), (0, 0, 200))
SIZE = 16
IDENTITY = np.eye(3, dtype=np.float32)
SWAP_RED_GREEN = IDENTITY[[1, 0, 2]]  # class 0 and 1 trade places


def colour_onnx(path: Path, matrices: dict[str | None, np.ndarray], domain_of: tuple[str, ...] = ()) -> Path:
    """One logits output per entry: ``{None: W}`` is a single-domain file, ``{"a": W1, "b": W2}``
    a multi-domain file with an output per domain. ``domain_of=("a", "b")`` with ``{None: W}``
    makes a per-domain file: domain ``a``'s head of a model whose domains are a and b."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    domains = [d for d in matrices if d is not None]
    nodes, outputs, inits = [], [], []
    for i, (domain, matrix) in enumerate(matrices.items()):
        name = f"logits_{domain}" if domain else "logits"
        inits.append(numpy_helper.from_array(matrix.reshape(3, 3, 1, 1).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", ["image", f"w{i}"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, SIZE, SIZE]))
    graph = helper.make_graph(
        nodes, "colour", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        outputs, inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = ModelMetadata(
        model="colour_test", classes=CLASSES, palette=PALETTE, mean=(0, 0, 0), std=(1, 1, 1),
        input_size=(SIZE, SIZE),
        domains=tuple(DomainInfo(d, CLASSES, PALETTE) for d in (domains or domain_of)),
        domain=domain_of[0] if domain_of else None,
        output_names={d: f"logits_{d}" for d in domains},
    )
    helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    onnx.save(model, str(path))
    return path


def hand_made_sample() -> tuple[np.ndarray, np.ndarray]:
    """Image: rows 0-3 blue; below, columns 0-7 red and 8-15 green.
    Labels: rows 0-3 blue (2); below, columns 0-9 red (0) and 10-15 green (1); row 15 ignored."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[:, :8] = (255, 0, 0)
    image[:, 8:] = (0, 255, 0)
    image[:4] = (0, 0, 255)
    label = np.zeros((SIZE, SIZE), np.uint8)
    label[:, 10:] = 1
    label[:4] = 2
    label[15] = 255
    return image, label


# Worked out by hand for hand_made_sample() (240 scored pixels; row 15 is ignored):
#   identity: red IoU 88/110 = 0.8, green 66/88 = 0.75, blue 64/64 = 1 -> mIoU 0.85, accuracy 218/240
#   swapped:  red IoU 22/176 = 0.125, green 0/154 = 0, blue 1 -> mIoU 0.375; agrees with the
#             identity on the 64 blue pixels of 256 = 0.25; logits differ by exactly 1 on red and
#             green pixels in two channels: max |err| 1, mean |err| 2 * 192 / (3 * 256) = 0.5.
EXPECTED_IDENTITY = {"red": 0.8, "green": 0.75, "blue": 1.0, "miou": 0.85, "pixel_accuracy": 218 / 240}
EXPECTED_SWAPPED = {"red": 0.125, "green": 0.0, "blue": 1.0, "miou": 0.375, "agreement": 0.25,
                    "max_logit_error": 1.0, "mean_logit_error": 0.5}


def write_folder_dataset(root: Path, samples: list[tuple[np.ndarray, np.ndarray]], split: str = "val") -> Path:
    from PIL import Image

    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "masks" / split).mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps({"classes": list(CLASSES), "palette": [list(c) for c in PALETTE]}))
    for i, (image, label) in enumerate(samples):
        Image.fromarray(image).save(root / "images" / split / f"s{i}.png")
        Image.fromarray(label).save(root / "masks" / split / f"s{i}.png")
    return root
