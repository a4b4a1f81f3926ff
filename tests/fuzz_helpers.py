"""Hostile inputs, generated: the cases of tests/test_fuzz_hostile.py (small budget) and
benchmarks/fuzz.py (large budget) come from here.

A *case* is a dict that names a file to open and what a correct outcome is; :func:`run_case` runs
it in the calling process and classifies the outcome:

- ``ran``: the file loaded and gave a mask that satisfies every invariant (the image's displayed
  size, an integer class mask whose ids the metadata names, colorize works);
- ``refused``: an edgeseg error (a typed error: the CLI shows ``error: ...`` and exits 2);
- ``traceback``: any other exception (a bug);
- ``wrong``: it ran, but an invariant failed, or a file whose checksum no longer matches its bytes
  ran at all, or a valid 8-bit image was refused (a silent wrong result).

:func:`run_in_workers` runs cases in subprocesses so that a native crash (``crash``) or a hang
(``hang``) is caught and the next case goes on in a fresh worker. Families:

- ``metadata``: hypothesis-generated edits of the edgeseg metadata JSON of ONNX, TFLite and
  OpenVINO files (no checksum: the metadata is all the runtime has to go on);
- ``checkpoint``: hypothesis-generated edits of a safetensors checkpoint's two headers;
- ``image``: hypothesis-generated image files (modes, bit depths, sizes, EXIF orientation,
  truncation, noise, decompression bombs, non-images) read the way ``edgeseg predict`` reads them;
- ``bytes``: truncated / zeroed / noised spans of every format, with and without a checksum.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

IMAGE = (48, 40)  # the image every model case predicts (height, width)
OUTCOMES = ("ran", "refused", "traceback", "wrong", "crash", "hang")
FAILURES = ("traceback", "wrong", "crash", "hang")


# --- files to start from -----------------------------------------------------------------------
def checksummed_copies(files: dict[str, Path], folder: Path) -> dict[str, Path]:
    """Copies of the ONNX, TFLite and OpenVINO test files that record the SHA-256 of their own
    bytes, as converted files do (edgeseg.integrity): ``onnx_sum``, ``tflite_sum``, ``openvino_sum``."""
    import onnx

    from edgeseg.integrity import PLACEHOLDER, stamp
    from edgeseg.runtime.tflite_metadata import add_tflite_metadata, read_tflite_metadata

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    if "onnx" in files:
        proto = onnx.load(str(files["onnx"]))
        for entry in proto.metadata_props:
            if entry.key == "edgeseg":
                entry.value = json.dumps({**json.loads(entry.value), "checksum": PLACEHOLDER})
        path = folder / "sum.onnx"
        onnx.save(proto, str(path))
        stamp([path])
        out["onnx_sum"] = path
    if "tflite" in files:
        data = files["tflite"].read_bytes()
        meta = json.loads(read_tflite_metadata(data)["edgeseg"])
        path = folder / "sum.tflite"
        path.write_bytes(add_tflite_metadata(data, {"edgeseg": json.dumps({**meta, "checksum": PLACEHOLDER}).encode()}))
        stamp([path])
        out["tflite_sum"] = path
    if "openvino" in files:
        xml = files["openvino"].read_text(encoding="utf-8")
        path = folder / "sum.xml"
        path.write_text(_replace_openvino_metadata(xml, lambda d: {**d, "checksum": PLACEHOLDER}), encoding="utf-8")
        bin_ = path.with_suffix(".bin")
        bin_.write_bytes(files["openvino"].with_suffix(".bin").read_bytes())
        stamp([path, bin_])
        out["openvino_sum"] = path
    return out


_OV_ENTRY = re.compile(r'(<edgeseg value=")([^"]*)(")')


def _xml_attr(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _xml_unattr(text: str) -> str:
    return text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _replace_openvino_metadata(xml: str, change) -> str:
    """The IR text with its edgeseg rt_info entry replaced by ``change(old dict)`` (a dict, or a
    str written as it is)."""
    def edit(match):
        new = change(json.loads(_xml_unattr(match.group(2))))
        return match.group(1) + _xml_attr(new if isinstance(new, str) else json.dumps(new)) + match.group(3)

    text, count = _OV_ENTRY.subn(edit, xml, count=1)  # the top-level entry (the runtime's); IRs
    # converted from ONNX keep a copy of the ONNX metadata under <framework> as well
    assert count >= 1, "no edgeseg entry in the IR"
    return text


# --- JSON values and metadata edits --------------------------------------------------------------
_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1e-300, -1.0, 1e308, math.nan, math.inf, -math.inf])
_INTS = st.integers(-(2**63), 2**63) | st.sampled_from([0, 1, -1, 3, 255, 256, 65535, 65536, 65537, 8192, 8193,
                                                         100000, 10**9, 2**31, 2**64])
_TEXT = st.text(max_size=12) | st.sampled_from(
    ["", "nchw", "nhwc", "NCHW", "stretch", "letterbox", "fp32", "int8", "logits", "mask", "city",
     "<script>alert(1)</script>", "a|b\nc", "../../x", "\x00", "\ud7ff", "x" * 300])
_SCALARS = st.none() | st.booleans() | _INTS | _FLOATS | _TEXT
JSON_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_TEXT, inner, max_size=4), max_leaves=12
)


def _lists_of(element, *sizes):
    return st.one_of(st.lists(element, min_size=s, max_size=s) for s in sizes)


# Values aimed at each metadata field: the edges of its type and range, and what another type gives.
FIELD_VALUES = {
    "model": _TEXT | JSON_VALUES,
    "classes": _lists_of(_TEXT, 0, 1, 2, 4, 9) | st.builds(lambda n: [f"c{i}" for i in range(n)],
                                                          st.sampled_from([3, 5, 256, 257, 70000]))
    | _TEXT | JSON_VALUES,
    "palette": _lists_of(_lists_of(_INTS, 3), 0, 1, 4) | JSON_VALUES,
    "mean": _lists_of(_FLOATS | _INTS, 2, 3, 4) | JSON_VALUES,
    "std": _lists_of(_FLOATS | _INTS, 3) | JSON_VALUES,
    "input_size": _lists_of(_INTS, 1, 2, 3) | _lists_of(_FLOATS, 2) | JSON_VALUES,
    "layout": _TEXT | JSON_VALUES,
    "resize": _TEXT | JSON_VALUES,
    "precision": _TEXT | JSON_VALUES,
    "include_preprocess": _SCALARS,
    "argmax": _SCALARS,
    "domain": _TEXT | JSON_VALUES,
    "domains": st.lists(st.fixed_dictionaries({"name": _TEXT, "classes": _lists_of(_TEXT, 0, 2, 4),
                                                "palette": _lists_of(_lists_of(_INTS, 3), 2, 4)}), max_size=3)
    | JSON_VALUES,
    "output_names": st.dictionaries(_TEXT, _TEXT | JSON_VALUES, max_size=3) | JSON_VALUES,
    "edgeseg_version": _TEXT | JSON_VALUES,
    "checksum": _TEXT | JSON_VALUES,
    "extra": JSON_VALUES,
    "schema_version": _INTS | _TEXT | _FLOATS,
}


@st.composite
def metadata_edits(draw):
    """A list of edits of a metadata dict: set a field, delete it, or add an unknown one; or a
    whole replacement of the JSON text (not JSON, another JSON type, bytes that are not UTF-8)."""
    if draw(st.integers(0, 9)) == 0:
        whole = draw(st.sampled_from(["not json", "list", "truncated", "non-utf8", "empty", "random"]))
        return [("whole", whole, draw(JSON_VALUES))]
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "set", "set", "delete", "unknown"]))
        field = draw(st.sampled_from(sorted(FIELD_VALUES)))
        if op == "set":
            edits.append(("set", field, draw(FIELD_VALUES[field])))
        elif op == "delete":
            edits.append(("delete", field, None))
        else:
            edits.append(("set", "x_" + draw(_TEXT), draw(JSON_VALUES)))
    return edits


def apply_edits(text: str, edits) -> str | bytes:
    """The metadata JSON text after ``edits`` (str, or bytes where an edit makes it non-UTF-8)."""
    if edits and edits[0][0] == "whole":
        _, whole, value = edits[0]
        return {
            "not json": text[: len(text) // 2] + "}{",
            "list": json.dumps([json.loads(text)]),
            "truncated": text[: len(text) // 3],
            "non-utf8": text.encode()[:20] + b"\xff\xfe\xc3" + text.encode()[20:],
            "empty": "",
            "random": json.dumps(value, allow_nan=True),
        }[whole]
    data = json.loads(text)
    for op, field, value in edits:
        if op == "set":
            data[field] = value
        else:
            data.pop(field, None)
    return json.dumps(data, allow_nan=True)


def _ascii_marker(data: bytes) -> str:
    """An ASCII stand-in of the same byte length (bytes >= 0x80 as "?"), for text that must be
    written through an API that insists on UTF-8 and then patched back to ``data``."""
    return bytes(b if b < 0x80 else 0x3F for b in data).decode("ascii")


def write_metadata_case(source: Path, edits, dest: Path) -> Path:
    """A copy of the ONNX / TFLite / OpenVINO file ``source`` with its metadata edited."""
    suffix = source.suffix
    if suffix == ".onnx":
        import onnx

        proto = onnx.load(str(source))
        new: str | bytes = ""
        for entry in proto.metadata_props:
            if entry.key == "edgeseg":
                new = apply_edits(entry.value, edits)
                entry.value = new if isinstance(new, str) else _ascii_marker(new)
        data = proto.SerializeToString()
        if isinstance(new, bytes):  # same byte length: the protobuf length prefixes still hold
            data = data.replace(_ascii_marker(new).encode(), new, 1)
        dest.write_bytes(data)
    elif suffix == ".tflite":
        from edgeseg.runtime.tflite_metadata import add_tflite_metadata, read_tflite_metadata

        raw = source.read_bytes()
        new = apply_edits(read_tflite_metadata(raw)["edgeseg"].decode(), edits)
        dest.write_bytes(add_tflite_metadata(raw, {"edgeseg": new if isinstance(new, bytes) else new.encode()}))
    else:  # OpenVINO IR: the XML attribute (bytes that are not UTF-8 go in as they are)
        xml = source.read_text(encoding="utf-8")
        holder: dict = {}

        def change(old):
            holder["new"] = new = apply_edits(json.dumps(old), edits)
            return new if isinstance(new, str) else _ascii_marker(new)

        text = _replace_openvino_metadata(xml, change).encode()
        new = holder.get("new")
        if isinstance(new, bytes):
            escaped = _xml_attr(new.decode("latin-1")).encode("latin-1")
            text = text.replace(_xml_attr(_ascii_marker(new)).encode(), escaped)
        dest.write_bytes(text)
        dest.with_suffix(".bin").write_bytes(source.with_suffix(".bin").read_bytes())
    return dest


# --- checkpoint headers ------------------------------------------------------------------------
HEADER_VALUES = {
    "format_version": _INTS | _TEXT | _FLOATS | JSON_VALUES,
    "model": _TEXT | st.sampled_from(["lraspp_mobilenetv3_small", "segformer_b0", "nope"]) | JSON_VALUES,
    "build_config": st.dictionaries(
        st.sampled_from(["num_classes", "width_mult", "inter_channels", "depths", "metadata", "bogus"]),
        _INTS | _FLOATS | JSON_VALUES, max_size=3) | JSON_VALUES,
    "extra": JSON_VALUES,
}


@st.composite
def checkpoint_edits(draw):
    """(which header, edits): the build header (``edgeseg.checkpoint``) or the metadata."""
    if draw(st.booleans()):
        return "metadata", draw(metadata_edits())
    if draw(st.integers(0, 9)) == 0:
        return "header", [("whole", draw(st.sampled_from(["not json", "list", "truncated", "empty", "random"])),
                           draw(JSON_VALUES))]
    edits = []
    for _ in range(draw(st.integers(1, 2))):
        field = draw(st.sampled_from(sorted(HEADER_VALUES)))
        if field == "build_config" and draw(st.booleans()):  # one option of the real config
            key = draw(st.sampled_from(["num_classes", "width_mult", "inter_channels"]))
            edits.append(("option", key, draw(_INTS | _FLOATS | JSON_VALUES)))
        elif draw(st.integers(0, 4)) == 0:
            edits.append(("delete", field, None))
        else:
            edits.append(("set", field, draw(HEADER_VALUES[field])))
    return "header", edits


def write_checkpoint_case(source: Path, which: str, edits, dest: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), "pt") as f:
        meta = dict(f.metadata())
    key = "edgeseg" if which == "metadata" else "edgeseg.checkpoint"
    if which == "header" and edits[0][0] == "option":
        header = json.loads(meta[key])
        for _, option, value in edits:
            header["build_config"][option] = value
        meta[key] = json.dumps(header, allow_nan=True)
    else:
        plain = [e for e in edits if e[0] != "option"]
        new = apply_edits(meta[key], plain)
        meta[key] = new.decode("utf-8", "replace") if isinstance(new, bytes) else new
    save_file(load_file(str(source)), str(dest), metadata=meta)
    return dest


# --- image files -------------------------------------------------------------------------------
MODES = ["RGB", "L", "P", "RGBA", "LA", "1", "I;16", "I", "F", "CMYK"]


@st.composite
def image_files(draw):
    """(bytes, suffix, expectation) of an image file. ``expectation``: ``shape`` the mask must
    have if it is accepted (the displayed size), ``must_accept`` (a plain 8-bit image), ``rgb``
    the exact pixels a lossless 8-bit RGB file must decode to (else None)."""
    from PIL import Image

    kind = draw(st.sampled_from(["valid", "valid", "valid", "exif", "truncated", "noise", "bomb", "not_image",
                                 "flipped"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if kind == "not_image":
        data = draw(st.binary(max_size=200)) or b"x"
        return data, draw(st.sampled_from([".png", ".jpg", ".bmp", ".tif"])), {"shape": None, "must_accept": False}
    if kind == "bomb":  # a small file that declares (or inflates to) a huge image
        side = draw(st.sampled_from([12000, 20000, 40000, 65000, 2**31 - 1]))
        return _png_bomb(side, full=draw(st.booleans())), ".png", {"shape": None, "must_accept": False}
    mode = draw(st.sampled_from(MODES))
    h, w = draw(st.integers(1, 90)), draw(st.integers(1, 90))
    fmt = draw(st.sampled_from(["PNG", "PNG", "JPEG", "BMP", "TIFF", "WEBP"]))
    if fmt == "JPEG" and mode not in ("RGB", "L", "CMYK"):
        fmt = "PNG"
    if fmt in ("BMP", "WEBP") and mode not in ("RGB", "L", "P", "RGBA", "1"):
        fmt = "PNG"
    if fmt == "PNG" and mode in ("CMYK", "F", "I"):
        fmt = "TIFF"
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if mode == "RGB":
        image = Image.fromarray(rgb)
    elif mode in ("I;16", "I"):  # Pillow picks the mode from the dtype: uint16 -> I;16, int32 -> I
        values = rng.integers(0, 65536, (h, w))
        image = Image.fromarray(values.astype(np.uint16 if mode == "I;16" else np.int32))
    elif mode == "F":
        image = Image.fromarray(rng.random((h, w), dtype=np.float32))
    else:
        image = Image.fromarray(rgb).convert(mode)
    buffer = io.BytesIO()
    exif_orientation = 1
    save_kwargs = {}
    if kind == "exif" and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        exif_orientation = draw(st.integers(1, 8))
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        save_kwargs["exif"] = exif.tobytes()
    for fmt in dict.fromkeys([fmt, "PNG", "TIFF"]):  # the drawn format, else one that takes the mode
        try:
            buffer = io.BytesIO()
            image.save(buffer, format=fmt, **save_kwargs)
            break
        except (OSError, ValueError, KeyError):
            save_kwargs = {}
            exif_orientation = 1
    data = buffer.getvalue()
    suffix = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}[fmt]
    shape = (w, h) if exif_orientation in (5, 6, 7, 8) else (h, w)
    lossless_rgb = mode == "RGB" and fmt in ("PNG", "BMP", "TIFF") and exif_orientation == 1
    expectation = {
        "shape": list(shape),
        # 8-bit images of at least the runtime's smallest side: every reader must take them.
        "must_accept": mode in ("RGB", "L", "P", "RGBA", "LA", "1") and min(h, w) >= 8 and kind != "flipped",
        "rgb": rgb.tolist() if lossless_rgb and kind == "valid" and h * w <= 400 else None,
    }
    if kind == "truncated":
        data = data[: int(len(data) * draw(st.floats(0.0, 0.95)))]
        expectation["must_accept"] = False
    elif kind == "noise" or kind == "flipped":
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, max(0, len(data) - 1)))
            data[at] = draw(st.integers(0, 255))
        data = bytes(data)
        expectation["must_accept"] = False
        expectation["rgb"] = None
        expectation["shape"] = None  # a flipped byte may change the declared size
    return data, suffix, expectation


_BOMBS: dict = {}


def _png_bomb(side: int, *, full: bool) -> bytes:
    """A side x side 8-bit grayscale PNG of zeros: ``full`` holds every row (zlib shrinks them
    ~1000x: a decompression bomb), otherwise one row only (a header that lies about the size)."""
    import struct
    import zlib

    key = (side, full and side <= 20000)
    if key not in _BOMBS:
        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        rows = side if key[1] else 1
        compressor = zlib.compressobj(9)
        row = bytes(side + 1)
        body = b"".join(compressor.compress(row) for _ in range(rows)) + compressor.flush()
        _BOMBS[key] = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                       + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return _BOMBS[key]


# --- byte damage -------------------------------------------------------------------------------
def corrupt(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Truncate, zero, overwrite with noise, or flip bits in a random span of ``data``; say which."""
    kind = rng.choice(["truncate", "zero", "noise", "flip"])
    # Half the damage lands in the first 4 KiB, where the headers and tables are.
    at = int(rng.integers(0, min(len(data), 4096) if rng.random() < 0.5 else len(data)))
    length = int(rng.integers(1, 65))
    if kind == "truncate":
        return data[:at], f"truncate at {at}"
    if kind == "flip":
        out = bytearray(data)
        for i in range(at, min(len(out), at + length)):
            out[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(out), f"flip bits in {length} bytes at {at}"
    span = bytes(length) if kind == "zero" else rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    return data[:at] + span + data[at + length :], f"{kind} {length} bytes at {at}"


def write_bytes_case(source: Path, rng: np.random.Generator, dest: Path) -> tuple[Path, str, bool]:
    """A damaged copy of ``source`` (for OpenVINO: of its .xml or its .bin, in turn).
    Returns (path, what was done, whether any byte changed)."""
    if source.suffix == ".xml":
        xml, bin_ = source.read_bytes(), source.with_suffix(".bin").read_bytes()
        if rng.random() < 0.5:
            new, what = corrupt(bin_, rng)
            changed, what = new != bin_, "bin: " + what
            bin_ = new
        else:
            new, what = corrupt(xml, rng)
            changed, what = new != xml, "xml: " + what
            xml = new
        dest.write_bytes(xml)
        dest.with_suffix(".bin").write_bytes(bin_)
        return dest, what, changed
    data = source.read_bytes()
    new, what = corrupt(data, rng)
    dest.write_bytes(new)
    return dest, what, new != data


# --- running a case ----------------------------------------------------------------------------
def run_case(case: dict) -> tuple[str, str]:
    """Run one case here; return (outcome, detail). See the module docstring for outcomes."""
    import warnings

    from edgeseg.errors import EdgesegError

    warnings.simplefilter("ignore")
    try:
        if case["kind"] == "image":
            return _run_image(case)
        return _run_model(case)
    except EdgesegError as exc:
        if case.get("must_accept"):
            return "wrong", f"a valid image was refused: {type(exc).__name__}: {str(exc)[:300]}"
        return "refused", f"{type(exc).__name__}: {str(exc)[:300]}"
    except Exception as exc:  # noqa: BLE001 (the bug this harness looks for)
        return "traceback", f"{type(exc).__name__}: {str(exc)[:300]}"


def _run_model(case: dict) -> tuple[str, str]:
    import edgeseg.runtime as rt

    seg = rt.load(case["path"], threads=1)
    domain = seg.domains[0] if seg.domains else None
    image = np.random.default_rng(0).integers(0, 256, (*IMAGE, 3), dtype=np.uint8)
    mask = seg.predict(image, domain=domain)
    if case.get("checksum") and case.get("changed"):
        return "wrong", f"a file whose bytes changed after its checksum ran ({case.get('what')})"
    problem = _mask_problem(seg, mask, IMAGE, domain)
    return ("wrong", problem) if problem else ("ran", "")


def _mask_problem(seg, mask: np.ndarray, shape, domain) -> str | None:
    if mask.shape != tuple(shape):
        return f"mask shape {mask.shape} is not the image's {tuple(shape)}"
    if mask.dtype not in (np.uint8, np.uint16):
        return f"mask dtype {mask.dtype}"
    classes = seg.classes(domain)
    if mask.size and int(mask.max()) >= len(classes):
        return f"mask holds class {int(mask.max())} but the metadata names {len(classes)} classes"
    colours = seg.colorize(mask, domain=domain)
    if colours.shape != (*mask.shape, 3):
        return f"colorize gave {colours.shape}"
    return None


def _run_image(case: dict) -> tuple[str, str]:
    import edgeseg.runtime as rt
    from edgeseg.cli.predict import read_rgb

    image = read_rgb(Path(case["path"]))
    if case.get("rgb") is not None and not np.array_equal(image, np.asarray(case["rgb"], np.uint8)):
        return "wrong", "a lossless 8-bit RGB file decoded to other pixels"
    seg = rt.load(case["model"], threads=1)
    mask = seg.predict(image)
    shape = case.get("shape") or image.shape[:2]
    if tuple(image.shape[:2]) != tuple(shape):
        return "wrong", f"decoded at {image.shape[:2]}, displayed size is {tuple(shape)} (EXIF orientation?)"
    problem = _mask_problem(seg, mask, shape, None)
    return ("wrong", problem) if problem else ("ran", "")


# --- running cases in worker processes (native crashes and hangs are outcomes too) ----------------
_WORKER = """
import json, sys
sys.path.insert(0, sys.argv[2])
from fuzz_helpers import run_case
cases = [json.loads(line) for line in open(sys.argv[1])]
for i, case in enumerate(cases):
    print(json.dumps({"start": i}), flush=True)
    outcome, detail = run_case(case)
    print(json.dumps({"i": i, "outcome": outcome, "detail": detail}), flush=True)
"""


def run_in_workers(cases: list[dict], folder: Path, *, timeout_per_case: float = 60.0, cwd: Path | None = None,
                   progress=None) -> list[dict]:
    """Run ``cases`` in worker subprocesses, in order. A worker that dies (a native crash) or
    stops printing for ``timeout_per_case`` seconds (a hang) gets that case marked ``crash`` /
    ``hang``, and a new worker goes on with the next case. Returns one result per case."""
    import selectors

    results: list[dict | None] = [None] * len(cases)
    here = str(Path(__file__).resolve().parent)
    start = 0
    while start < len(cases):
        batch = folder / f"cases_{start}.jsonl"
        batch.write_text("".join(json.dumps(c) + "\n" for c in cases[start:]))
        # stderr to a file: native libraries can write more than a pipe holds, and a worker
        # blocked on a full pipe would look like a hang.
        log = folder / f"worker_{start}.stderr"
        with log.open("w") as err:
            proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(batch), here], stdout=subprocess.PIPE,
                                    stderr=err, text=True, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"})
            current = None
            last = time.monotonic()
            hung = False
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                while True:
                    if sel.select(timeout=1.0):
                        line = proc.stdout.readline()
                        if not line:
                            break
                        last = time.monotonic()
                        if not line.startswith("{"):
                            continue
                        msg = json.loads(line)
                        if "start" in msg:
                            current = start + msg["start"]
                        else:
                            i = start + msg["i"]
                            results[i] = {**cases[i], "outcome": msg["outcome"], "detail": msg["detail"]}
                            if progress:
                                progress(i)
                    elif time.monotonic() - last > timeout_per_case:
                        hung = True
                        proc.kill()
                        break
            proc.wait()
        stderr = log.read_text(errors="replace")[-1500:]
        if current is not None and results[current] is None:  # it died or hung in this case
            results[current] = {**cases[current], "outcome": "hang" if hung else "crash",
                                "detail": f"no answer in {timeout_per_case:.0f} s" if hung else
                                f"worker exit {proc.returncode}: {stderr}"}
            start = current + 1
        elif current is None:  # it died before its first case: count that case, go on
            results[start] = {**cases[start], "outcome": "crash", "detail": f"worker died at start: {stderr}"}
            start += 1
        else:
            start = current + 1  # finished its last case (all of them, or it died between two)
    return results  # type: ignore[return-value]


