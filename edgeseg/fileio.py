"""Atomic writes: a file (or a directory such as ``.mlpackage``) appears complete or not at all.

Every writer in edgeseg goes through :func:`atomic_output`, so a crash, a Ctrl-C or a failed
conversion never leaves a truncated checkpoint or a half-written model file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(dest: str | os.PathLike[str], *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds.

    The temporary path lives in the same directory so the final ``os.replace`` is atomic on POSIX.
    On any exception the temporary file or directory is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    ensure_folder(dest.parent)
    remove_stale_temporaries(dest.parent)
    # A unique name that the writer creates itself, so the file gets the usual permissions
    # (umask), not mkstemp's owner-only 0600: a checkpoint must be readable by the device user.
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary path {tmp} for {dest}")
        if is_dir and dest.exists():
            # os.replace cannot replace a non-empty directory: move the old one aside first.
            old = dest.with_name(f".{dest.name}.old")
            _remove(old)
            os.replace(dest, old)
            os.replace(tmp, dest)
            _remove(old)
        else:
            _default_permissions(tmp)
            os.replace(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise


class OutputPathError(EdgesegError, OSError):
    """An output path that cannot be written: under a file, in a read-only folder, ..."""


def ensure_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and its parents) for writing, or raise an :class:`OutputPathError` that
    says why it cannot be: a file in the way, no permission, a read-only file system."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise OutputPathError(
            f"cannot write into {folder}: {blocker} is a file, not a folder; choose another output path"
        ) from exc
    except NotADirectoryError as exc:
        blocker = next((p for p in folder.parents if p.exists() and not p.is_dir()), folder)
        raise OutputPathError(
            f"cannot write into {folder}: {blocker} is a file, not a folder; choose another output path"
        ) from exc
    except OSError as exc:
        raise OutputPathError(f"cannot create the output folder {folder} ({exc.strerror or exc}); "
                              "choose a folder you can write to") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"the output folder {folder} is not writable; choose a folder you can write to")
    return folder


# Temporaries this module (and the OpenVINO converter's scratch folders) create: the pid of the
# writing process is in the name, so a later run can tell a killed writer's leftovers from a
# live writer's files and remove them.
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{12}\.tmp$|^\.ov-(\d+)-")
_cleaned: set[Path] = set()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process (or a pid this OS cannot signal): leave it alone
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of writers that were killed (SIGKILL, power loss) from ``folder``:
    hidden ``.NAME.<pid>.<hex>.tmp`` files and folders and ``.ov-<pid>-*`` scratch folders whose
    process no longer runs on this machine. Once per folder and process (cheap on big folders).
    Returns what was removed."""
    folder = Path(folder)
    key = folder.resolve()
    if key in _cleaned:
        return []
    _cleaned.add(key)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None:
            continue
        pid = int(match.group(1) or match.group(2))
        if not _pid_alive(pid):
            _remove(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def _default_permissions(path: Path) -> None:
    """Give a file the permissions of any new file (0666 minus the umask): some writers create
    theirs owner-only (safetensors' save_file writes 0600), which a device user cannot read."""
    mode = 0o666 & ~_umask()
    if path.is_file() and path.stat().st_mode & 0o777 != mode:
        os.chmod(path, mode)


def _umask() -> int:
    try:  # Linux reports it without changing it (os.umask must set it to read it: a race)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_outputs(*dests: str | os.PathLike[str]) -> Iterator[list[Path]]:
    """Like :func:`atomic_output` for files that belong together (OpenVINO ``.xml`` + ``.bin``).

    All temporaries are written first; the renames happen only after the block succeeds, the
    companion files first and the first-named file last, so a reader that finds the first file
    also finds the others.
    """
    with contextlib.ExitStack() as stack:
        # ExitStack leaves contexts last-entered first: the first-named file is renamed last.
        yield [stack.enter_context(atomic_output(d)) for d in dests]


def write_text_atomic(dest: str | os.PathLike[str], text: str) -> None:
    with atomic_output(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(dest: str | os.PathLike[str], data: Any) -> None:
    write_text_atomic(dest, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_results(folder: str | os.PathLike[str], name: str, record: Any, lines: list[str], *, echo: bool = True) -> None:
    """A measurement's record as ``NAME.json`` and its report as ``NAME.md`` in ``folder`` (each
    written atomically: a run stopped mid-write keeps the previous results), then the report on
    stdout unless ``echo`` is false."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / f"{name}.json", record)
    text = "\n".join(lines).rstrip("\n") + "\n"
    write_text_atomic(folder / f"{name}.md", text)
    if echo:
        print(text, end="")
