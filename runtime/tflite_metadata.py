"""Read and add named metadata entries of a ``.tflite`` file, in pure Python (no torch, no TF).

A TFLite file is a FlatBuffer whose root ``Model`` table lists ``metadata`` entries
(``Metadata{name, buffer}``); each entry's bytes live in ``Model.buffers[buffer].data``.
edgeseg stores :meth:`ModelMetadata.to_json` under the name ``"edgeseg"``.

Adding entries without the generated TFLite schema: FlatBuffer offsets are relative and point
forward, so the old file is kept byte for byte at an aligned offset and a new root ``Model``
table (plus new ``buffers``/``metadata`` vectors and the new entries) is written *in front* of
it. Every old table, tensor and weight buffer is reused as is.

Schema field numbers used here (tensorflow/lite/schema/schema.fbs):
    Model:    0 version, 1 operator_codes, 2 subgraphs, 3 description, 4 buffers,
              5 metadata_buffer, 6 metadata, 7 signature_defs
    Buffer:   0 data [ubyte] (force_align 16), 1 offset ulong, 2 size ulong
    Metadata: 0 name string, 1 buffer uint
"""

from __future__ import annotations

import struct

FILE_IDENTIFIER = b"TFL3"
_MODEL_FIELDS = 8
_MODEL_VERSION, _MODEL_BUFFERS, _MODEL_METADATA = 0, 4, 6
# Old bytes move by a multiple of this, so every aligned weight buffer stays aligned.
_SHIFT_ALIGN = 64


class TFLiteMetadataError(ValueError):
    """The bytes are not a TFLite FlatBuffer this module can read or extend."""


# --- reading ---------------------------------------------------------------------------------
def _u32(data: bytes, pos: int) -> int:
    return struct.unpack_from("<I", data, pos)[0]


def _field_pos(data: bytes, table: int, field: int) -> int | None:
    """Absolute position of a table field, or None when the field is absent."""
    vtable = table - struct.unpack_from("<i", data, table)[0]
    vtable_size = struct.unpack_from("<H", data, vtable)[0]
    entry = 4 + 2 * field
    if entry + 2 > vtable_size:
        return None
    offset = struct.unpack_from("<H", data, vtable + entry)[0]
    return table + offset if offset else None


def _deref(data: bytes, pos: int) -> int:
    return pos + _u32(data, pos)


def _table_vector(data: bytes, table: int, field: int) -> list[int]:
    """Positions of the tables in a vector-of-tables field (empty when absent)."""
    pos = _field_pos(data, table, field)
    if pos is None:
        return []
    vec = _deref(data, pos)
    return [_deref(data, vec + 4 + 4 * i) for i in range(_u32(data, vec))]


def _string(data: bytes, table: int, field: int) -> str | None:
    pos = _field_pos(data, table, field)
    if pos is None:
        return None
    start = _deref(data, pos)
    return data[start + 4 : start + 4 + _u32(data, start)].decode("utf-8")


def _root(data: bytes) -> int:
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise TFLiteMetadataError(
            "not a TFLite file: the FlatBuffer identifier 'TFL3' is missing at bytes 4..8; "
            "check that the path points to a .tflite model"
        )
    root = _u32(data, 0)
    if not 8 <= root < len(data):
        raise TFLiteMetadataError("TFLite file is truncated or corrupt: root offset out of range")
    return root


def _buffer_bytes(data: bytes, buffer_table: int) -> bytes:
    pos = _field_pos(data, buffer_table, 0)
    if pos is not None:
        vec = _deref(data, pos)
        return bytes(data[vec + 4 : vec + 4 + _u32(data, vec)])
    # Large models keep buffers outside the FlatBuffer: an absolute (offset, size) in the file.
    offset_pos, size_pos = _field_pos(data, buffer_table, 1), _field_pos(data, buffer_table, 2)
    if offset_pos is not None and size_pos is not None:
        offset = struct.unpack_from("<Q", data, offset_pos)[0]
        size = struct.unpack_from("<Q", data, size_pos)[0]
        return bytes(data[offset : offset + size])
    return b""


def read_tflite_metadata(data: bytes) -> dict[str, bytes]:
    """Every named metadata entry of a TFLite model: ``{name: bytes}``."""
    data = bytes(data)
    model = _root(data)
    buffers = _table_vector(data, model, _MODEL_BUFFERS)
    entries: dict[str, bytes] = {}
    for meta in _table_vector(data, model, _MODEL_METADATA):
        name = _string(data, meta, 0) or ""
        index_pos = _field_pos(data, meta, 1)
        index = _u32(data, index_pos) if index_pos is not None else 0
        if index >= len(buffers):
            raise TFLiteMetadataError(
                f"metadata entry {name!r} points to buffer {index} but the model has "
                f"{len(buffers)} buffers; the file is corrupt"
            )
        entries[name] = _buffer_bytes(data, buffers[index])
    return entries


# --- writing ---------------------------------------------------------------------------------
class _Front:
    """The bytes written in front of the old file, with absolute positions."""

    def __init__(self) -> None:
        self.buf = bytearray(8)  # root offset + file identifier, filled in last

    def align(self, n: int) -> None:
        self.buf.extend(b"\0" * (-len(self.buf) % n))

    def put(self, raw: bytes) -> int:
        pos = len(self.buf)
        self.buf.extend(raw)
        return pos


