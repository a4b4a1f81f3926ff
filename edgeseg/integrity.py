"""A checksum of a converted file, recorded inside the file itself (torch-free: the runtime uses it).

A model file can be damaged after conversion (an interrupted copy, a flipped bit on an SD card,
a hand edit) and still parse: the backend then runs wrong weights and returns plausible, wrong
masks. So each converted file records the SHA-256 of its own bytes in its metadata:

1. the converter embeds ``checksum = PLACEHOLDER`` (the marker and 64 zeros) in the metadata;
2. after the file (and its companions, OpenVINO's ``.bin``) is written, :func:`stamp` hashes
   their bytes as they are, placeholder included, and writes the digest over the zeros. The
   digest is plain hex, the same length as the zeros, so the file format needs no change and
   the metadata stays valid JSON in every container (protobuf string, flatbuffer, XML attribute);
3. the runtime (:func:`verify`) finds the marker in the raw bytes before any native library
   parses them, puts the zeros back, hashes, and compares.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

MARKER = "edgeseg-sha256:"
PLACEHOLDER = MARKER + "0" * 64
_PATTERN = re.compile(re.escape(MARKER).encode() + rb"([0-9a-f]{64})")


class ChecksumError(ValueError):
    """The recorded checksum is missing, repeated or does not match the bytes."""


def _digest(main: bytes, companions: Sequence[Path]) -> str:
    sha = hashlib.sha256(main)
    for path in companions:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha.update(chunk)
    return sha.hexdigest()


def stamp(files: Sequence[Path]) -> str:
    """Write the checksum of ``files`` (main file first) over the placeholder in the main file;
    return the stamped metadata value."""
    main = Path(files[0])
    data = main.read_bytes()
    placeholder = PLACEHOLDER.encode()
    if data.count(placeholder) != 1:
        raise ChecksumError(
            f"{main.name} holds the checksum placeholder {data.count(placeholder)} times, not once; "
            "the exporter did not embed the metadata as written"
        )
    value = MARKER + _digest(data, files[1:])
    main.write_bytes(data.replace(placeholder, value.encode()))
    return value


def stamped(value: str | None) -> bool:
    """Whether a metadata ``checksum`` value is a real checksum: not absent, and not the
    placeholder of a file still being written (the int8 exporters gate their file before
    :func:`stamp` runs)."""
    return value is not None and value != PLACEHOLDER


def recorded(data: bytes) -> str | None:
    """The checksum value recorded in a file's bytes, or None if it records none."""
    found = _PATTERN.findall(data)
    if len(found) > 1:
        raise ChecksumError(f"the file records {len(found)} checksums, not one")
    value = MARKER + found[0].decode() if found else None
    return value if stamped(value) else None


def verify(data: bytes, companions: Sequence[Path] = ()) -> str | None:
    """Check a main file's bytes (and its companions) against the checksum recorded in them.

    Returns the recorded value when it matches, None when the file records no checksum (written
    before checksums, or not by edgeseg). Raises :class:`ChecksumError` when it does not match."""
    value = recorded(data)
    if value is None:
        return None
    blank = data.replace(value.encode(), PLACEHOLDER.encode())
    actual = _digest(blank, companions)
    if MARKER + actual != value:
        raise ChecksumError(
            f"the bytes do not match the checksum recorded at conversion (sha256 {actual[:12]}... "
            f"vs {value[len(MARKER):][:12]}...)"
        )
    return value
