"""Model registry: builders registered by name, built with :func:`create_model`.

Python imports a package before its modules, so whoever imports this module has imported
``edgeseg.models`` and with it every architecture file: the registry is full when first used,
without this module importing the package back (an import cycle).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from edgeseg.errors import ConfigError
from edgeseg.metadata import ModelMetadata

_BUILDERS: dict[str, Callable[..., Any]] = {}
_TINY: dict[str, dict[str, Any]] = {}


def register_model(
    name: str, *, tiny: dict[str, Any] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a builder ``fn(*, num_classes, **cfg) -> SegmentationModel`` under ``name``.

    ``tiny`` is the builder config of a small variant of the same architecture (narrow widths),
    used by the test-suite, which is parametrized over the whole registry: a new model is tested
    the day it is registered.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _BUILDERS:
            raise ValueError(f"model name {name!r} is registered twice")
        _BUILDERS[name] = fn
        _TINY[name] = dict(tiny or {})
        return fn

    return wrap


def tiny_config(name: str) -> dict[str, Any]:
    """Builder kwargs for a small, fast variant of ``name`` (for tests and smoke runs)."""
    get_builder(name)
    return dict(_TINY[name])


def list_models() -> list[str]:
    return sorted(_BUILDERS)


def get_builder(name: str) -> Callable[..., Any]:
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, _BUILDERS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(_BUILDERS))}"
        )
    return _BUILDERS[name]


def create_model(name: str, *, num_classes: int | None = None, **cfg: Any):
    """Build a registered model. ``num_classes`` may be left out when ``classes`` is given."""
    builder = get_builder(name)
    if isinstance(cfg.get("metadata"), dict):  # from a checkpoint's JSON build_config
        cfg["metadata"] = ModelMetadata.from_dict(cfg["metadata"])
    if num_classes is not None:
        cfg["num_classes"] = num_classes
    try:
        model = builder(**cfg)
    except TypeError as exc:
        raise ConfigError(f"cannot build {name!r} with {sorted(cfg)}: {exc}") from exc
    # build_config is saved as JSON in checkpoints: a metadata object is stored as its dict.
    model.build_config = {
        k: (v.to_dict() if isinstance(v, ModelMetadata) else v) for k, v in cfg.items()
    }
    return model