def _vtable_with_table(front: _Front, field_sizes: list[int]) -> tuple[int, list[int | None]]:
    """Reserve a vtable + table whose fields are all 4- or 8-byte slots (0 = absent field).

    Returns the table position and each field's absolute position (None when absent).
    """
    front.align(4)
    offsets, size = [], 4
    for s in field_sizes:
        if s:
            size += -size % s
            offsets.append(size)
            size += s
        else:
            offsets.append(0)
    size += -size % 8 if 8 in field_sizes else 0
    vtable = front.put(struct.pack(f"<HH{len(offsets)}H", 4 + 2 * len(offsets), size, *offsets))
    front.align(8)
    table = front.put(b"\0" * size)
    struct.pack_into("<i", front.buf, table, table - vtable)
    return table, [table + o if o else None for o in offsets]


def _set_uoffset(front: _Front, at: int, target: int) -> None:
    if target <= at:
        raise AssertionError("FlatBuffer offsets must point forward")
    struct.pack_into("<I", front.buf, at, target - at)


def add_tflite_metadata(data: bytes, entries: dict[str, bytes]) -> bytes:
    """A copy of the TFLite model ``data`` with ``entries`` added as named metadata.

    An existing entry with the same name is replaced. The graph, tensors and weights are
    untouched (the old FlatBuffer is kept whole behind the new root table); buffers stored
    after the FlatBuffer (``Buffer.offset``) get their offsets moved by the same shift.
    """
    data = bytes(data)
    model = _root(data)
    for name, value in entries.items():
        if not isinstance(name, str) or not name:
            raise TFLiteMetadataError(f"metadata name {name!r} must be a non-empty string")
        if not isinstance(value, (bytes, bytearray)):
            raise TFLiteMetadataError(
                f"metadata {name!r} must be bytes, got {type(value).__name__}; encode text "
                "with .encode('utf-8')"
            )
    old_buffers = _table_vector(data, model, _MODEL_BUFFERS)
    old_meta = [m for m in _table_vector(data, model, _MODEL_METADATA) if _string(data, m, 0) not in entries]

    # Plan the front: sizes first, then fill in once the old file's shift is known.
    front = _Front()
    model_table, model_fields = _vtable_with_table(front, [4] * _MODEL_FIELDS)
    front.align(4)
    buffers_vec = front.put(struct.pack("<I", len(old_buffers) + len(entries)) + b"\0" * 4 * (len(old_buffers) + len(entries)))
    meta_vec = front.put(struct.pack("<I", len(old_meta) + len(entries)) + b"\0" * 4 * (len(old_meta) + len(entries)))
    # Buffers kept after the FlatBuffer are addressed by absolute file offset: they get a new
    # Buffer table whose offset is moved by the shift (filled in below, once it is known).
    outside = {}
    for i, b in enumerate(old_buffers):
        offset_pos, size_pos = _field_pos(data, b, 1), _field_pos(data, b, 2)
        if offset_pos is not None and struct.unpack_from("<Q", data, offset_pos)[0] > 1:
            table, (_, offset_field, size_field) = _vtable_with_table(front, [0, 8, 8])
            outside[i] = (table, offset_field, struct.unpack_from("<Q", data, offset_pos)[0])
            struct.pack_into("<Q", front.buf, size_field, struct.unpack_from("<Q", data, size_pos)[0])
    new_buffer_tables, new_meta_tables = [], []
    for i, (name, value) in enumerate(entries.items()):
        table, (data_field,) = _vtable_with_table(front, [4])
        front.align(16)
        front.buf.extend(b"\0" * 12)  # the length prefix sits just before the 16-aligned bytes
        vec = front.put(struct.pack("<I", len(value)) + bytes(value))
        _set_uoffset(front, data_field, vec)
        new_buffer_tables.append(table)
        table, (name_field, index_field) = _vtable_with_table(front, [4, 4])
        front.align(4)
        string = front.put(struct.pack("<I", len(name.encode())) + name.encode() + b"\0")
        _set_uoffset(front, name_field, string)
        struct.pack_into("<I", front.buf, index_field, len(old_buffers) + i)
        new_meta_tables.append(table)
    front.align(_SHIFT_ALIGN)
    shift = len(front.buf)

    def old(pos: int) -> int:
        return shift + pos

    # Root Model table: copy the old fields, repointing offsets at the old objects.
    for field, at in enumerate(model_fields):
        old_pos = _field_pos(data, model, field)
        if field == _MODEL_BUFFERS:
            _set_uoffset(front, at, buffers_vec)
        elif field == _MODEL_METADATA:
            _set_uoffset(front, at, meta_vec)
        elif old_pos is None:
            struct.pack_into("<H", front.buf, model_table - struct.unpack_from("<i", front.buf, model_table)[0] + 4 + 2 * field, 0)
        elif field == _MODEL_VERSION:
            struct.pack_into("<I", front.buf, at, _u32(data, old_pos))
        else:
            _set_uoffset(front, at, old(_deref(data, old_pos)))
    for table, offset_field, offset in outside.values():
        struct.pack_into("<Q", front.buf, offset_field, offset + shift)
    kept = [outside[i][0] if i in outside else old(b) for i, b in enumerate(old_buffers)]
    for i, table in enumerate(kept + new_buffer_tables):
        _set_uoffset(front, buffers_vec + 4 + 4 * i, table)
    for i, table in enumerate([old(m) for m in old_meta] + new_meta_tables):
        _set_uoffset(front, meta_vec + 4 + 4 * i, table)
    struct.pack_into("<I", front.buf, 0, model_table)
    front.buf[4:8] = FILE_IDENTIFIER
    return bytes(front.buf) + data
