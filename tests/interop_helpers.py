"""Shared by the interop tests: a small model with smooth masks on natural photos, the photos,
and the platform consumers (MediaPipe's ImageSegmenter, OpenVINO Model API) as a user calls them."""

from __future__ import annotations

import numpy as np
import pytest

# A test module importing these helpers needs torch: without it, it is skipped.
torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from edgeseg.metadata import ModelMetadata  # noqa: E402
from edgeseg.models.base import SegmentationModel  # noqa: E402

# scikit-image's bundled RGB photos (no download): sizes differ from every model input size.
PHOTOS = ("astronaut", "coffee", "chelsea")


def photo(name: str) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


class _PoolEncoder(nn.Module):
    out_channels = (8,)
    strides = (4,)

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 8, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.tanh(self.mix(F.avg_pool2d(x, 4)))]


class ColourSegModel(SegmentationModel):
    """Classes by smoothed colour: an untrained model whose masks are regions, not pixel noise, so
    that on a natural photo only region borders depend on how a consumer resizes."""

    size_divisor = 4

    def __init__(self, num_classes: int = 4, size: tuple[int, int] = (64, 64), seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.encoder = _PoolEncoder()
        self.decoder = _Head(num_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 2)
        self.metadata = ModelMetadata(
            model="colour_test", classes=tuple(f"region_{i}" for i in range(num_classes)), input_size=size
        )
        self.build_config = {}
        self.eval()


class _Head(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(8, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(features[-1])


def mediapipe_category_mask(path, image: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """MediaPipe Tasks' ImageSegmenter on ``path`` (RGB uint8 image): (category mask, labels)."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=str(path)), output_category_mask=True,
        output_confidence_masks=False,
    )
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
        return result.category_mask.numpy_view().reshape(image.shape[:2]).copy(), list(segmenter.labels)


def mediapipe_confidence_masks(path, image: np.ndarray) -> np.ndarray:
    """MediaPipe's confidence masks stacked ``(H, W, K)``."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=str(path)), output_category_mask=False,
        output_confidence_masks=True,
    )
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
        return np.stack([m.numpy_view().reshape(image.shape[:2]) for m in result.confidence_masks], -1)


def model_api_mask(path, image: np.ndarray, f32: bool = False) -> tuple[np.ndarray, object]:
    """OpenVINO Model API on ``path`` as its docs show it: ``Model.create_model(xml)`` and
    ``model(image)`` with an OpenCV (BGR) frame. Returns (class mask, the model wrapper).

    ``f32``: compile with INFERENCE_PRECISION_HINT f32, as edgeseg.runtime does (Model API leaves
    the CPU default, bf16 on CPUs with bf16 units; no rt_info key sets it)."""
    from model_api.adapters import OpenvinoAdapter, create_core
    from model_api.models import Model

    if f32:
        adapter = OpenvinoAdapter(create_core(), str(path), device="CPU",
                                  plugin_config={"INFERENCE_PRECISION_HINT": "f32"})
        model = Model.create_model(adapter)
    else:
        model = Model.create_model(str(path), device="CPU")
    result = model(np.ascontiguousarray(image[..., ::-1]))
    return np.asarray(result.resultImage), model


# --- MediaPipe's CPU resampling, written out to explain (and test) where its masks differ -----
def mediapipe_style_input(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The model input MediaPipe's CPU ImageToTensor makes: bilinear samples at ``x * W / w``
    (output pixel corners), where edgeseg (and cv2.resize, torch's interpolate) sample at pixel
    centres, ``(x + 0.5) * W / w - 0.5``: MediaPipe's input is shifted by half a model pixel."""
    import cv2

    sy, sx = image.shape[0] / height, image.shape[1] / width
    matrix = np.float32([[sx, 0, 0], [0, sy, 0]])
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def mediapipe_style_mask(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """MediaPipe's CPU category mask from model-size logits ``(h, w, K)``: corner-aligned bilinear
    interpolation of the logits to the image size, then the argmax per pixel (edgeseg takes the
    argmax at model size and resizes the mask, sampling pixel centres)."""
    h, w, _ = logits.shape
    ys = np.arange(height) * ((h - 1) / max(height - 1, 1))
    xs = np.arange(width) * ((w - 1) / max(width - 1, 1))
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    ty, tx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = logits[y0][:, x0] * (1 - tx) + logits[y0][:, x1] * tx
    bottom = logits[y1][:, x0] * (1 - tx) + logits[y1][:, x1] * tx
    return (top * (1 - ty) + bottom * ty).argmax(-1)
