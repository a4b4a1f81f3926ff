"""Training with DataLoader workers leaves the caller's process as it found it: PyTorch installs
its SIGCHLD handler process-wide when workers start and never removes it."""

from __future__ import annotations

import signal

import pytest

torch = pytest.importorskip("torch")

from torch.utils.data._utils import signal_handling  # noqa: E402

from edgeseg.models import tiny_config  # noqa: E402
from edgeseg.train import TrainConfig, train  # noqa: E402

SMALL = "lraspp_mobilenetv3_small"


def _marker(signum, frame):  # the caller's own handler
    pass


def test_training_gives_the_callers_sigchld_handler_back(tmp_path, monkeypatch):
    # PyTorch installs its handler once per process; an earlier test's loader may have done so.
    monkeypatch.setattr(signal_handling, "_SIGCHLD_handler_set", False)
    previous = signal.signal(signal.SIGCHLD, _marker)
    try:
        cfg = TrainConfig(model=SMALL, model_options=tiny_config(SMALL), data=("synthetic",),
                          data_options={"size": [64, 64], "length": 8}, size=(64, 64), iters=2, batch_size=2,
                          workers=1, eval_every=0, checkpoint_every=2, out=str(tmp_path / "run"), device="cpu")
        assert train(cfg, progress=False).step == 2
        assert signal.getsignal(signal.SIGCHLD) is _marker
        # ...and the next loader with workers installs PyTorch's handler again (it watches its workers).
        loader = torch.utils.data.DataLoader(list(range(4)), batch_size=2, num_workers=1)
        assert [b.tolist() for b in loader] == [[0, 1], [2, 3]]
        assert signal.getsignal(signal.SIGCHLD) is not _marker
    finally:
        signal.signal(signal.SIGCHLD, previous)
