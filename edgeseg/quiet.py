"""Third-party chatter off by default, back on with ``edgeseg --verbose``.

Conversions pull in torch.export, litert-torch, JAX, torchao, coremltools, NNCF and TensorFlow's
C++ converter, which together printed 12-106 lines around edgeseg's own 1-2 result lines (issue
17): "Failed to load ...torchao/_C_mxfp8...so" (torchao's logger), "os.fork() ... JAX is
multithreaded" (a RuntimeWarning), "converted in training mode" (litert-torch's logger, about
its own trace of a model edgeseg has already put in eval mode), coremltools version warnings,
litert-torch's [START]/[DONE] task lines and absl/TensorFlow C++ logs.

:func:`quiet_third_party` turns them off at the source, before any of those libraries is
imported: environment switches the native libraries read when they load, Python warnings from
outside edgeseg ignored, third-party loggers at ERROR. edgeseg's own warnings and every error
still show. :func:`native_output_captured` additionally holds back what C++ code writes straight
to the process's stdout/stderr during a conversion, and prints it if the conversion fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

from edgeseg.errors import EdgesegError, EdgesegWarning

# Read by libraries when they load: TensorFlow / LiteRT C++ logging (absl), glog, litert-torch's
# task progress lines, gRPC, and PyTorch's log levels (torch sets its "torch" logger to WARNING
# when imported; "-torch" makes that ERROR).
QUIET_ENVIRONMENT = {
    "TORCH_LOGS": "-torch",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "GLOG_minloglevel": "3",
    "ABSL_MIN_LOG_LEVEL": "3",
    "LITERT_TORCH_SHOW_PROGRESS": "n",
    "GRPC_VERBOSITY": "ERROR",
}
# Loggers of the libraries a conversion imports (set to ERROR: their errors still show).
THIRD_PARTY_LOGGERS = (
    "torchao", "torch", "torch._export", "torch.export", "torch.onnx", "coremltools", "nncf",
    "litert_torch", "ai_edge_torch", "absl", "tensorflow", "jax", "onnxscript", "onnx_ir",
    "openvino", "onnxruntime", "matplotlib", "PIL", "urllib3", "filelock",
)

_state = {"verbose": False, "quiet": False}


def verbose() -> bool:
    """Whether ``--verbose`` asked for third-party output."""
    return _state["verbose"]


def active() -> bool:
    """Whether :func:`quiet_third_party` silenced this process (the CLI does; a Python program
    that imports edgeseg keeps its own logging and warnings settings)."""
    return _state["quiet"]


def quiet_third_party(verbose: bool = False) -> None:
    """Silence third-party warnings and logs for the rest of the process (``verbose``: do not)."""
    _state["verbose"] = verbose
    if verbose:
        return
    _state["quiet"] = True
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)  # a value the user set on purpose wins
    warnings.filterwarnings("ignore")
    # edgeseg's own warnings (a file without metadata, a split that is not held out) still show.
    warnings.filterwarnings("default", module=r"edgeseg(\.|$)")
    warnings.filterwarnings("default", category=EdgesegWarning)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Libraries that log through the root logger (litert-torch's "converted in training mode",
    # ONNX Runtime's quantizer "consider pre-processing"); edgeseg itself does not use logging.
    logging.getLogger().setLevel(logging.ERROR)
    absl = sys.modules.get("absl.logging")
    if absl is not None:
        absl.set_verbosity(absl.ERROR)


def terminal():
    """The stream of the person at the terminal: stderr, or while :func:`native_output_captured`
    holds the libraries' output back, the terminal's stderr it kept aside."""
    return _state.get("terminal") or sys.stderr


def say(text: str) -> None:
    """A progress line for the person at the terminal (stderr), also while
    :func:`native_output_captured` holds the libraries' output back."""
    print(text, file=terminal(), flush=True)


@contextlib.contextmanager
def native_output_captured(enabled: bool = True) -> Iterator[None]:
    """Hold back what native code writes to file descriptors 1 and 2 (C++ logs that no Python
    switch reaches); print it if the block raises an unexpected error. Only where the CLI runs quiet (:func:`active`):
    a program that imports edgeseg keeps its own output. Python's ``sys.stdout``/``sys.stderr``
    writes in the block are held too (also where they are not descriptors 1 and 2, as under a test's
    capture), so edgeseg prints its result after the block."""
    if not enabled or not active() or "terminal" in _state:
        yield  # off, or inside another capture (a conversion loading its file in LiteRT): it holds
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 1)
        os.dup2(held.fileno(), 2)
        _state["terminal"] = os.fdopen(os.dup(saved[1]), "w", buffering=1)  # for say()
        # Python-level writes too, where sys.stdout/sys.stderr are not descriptors 1 and 2 (a
        # test's capture, a notebook): libraries' progress bars print through them.
        python_held = os.fdopen(os.dup(held.fileno()), "w", buffering=1, errors="replace")
        failed = False
        try:
            with python_held, contextlib.redirect_stdout(python_held), contextlib.redirect_stderr(python_held):
                yield
        except BaseException as exc:
            # edgeseg's own errors say what is wrong and what to do (and an exit is no error);
            # others get the libraries' words.
            failed = not isinstance(exc, (EdgesegError, SystemExit))
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)  # the descriptors first: nothing below may fail with them held
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            _state.pop("terminal").close()
            if failed:
                held.seek(0)
                text = held.read().decode("utf-8", "replace").strip()
                if text:
                    print(f"output of the libraries before the error:\n{text}", file=sys.stderr)
