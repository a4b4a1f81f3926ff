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

import io
import struct
import zipfile
from dataclasses import dataclass

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


# --- the standard TFLite Metadata (what MediaPipe Tasks and the TFLite Task Library read) -----
# The ``TFLITE_METADATA`` entry holds a ``ModelMetadata`` FlatBuffer (tflite-support's
# metadata_schema.fbs, file identifier "M001"); files it names (labels) are stored in a zip
# archive appended to the model. Field numbers used here:
#     ModelMetadata:     0 name, 1 description, 2 version, 3 subgraph_metadata, 4 author,
#                        5 license, 6 associated_files, 7 min_parser_version
#     SubGraphMetadata:  0 name, 1 description, 2 input_tensor_metadata, 3 output_tensor_metadata
#     TensorMetadata:    0 name, 1 description, 2 dimension_names, 3 content, 4 process_units,
#                        5 stats, 6 associated_files
#     Content:           0 content_properties_type, 1 content_properties, 2 range
#     ImageProperties:   0 color_space (1 = RGB), 1 default_size;  ImageSize: 0 width, 1 height
#     ProcessUnit:       0 options_type (1 = NormalizationOptions), 1 options
#     NormalizationOptions: 0 mean [float], 1 std [float];  Stats: 0 max [float], 1 min [float]
#     AssociatedFile:    0 name, 1 description, 2 type (2 = TENSOR_AXIS_LABELS), 3 locale, 4 version
STANDARD_KEY = "TFLITE_METADATA"
STANDARD_IDENTIFIER = b"M001"
# The oldest metadata parser that reads every field written here (name/description/version,
# image properties, normalization, stats, axis labels): the schema's first version.
MIN_PARSER_VERSION = "1.0.0"
_COLOR_RGB, _COLOR_GRAY = 1, 2
_CONTENT_IMAGE = 2
_UNIT_NORMALIZATION = 1
_FILE_AXIS_LABELS = 2


@dataclass(frozen=True)
class StandardOutput:
    """One output tensor in the standard metadata: its name, a description and its labels."""

    name: str
    description: str = ""
    labels: tuple[str, ...] = ()
    labels_file: str = ""  # the associated file the labels are stored in


@dataclass(frozen=True)
class StandardMetadata:
    """The fields of the standard TFLite ``ModelMetadata`` that edgeseg writes and reads."""

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    input_name: str = ""
    color_space: str = ""  # "RGB", "GRAYSCALE" or "" when the input declares no image properties
    image_size: tuple[int, int] | None = None  # (height, width) of ImageProperties.default_size
    # NormalizationOptions, in the input's own pixel range: tensor = (pixel - mean) / std.
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    outputs: tuple[StandardOutput, ...] = ()
    # MediaPipe's ImageSegmenter custom metadata ("SEGMENTER_METADATA"): the activation it applies
    # to the output for its confidence masks ("softmax", "sigmoid"; "" = none written).
    segmenter_activation: str = ""


# MediaPipe's image_segmenter_metadata_schema: ImageSegmenterOptions {0 activation (byte),
# 1 min_parser_version}, file identifier "V001", stored as SubGraphMetadata.custom_metadata
# (field 9: CustomMetadata {0 name, 1 data [ubyte]}) named "SEGMENTER_METADATA".
SEGMENTER_METADATA = "SEGMENTER_METADATA"
_SEGMENTER_ACTIVATIONS = {"": 0, "sigmoid": 1, "softmax": 2}


def _segmenter_options(activation: str) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(64)
    b.StartObject(1)
    b.PrependInt8Slot(0, _SEGMENTER_ACTIVATIONS[activation], 0)
    b.Finish(b.EndObject(), file_identifier=b"V001")
    return bytes(b.Output())


