"""Model files for the runtime tests, made fast from the tiny LR-ASPP MobileNetV3-Small
(``build_files``; the session fixture ``model_files`` in conftest.py builds them once).

The files follow the converters' contract (metadata under "edgeseg" in each format's slot, one
"image" input, "logits"/"mask" outputs) but are exported directly here: the full converter
(tested with the runtime in test_runtime_convert.py) verifies every file against PyTorch and
takes seconds to a minute per target, too long to run for every variant.

LiteRT conversion of even the tiny LR-ASPP takes a minute on a shared CPU, so the TFLite file is
a two-convolution network, exported to ONNX as well: the TFLite run is compared with the ONNX
run of the same weights, and the ONNX backend with the PyTorch reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = (64, 64)
MODEL = "lraspp_mobilenetv3_small"


def tiny_model():
    from edgeseg.models import create_model, tiny_config

    import torch

    model = create_model(MODEL, num_classes=4, **tiny_config(MODEL)).eval()
    model.metadata = model.metadata.replace(input_size=SIZE)
    # He-normal weights and zero biases: the default init makes an untrained head predict one
    # class everywhere, and a constant mask would let a broken pipeline pass.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) * (2.0 / param[0].numel()) ** 0.5)
            elif name.endswith("bias"):
                param.zero_()
    return model


def two_conv_model():
    """Two convolutions and a bilinear upsample: a segmentation graph LiteRT converts in seconds."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class TwoConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.classify = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = self.classify(F.relu(self.down(x)))
            return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)

    torch.manual_seed(1)
    return TwoConv().eval()


class Graph:
    """torch modules wrapping the model the way the converter's graph options do."""

    @staticmethod
    def wrap(model, *, layout="nchw", include_preprocess=False, argmax=False):
        import torch
        from torch import nn

        mean = torch.tensor(model.metadata.mean).view(1, 3, 1, 1)
        std = torch.tensor(model.metadata.std).view(1, 3, 1, 1)

        class Wrapped(nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, x):
                if layout == "nhwc":
                    x = x.permute(0, 3, 1, 2)
                if include_preprocess:
                    x = (x.float() / 255 - mean) / std
                y = self.model(x)
                if argmax:
                    return y.argmax(1).to(torch.uint8)
                return y.permute(0, 2, 3, 1) if layout == "nhwc" else y

        return Wrapped().eval()

    @staticmethod
    def two_heads(model):
        """A multi-domain file: "logits_city" (4 classes) and "logits_road" (3 classes)."""
        from torch import nn

        class TwoHeads(nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, x):
                y = self.model(x)
                return y, -y[:, :3]

        return TwoHeads().eval()


def export_onnx(module, example, path: Path, metadata, output_names=("logits",)) -> Path:
    import onnx
    import torch

    torch.onnx.export(
        module, (example,), str(path), input_names=["image"], output_names=list(output_names),
        dynamo=False, opset_version=17,
    )
    if metadata is not None:
        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "edgeseg", metadata.to_json()
        onnx.save(proto, str(path))
    return path


def export_openvino(onnx_path: Path, path: Path, metadata) -> Path:
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    model.set_rt_info(metadata.to_json(), ["edgeseg"])
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def export_tflite(module, example, path: Path, metadata) -> Path:
    import litert_torch

    from edgeseg.runtime.tflite_metadata import add_tflite_metadata

    tmp = path.with_suffix(".raw.tflite")
    litert_torch.convert(module, (example,)).export(str(tmp))
    data = add_tflite_metadata(tmp.read_bytes(), {"edgeseg": metadata.to_json().encode()})
    path.write_bytes(data)
    tmp.unlink()
    return path


def build_files(folder: Path, *, tflite: bool = True) -> dict[str, Path]:
    """Every variant the runtime tests run, keyed by a short name."""
    import torch

    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.metadata import DomainInfo

    torch.manual_seed(0)
    model = tiny_model()
    meta = model.metadata
    nchw = torch.randn(1, 3, *SIZE)
    nhwc_u8 = torch.randint(0, 255, (1, *SIZE, 3), dtype=torch.uint8)
    files = {"ckpt": folder / "tiny.safetensors"}
    save_checkpoint(model, files["ckpt"])
    files["onnx"] = export_onnx(model, nchw, folder / "tiny.onnx", meta)
    files["onnx_nometa"] = export_onnx(model, nchw, folder / "nometa.onnx", None)
    files["onnx_letterbox"] = export_onnx(
        model, nchw, folder / "letterbox.onnx", meta.replace(resize="letterbox")
    )
    files["onnx_nhwc"] = export_onnx(
        Graph.wrap(model, layout="nhwc"), nchw.permute(0, 2, 3, 1).contiguous(), folder / "nhwc.onnx",
        meta.replace(layout="nhwc"),
    )
    files["onnx_nhwc_pre_argmax"] = export_onnx(
        Graph.wrap(model, layout="nhwc", include_preprocess=True, argmax=True), nhwc_u8,
        folder / "nhwc_pre_argmax.onnx",
        meta.replace(layout="nhwc", include_preprocess=True, argmax=True), output_names=("mask",),
    )
    domains = (
        DomainInfo("city", meta.classes, meta.palette),
        DomainInfo("road", ("road", "lane", "other"), ((128, 64, 128), (255, 255, 255), (0, 0, 0))),
    )
    files["onnx_two_heads"] = export_onnx(
        Graph.two_heads(model), nchw, folder / "two_heads.onnx",
        meta.replace(domains=domains, output_names={"city": "logits_city", "road": "logits_road"}),
        output_names=("logits_city", "logits_road"),
    )
    files["openvino"] = export_openvino(files["onnx"], folder / "tiny.xml", meta)
    if tflite:
        two_conv = two_conv_model()
        two_conv.metadata = meta.replace(model="two_conv")
        files["onnx_two_conv"] = export_onnx(two_conv, nchw, folder / "two_conv.onnx", two_conv.metadata)
        files["tflite"] = export_tflite(
            Graph.wrap(two_conv, layout="nhwc"), nchw.permute(0, 2, 3, 1).contiguous(),
            folder / "two_conv.tflite", two_conv.metadata.replace(layout="nhwc"),
        )
    return files


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (blobs, not noise), so masks have regions and few ties."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    from edgeseg.runtime.resize import resize_bilinear

    return np.ascontiguousarray(resize_bilinear(small, height, width))
