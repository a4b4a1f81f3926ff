"""The converter and the runtime together: files written by edgeseg.converters.convert run in
edgeseg.runtime with the metadata they carry, give the PyTorch reference's masks, and are refused
once damaged (the checksum each file records of itself, edgeseg.integrity).

Three conversions: ONNX and LiteRT with the most of the contract (NHWC, preprocessing and argmax
inside the graph), and OpenVINO (a few seconds; its checksum also covers the .bin). Converting takes
15-60 s per target on the shared CPU, so not every option of every target is crossed here; the
benchmarks convert every target with edgeseg.converters.
"""

from __future__ import annotations

import numpy as np
import pytest
from runtime_helpers import SIZE, random_image, tiny_model
import edgeseg.runtime as rt


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from edgeseg.checkpoint import save_checkpoint

    folder = tmp_path_factory.mktemp("convert_pair")
    model = tiny_model()
    return model, save_checkpoint(model, folder / "tiny.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize(
    "target, suffix, options",
    [
        ("onnx", ".onnx", {"layout": "nhwc", "include_preprocess": True, "argmax": True}),
        # LiteRT masks are read from views of the interpreter's buffers (no copy of the output).
        ("tflite", ".tflite", {"layout": "nhwc", "argmax": True}),
        ("openvino", ".xml", {}),
    ],
    ids=["onnx-nhwc-preprocess-argmax", "tflite-nhwc-argmax", "openvino"],
)
def test_converted_file_matches_the_reference(checkpoint, tmp_path, target, suffix, options):
    from edgeseg.converters import convert

    model, ckpt = checkpoint
    path = convert(model, target, input_size=SIZE, out=tmp_path / f"tiny{suffix}", **options).path
    # At f32: an OpenVINO file that passed its bf16 check runs at bf16 by default, held to the
    # bf16 gate (tests/test_runtime_speed_options.py); here the file itself is compared.
    seg = rt.load(path, threads=1, precision="fp32" if target == "openvino" else None)
    for key, value in options.items():
        assert getattr(seg.metadata, key) == value  # the runtime reads what the converter wrote
    assert seg.metadata.classes == model.metadata.classes
    reference = rt.load(ckpt, threads=1)
    masks = []
    for seed, (h, w) in enumerate([(64, 64), (90, 150), (64, 64)]):
        image = random_image(h, w, seed=seed)
        got, want = seg.predict(image), reference.predict(image)
        assert float((got == want).mean()) > 0.995, (target, h, w)
        masks.append((got, got.copy()))
    # A returned mask is the caller's: later calls (same size included) leave it as it was.
    for got, kept in masks:
        assert np.array_equal(got, kept)
    check_damage_is_refused(path)


def check_damage_is_refused(path):
    """The file records its checksum; a copy with one flipped byte, or with the record itself
    damaged, is refused before it runs (edgeseg.integrity)."""
    import shutil

    seg = rt.load(path)
    checksum = seg.metadata.checksum
    assert checksum is not None and checksum.startswith("edgeseg-sha256:")
    assert "checksum verified at load" in seg.describe()
    data = path.read_bytes()
    record = data.index(checksum.encode())
    companions = [path.with_suffix(".bin")] if path.suffix == ".xml" else []
    damages = {
        "weights": len(data) // 2 if not record <= len(data) // 2 < record + len(checksum) else 100,
        "record": record + len("edgeseg-sha256:"),
    }
    for what, position in damages.items():
        broken = path.with_name(f"{what}_{path.name}")
        damaged = bytearray(data)
        damaged[position] = ord("g") if what == "record" else damaged[position] ^ 0x10
        broken.write_bytes(bytes(damaged))
        for companion in companions:
            shutil.copyfile(companion, broken.with_suffix(companion.suffix))
        match = "do not match the checksum" if what == "weights" else "no readable copy"
        with pytest.raises(rt.errors.ModelFileError, match=match):
            rt.load(broken)
    for companion in companions:  # OpenVINO: the weights live in the .bin
        broken = path.with_name(f"bin_{path.name}")
        broken.write_bytes(data)
        weights = bytearray(companion.read_bytes())
        weights[len(weights) // 2] ^= 0x10
        broken.with_suffix(companion.suffix).write_bytes(bytes(weights))
        with pytest.raises(rt.errors.ModelFileError, match="do not match the checksum"):
            rt.load(broken)