def build_standard_metadata(meta: StandardMetadata) -> bytes:
    """The ``ModelMetadata`` FlatBuffer of ``meta`` (written with Google's ``flatbuffers`` builder,
    which ai-edge-litert installs)."""
    import flatbuffers

    b = flatbuffers.Builder(1024)

    def string(text: str) -> int | None:
        return b.CreateString(text) if text else None

    def vector(offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    def floats(values) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(float(v))
        return b.EndVector()

    def table(fields: list[tuple[int, str, object]]) -> int:
        """fields: (slot, kind, value) with kind 'off' (an offset), 'u8', 'i8' or 'u32'."""
        count = max(slot for slot, _, _ in fields) + 1 if fields else 0
        b.StartObject(count)
        for slot, kind, value in fields:
            if value is None:
                continue
            if kind == "off":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "u8":
                b.PrependUint8Slot(slot, value, 0)
            elif kind == "i8":
                b.PrependInt8Slot(slot, value, 0)
            else:
                b.PrependUint32Slot(slot, value, 0)
        return b.EndObject()

    def labels_file(output: StandardOutput) -> int:
        name = string(output.labels_file)
        description = string("Class names of the segmentation output, one per line (line i = class i).")
        return table([(0, "off", name), (1, "off", description), (2, "i8", _FILE_AXIS_LABELS)])

    # Input tensor: image properties + normalization.
    content = None
    if meta.color_space:
        size = None
        if meta.image_size is not None:
            size = table([(0, "u32", int(meta.image_size[1])), (1, "u32", int(meta.image_size[0]))])
        colour = _COLOR_RGB if meta.color_space == "RGB" else _COLOR_GRAY
        props = table([(0, "i8", colour), (1, "off", size)])
        content = table([(0, "u8", _CONTENT_IMAGE), (1, "off", props)])
    units = None
    stats = None
    if meta.mean:
        norm = table([(0, "off", floats(meta.mean)), (1, "off", floats(meta.std))])
        units = vector([table([(0, "u8", _UNIT_NORMALIZATION), (1, "off", norm)])])
        # The tensor's value range for pixels 0..255, per channel.
        lows = [(0.0 - m) / s for m, s in zip(meta.mean, meta.std)]
        highs = [(255.0 - m) / s for m, s in zip(meta.mean, meta.std)]
        stats = table([(0, "off", floats(highs)), (1, "off", floats(lows))])
    input_tensor = table([
        (0, "off", string(meta.input_name)),
        (1, "off", string("Input image: RGB pixels 0..255, normalized as NormalizationOptions says.")),
        (3, "off", content), (4, "off", units), (5, "off", stats),
    ])
    outputs = []
    for output in meta.outputs:
        files = vector([labels_file(output)]) if output.labels_file else None
        outputs.append(table([
            (0, "off", string(output.name)), (1, "off", string(output.description)), (6, "off", files),
        ]))
    custom = None
    if meta.segmenter_activation:
        data = b.CreateByteVector(_segmenter_options(meta.segmenter_activation))
        custom = vector([table([(0, "off", string(SEGMENTER_METADATA)), (1, "off", data)])])
    subgraph = table([(2, "off", vector([input_tensor])), (3, "off", vector(outputs)), (9, "off", custom)])
    root = table([
        (0, "off", string(meta.name)), (1, "off", string(meta.description)), (2, "off", string(meta.version)),
        (3, "off", vector([subgraph])), (4, "off", string(meta.author)),
        (7, "off", string(MIN_PARSER_VERSION)),
    ])
    b.Finish(root, file_identifier=STANDARD_IDENTIFIER)
    return bytes(b.Output())


def add_associated_files(data: bytes, files: dict[str, bytes]) -> bytes:
    """The model bytes with ``files`` in a zip archive appended (how the standard metadata packs
    its associated files: the .tflite stays a valid model and is also a zip archive)."""
    buffer = io.BytesIO()
    buffer.write(bytes(data))
    # Stored, not deflated: readers on devices map the labels straight out of the file.
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # same bytes every run
            archive.writestr(info, content)
    return buffer.getvalue()


def read_associated_files(data: bytes) -> dict[str, bytes]:
    """The files of the zip archive appended to a model ({} when there is none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        return {}


def _floats(data: bytes, table: int, field: int) -> tuple[float, ...]:
    pos = _field_pos(data, table, field)
    if pos is None:
        return ()
    vec = _deref(data, pos)
    return struct.unpack_from(f"<{_u32(data, vec)}f", data, vec + 4)


def _scalar(data: bytes, table: int, field: int, fmt: str, default: int = 0) -> int:
    pos = _field_pos(data, table, field)
    return struct.unpack_from(fmt, data, pos)[0] if pos is not None else default


def _table(data: bytes, table: int, field: int) -> int | None:
    pos = _field_pos(data, table, field)
    return _deref(data, pos) if pos is not None else None


def read_standard_metadata(data: bytes) -> StandardMetadata | None:
    """The standard ``ModelMetadata`` of a TFLite model (labels read from its associated files),
    or None when the file has no ``TFLITE_METADATA`` entry."""
    buf = read_tflite_metadata(data).get(STANDARD_KEY)
    if buf is None:
        return None
    if len(buf) < 8 or buf[4:8] != STANDARD_IDENTIFIER:
        raise TFLiteMetadataError(
            f"the {STANDARD_KEY} entry is not a ModelMetadata FlatBuffer (identifier "
            f"{bytes(buf[4:8])!r}, expected {STANDARD_IDENTIFIER!r}); write the metadata again"
        )
    try:
        return _parse_standard(buf, read_associated_files(data))
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise TFLiteMetadataError(f"the {STANDARD_KEY} entry is truncated or corrupt ({exc})") from exc


def _parse_standard(buf: bytes, files: dict[str, bytes]) -> StandardMetadata:
    root = _u32(buf, 0)
    subgraphs = _table_vector(buf, root, 3)
    fields: dict = {
        "name": _string(buf, root, 0) or "",
        "description": _string(buf, root, 1) or "",
        "version": _string(buf, root, 2) or "",
        "author": _string(buf, root, 4) or "",
    }
    if not subgraphs:
        return StandardMetadata(**fields)
    inputs = _table_vector(buf, subgraphs[0], 2)
    if inputs:
        tensor = inputs[0]
        fields["input_name"] = _string(buf, tensor, 0) or ""
        content = _table(buf, tensor, 3)
        if content is not None and _scalar(buf, content, 0, "<B") == _CONTENT_IMAGE:
            props = _table(buf, content, 1)
            if props is not None:
                colour = _scalar(buf, props, 0, "<b")
                fields["color_space"] = {_COLOR_RGB: "RGB", _COLOR_GRAY: "GRAYSCALE"}.get(colour, "UNKNOWN")
                size = _table(buf, props, 1)
                if size is not None:
                    w, h = _scalar(buf, size, 0, "<I"), _scalar(buf, size, 1, "<I")
                    fields["image_size"] = (h, w) if h and w else None
        for unit in _table_vector(buf, tensor, 4):
            if _scalar(buf, unit, 0, "<B") == _UNIT_NORMALIZATION:
                options = _table(buf, unit, 1)
                if options is not None:
                    fields["mean"], fields["std"] = _floats(buf, options, 0), _floats(buf, options, 1)
    outputs = []
    for tensor in _table_vector(buf, subgraphs[0], 3):
        labels, labels_file = (), ""
        for f in _table_vector(buf, tensor, 6):
            if _scalar(buf, f, 2, "<b") == _FILE_AXIS_LABELS:
                labels_file = _string(buf, f, 0) or ""
                if labels_file not in files:
                    raise TFLiteMetadataError(
                        f"the metadata names the labels file {labels_file!r}, which the model's "
                        "zip archive does not hold; pack the file with the metadata again"
                    )
                text = files[labels_file].decode("utf-8")
                labels = tuple(line.strip() for line in text.splitlines() if line.strip())
                break
        outputs.append(StandardOutput(_string(buf, tensor, 0) or "", _string(buf, tensor, 1) or "",
                                      labels, labels_file))
    fields["outputs"] = tuple(outputs)
    return StandardMetadata(**fields)
