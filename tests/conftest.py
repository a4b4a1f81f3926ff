import os

# Two cores: keep torch from oversubscribing when pytest-xdist runs two workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _torch_threads():
    try:
        import torch
    except ImportError:  # the runtime tests run without torch
        yield
        return
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
