import os

# Two cores: keep torch from oversubscribing when pytest-xdist runs two workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import signal  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_sigchld():
    # A DataLoader with worker processes leaves PyTorch's SIGCHLD handler installed process-wide
    # (it checks its workers whenever any child exits). In a pytest process that later runs CLI
    # subprocesses, that handler ran on their exit and crashed the process (segfault, reproduced:
    # test_data_transforms' loader test, then test_devices' CLI runs, in one process). Each test
    # gets the handler it started with back.
    before = signal.getsignal(signal.SIGCHLD)
    yield
    if signal.getsignal(signal.SIGCHLD) is not before:
        signal.signal(signal.SIGCHLD, before)


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


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """The runtime tests' model files (tests/runtime_helpers.py), built once per test process.
    Exported from PyTorch: a test that uses them is skipped in an install without torch."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from runtime_helpers import build_files

    return build_files(tmp_path_factory.mktemp("runtime_models"))
