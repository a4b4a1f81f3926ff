"""Opening the files under test: status on failure, size on disk, what backend runs them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.validate.gates import CANNOT_RUN_HERE, FAILED_TO_LOAD


def file_size(path: Path) -> int:
    """Bytes on disk of a model file with its companions (OpenVINO .bin, a .mlpackage folder)."""
    from edgeseg.runtime.formats import by_suffix

    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    if not path.is_file():
        return 0
    fmt = by_suffix(path.suffix)
    companions = [path.with_suffix(s) for s in (fmt.companions if fmt else ())]
    return path.stat().st_size + sum(c.stat().st_size for c in companions if c.is_file())


def backend_of(path: Path, forced: str | None = None) -> str | None:
    from edgeseg.runtime.formats import by_suffix

    fmt = by_suffix(path.suffix)
    return forced or (fmt.backend_name if fmt else None)


@dataclass
class Opened:
    """A file opened for scoring, or why it could not be (``session`` is None then)."""

    path: Path
    session: object | None
    status: str | None  # None when it loaded
    reason: str = ""


def open_file(path: str | Path, threads: int | None, backend: str | None = None, device: str | None = None) -> Opened:
    """``edgeseg.runtime.load`` with its failures turned into a status instead of an exception.

    ``backend`` forces the runtime backend, for a file whose name does not say its format (a
    temporary file mid-conversion); None picks it from the suffix. ``device``: ``load(device=...)``.

    A backend that cannot run on this machine (CoreML off macOS, a library not installed) is
    "cannot run here"; anything else that stops the file from loading is "failed to load".
    """
    from edgeseg.runtime import BackendUnavailableError, load

    path = Path(path)
    try:
        return Opened(path, load(path, backend=backend, threads=threads, device=device), None)
    except BackendUnavailableError as exc:
        return Opened(path, None, CANNOT_RUN_HERE, str(exc))
    except EdgesegError as exc:
        return Opened(path, None, FAILED_TO_LOAD, str(exc))
    except Exception as exc:  # a native library's own error on a broken file
        return Opened(path, None, FAILED_TO_LOAD, f"{type(exc).__name__}: {exc}")
