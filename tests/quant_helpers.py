"""A tiny trained model for the quantization tests: int8 gates need logits that mean something."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

SIZE = (64, 64)
MODEL = "lraspp_mobilenetv3_small"


def train_tiny(out: Path, steps: int = 24) -> Path:
    """Train the tiny LR-ASPP MobileNetV3-Small on 64x64 synthetic scenes; return best.safetensors."""
    from edgeseg.models import tiny_config
    from edgeseg.train import BEST, TrainConfig, train

    cfg = TrainConfig(
        model=MODEL, model_options=tiny_config(MODEL), data=("synthetic",),
        data_options={"size": list(SIZE), "length": 192}, size=SIZE, scale_range=(1.0, 1.0),
        optimizer="adamw", lr=5e-3, iters=steps, batch_size=16, workers=0, eval_every=0,
        eval_limit=8, checkpoint_every=1000, out=str(out),
    )
    train(cfg, progress=False)
    return out / BEST


@functools.lru_cache(maxsize=1)
def tiny_checkpoint() -> Path:
    """One trained tiny checkpoint per test process, shared by the quantization test files."""
    folder = Path(tempfile.mkdtemp(prefix="edgeseg-quant-tests-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return train_tiny(folder)


def untrained_checkpoint(name: str, folder: Path) -> Path:
    """A tiny untrained ``name`` (synthetic day classes, SIZE input) saved in ``folder``: for tests of
    a file's structure, whose gate is opened wide (random weights have no accuracy to keep)."""
    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.data.synthetic import domain_classes
    from edgeseg.models import create_model, tiny_config

    classes, palette = domain_classes("day")  # the gate scores on synthetic images
    model = create_model(name, num_classes=len(classes), **tiny_config(name)).eval()
    model.metadata = model.metadata.replace(input_size=SIZE, classes=classes, palette=palette)
    return save_checkpoint(model, folder / "tiny.safetensors")
