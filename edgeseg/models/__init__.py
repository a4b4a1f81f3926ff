"""The model zoo. Adding a model: one file here, and one import line below."""

from edgeseg.models.base import SegmentationModel
from edgeseg.models.registry import (
    create_model,
    get_builder,
    list_models,
    register_model,
    tiny_config,
)

# Architecture files: importing each registers its builders (one line per file).
from edgeseg.models import mobilenetv3  # noqa: E402,F401
from edgeseg.models import segformer  # noqa: E402,F401
from edgeseg.models import mobileformer  # noqa: E402,F401
from edgeseg.models import multidomain  # noqa: E402,F401

__all__ = [
    "SegmentationModel",
    "create_model",
    "get_builder",
    "list_models",
    "register_model",
    "tiny_config",
]