# --- cases of each family ----------------------------------------------------------------------
def draw_examples(strategy, n: int, seed: int = 0) -> list:
    """``n`` examples of a hypothesis strategy (generation only, reproducible from ``seed``)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed

    examples: list = []
    for round_ in range(100):  # hypothesis may stop a round early (examples it deems overrun)
        @fixed_seed(seed + round_)
        @settings(max_examples=n - len(examples), phases=[Phase.generate], database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def collect(example):
            examples.append(example)

        collect()
        if len(examples) >= n:
            break
    return examples[:n]


# Files of each family and whether they record a checksum.
METADATA_SOURCES = ("onnx", "onnx_nhwc_pre_argmax", "onnx_two_heads", "tflite", "openvino")
BYTE_SOURCES = {"onnx": False, "onnx_sum": True, "tflite": False, "tflite_sum": True, "openvino": False,
                "openvino_sum": True, "ckpt": False}


def build_cases(family: str, n: int, files: dict[str, Path], folder: Path, seed: int = 0) -> list[dict]:
    """``n`` cases of ``family`` written under ``folder`` (files: runtime_helpers.build_files
    plus :func:`checksummed_copies`)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    if family == "metadata":
        sources = [s for s in METADATA_SOURCES if s in files]
        for i, edits in enumerate(draw_examples(metadata_edits(), n, seed)):
            source = files[sources[i % len(sources)]]
            dest = write_metadata_case(source, edits, folder / f"meta{i}{source.suffix}")
            cases.append({"family": family, "format": sources[i % len(sources)], "kind": "model",
                          "path": str(dest), "what": repr(edits)[:300]})
    elif family == "checkpoint":
        for i, (which, edits) in enumerate(draw_examples(checkpoint_edits(), n, seed)):
            dest = write_checkpoint_case(files["ckpt"], which, edits, folder / f"ckpt{i}.safetensors")
            cases.append({"family": family, "format": "safetensors", "kind": "model", "path": str(dest),
                          "what": f"{which}: {repr(edits)[:300]}"})
    elif family == "image":
        for i, (data, suffix, expectation) in enumerate(draw_examples(image_files(), n, seed)):
            dest = folder / f"img{i}{suffix}"
            dest.write_bytes(data)
            cases.append({"family": family, "format": suffix, "kind": "image", "path": str(dest),
                          "model": str(files["onnx"]), **expectation})
    elif family == "bytes":
        rng = np.random.default_rng(seed)
        sources = [s for s in BYTE_SOURCES if s in files]
        for i in range(n):
            name = sources[i % len(sources)]
            source = files[name]
            dest, what, changed = write_bytes_case(source, rng, folder / f"bytes{i}{source.suffix}")
            cases.append({"family": family, "format": name, "kind": "model", "path": str(dest),
                          "checksum": BYTE_SOURCES[name], "changed": changed, "what": what})
    else:
        raise ValueError(f"unknown family {family!r}")
    return cases


def summarize(results: list[dict]) -> dict:
    """Outcome counts per family and format."""
    table: dict = {}
    for r in results:
        row = table.setdefault(r["family"], {}).setdefault(r["format"], dict.fromkeys(OUTCOMES, 0))
        row[r["outcome"]] += 1
    return table
