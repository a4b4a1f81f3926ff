"""A training config small enough for a test: tiny widths, 64x64 synthetic images, 4 steps."""

from __future__ import annotations

import pytest

SMALL = "lraspp_mobilenetv3_small"
DATA_OPTIONS = {"size": [64, 64], "length": 8}


def tiny_cfg(tmp_path, **changes):
    """A TrainConfig writing under ``tmp_path``; ``changes`` replace any field (the test is
    skipped without torch)."""
    pytest.importorskip("torch")
    from edgeseg.models import tiny_config
    from edgeseg.train import TrainConfig

    base = dict(model=SMALL, model_options=tiny_config(SMALL), data=("synthetic",), data_options=DATA_OPTIONS,
                size=(64, 64), iters=4, batch_size=2, workers=0, checkpoint_every=2, out=str(tmp_path / "run"),
                lr=0.05, device="cpu")
    base.update(changes)
    return TrainConfig(**base)
