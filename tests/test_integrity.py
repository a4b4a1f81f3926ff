"""The checksum a converted file records of itself (edgeseg.integrity), on files made here."""

from __future__ import annotations

import pytest

from edgeseg import integrity


def write_pair(tmp_path, body: bytes = b"weights" * 20):
    main = tmp_path / "model.xml"
    main.write_bytes(b"<net>" + body + b'<meta value="' + integrity.PLACEHOLDER.encode() + b'"/></net>')
    companion = tmp_path / "model.bin"
    companion.write_bytes(bytes(range(256)) * 3)
    return main, companion


def test_stamp_then_verify_round_trip(tmp_path):
    main, companion = write_pair(tmp_path)
    value = integrity.stamp([main, companion])
    assert value.startswith(integrity.MARKER) and value != integrity.PLACEHOLDER
    data = main.read_bytes()
    assert integrity.recorded(data) == value
    assert integrity.verify(data, [companion]) == value
    assert integrity.PLACEHOLDER.encode() not in data  # the zeros were overwritten, same length
    assert len(data) == len(main.read_bytes())


def test_every_single_byte_change_is_caught(tmp_path):
    main, companion = write_pair(tmp_path)
    value = integrity.stamp([main, companion])
    data = main.read_bytes()
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x01
        try:
            got = integrity.verify(bytes(damaged), [companion])
        except integrity.ChecksumError:
            continue
        # Only damage to the record itself hides it; the loader then refuses the file because
        # its parsed metadata still names a checksum (tests/test_runtime_convert.py).
        assert got is None, i
        assert data.index(value.encode()) <= i < data.index(value.encode()) + len(value), i
    companion.write_bytes(b"\x01" + companion.read_bytes()[1:])
    with pytest.raises(integrity.ChecksumError, match="do not match"):
        integrity.verify(data, [companion])


def test_stamp_needs_exactly_one_placeholder_and_verify_one_record(tmp_path):
    main = tmp_path / "model.onnx"
    main.write_bytes(b"no placeholder here")
    with pytest.raises(integrity.ChecksumError, match="0 times"):
        integrity.stamp([main])
    main.write_bytes(integrity.PLACEHOLDER.encode() * 2)
    with pytest.raises(integrity.ChecksumError, match="2 times"):
        integrity.stamp([main])
    assert integrity.verify(b"a file written before checksums") is None
    # A file still being written (the int8 exporters gate it before it is stamped) records none.
    assert integrity.verify(b"x" + integrity.PLACEHOLDER.encode() + b"y") is None
    assert not integrity.stamped(integrity.PLACEHOLDER) and not integrity.stamped(None)
    twice = (integrity.MARKER + "a" * 64 + integrity.MARKER + "b" * 64).encode()
    with pytest.raises(integrity.ChecksumError, match="2 checksums"):
        integrity.verify(twice)
