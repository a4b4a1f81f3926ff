"""Files for the runtime-only CLI checks: a tiny ONNX model and a labelled folder of its classes.

``python tests/cli_files.py OUT`` (in the full venv, with torch) writes ``OUT/tiny.onnx``,
``OUT/labelled/{images,masks}/*.png`` and ``OUT/labelled/classes.json``; .ci/run then runs the
CLI on them in a venv without torch. The pytest checks use :func:`write_labelled_folder`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def write_labelled_folder(root: Path, count: int = 4) -> Path:
    """``count`` 64x64 images with masks of the tiny model's four classes, written with OpenCV."""
    import cv2
    from runtime_helpers import random_image
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = random_image(64, 64, seed=20 + i)
        mask = (np.arange(64)[:, None] // 16 + np.arange(64)[None, :] // 32 + i) % 4
        cv2.imwrite(str(root / "images" / f"f{i}.png"), image[..., ::-1])
        cv2.imwrite(str(root / "masks" / f"f{i}.png"), mask.astype(np.uint8))
    (root / "classes.json").write_text(json.dumps({"classes": [f"class_{i}" for i in range(4)]}))
    return root


def main(out: Path) -> None:
    import torch
    from runtime_helpers import SIZE, export_onnx, tiny_model
    out.mkdir(parents=True, exist_ok=True)
    model = tiny_model()
    export_onnx(model, torch.randn(1, 3, *SIZE), out / "tiny.onnx", model.metadata)
    write_labelled_folder(out / "labelled")
    print(f"wrote {out / 'tiny.onnx'} and {out / 'labelled'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
