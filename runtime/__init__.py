"""edgeseg.runtime: run a converted segmentation model with numpy and one inference library.

    >>> import edgeseg.runtime as rt
    >>> seg = rt.load("model.onnx")          # .tflite, .xml(+.bin), .mlpackage, .safetensors
    >>> mask = seg.predict(rgb_image)        # (H, W) uint8 class ids at the image's size
    >>> rgb = seg.overlay(rgb_image, mask)

Importing this package imports neither torch nor any inference library: a backend's library is
imported when a file that needs it is loaded.
"""

from edgeseg.runtime.errors import (
    BackendUnavailableError,
    DeviceUnavailableError,
    DomainError,
    ImageChannelsError,
    ImageDtypeError,
    ImageError,
    ImageFileError,
    ImageSizeError,
    ImageValueError,
    LogitsUnavailableError,
    MaskError,
    MetadataError,
    MissingMetadataWarning,
    ModelFileError,
    ModelFileNotFoundError,
    UnsupportedModelError,
)
from edgeseg.runtime.imagefile import read_image
from edgeseg.runtime.loader import BACKENDS, SUFFIX_BACKENDS, load, read_metadata
from edgeseg.runtime.session import SegmentationSession

__all__ = [
    "BACKENDS",
    "SUFFIX_BACKENDS",
    "BackendUnavailableError",
    "DeviceUnavailableError",
    "DomainError",
    "ImageChannelsError",
    "ImageDtypeError",
    "ImageError",
    "ImageFileError",
    "ImageSizeError",
    "ImageValueError",
    "LogitsUnavailableError",
    "MaskError",
    "MetadataError",
    "MissingMetadataWarning",
    "ModelFileError",
    "ModelFileNotFoundError",
    "SegmentationSession",
    "UnsupportedModelError",
    "load",
    "read_image",
    "read_metadata",
]
