"""Weights from other tools -> an edgeseg model, ready for ``save_checkpoint`` (``edgeseg import``).

Two sources:

- a plain PyTorch state dict (``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt``, or a bare ``.safetensors``)
  in torchvision's layout, e.g. ``torch.save(lraspp_mobilenet_v3_large(...).state_dict(), "m.pth")``.
  edgeseg's LR-ASPP models keep torchvision's parameter names, so the weights load as they are;
  the model name must be given (a state dict does not say which architecture it is), the number
  of classes is read from the classifier's shape. Read with ``torch.load(weights_only=True)``:
  nothing is unpickled as arbitrary objects.
- a Hugging Face SegFormer ``save_pretrained`` folder (``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin``), through :func:`edgeseg.models.hf_segformer.load_hf_segformer`; class
  names come from ``id2label``, mean/std and input size from ``preprocessor_config.json`` when
  the folder has one.

Flags given by the user (classes, mean/std, input size) override what the files say.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from edgeseg.errors import CheckpointError, ConfigError
from edgeseg.weights import CHECKPOINT_KEY, load_weights, read_state_dict, safetensors_header

STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")


def import_weights(
    source: str | os.PathLike[str],
    *,
    model: str | None = None,
    classes: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: tuple[int, int] | None = None,
) -> nn.Module:
    """An edgeseg model holding the weights of ``source`` (see the module docstring), in eval mode."""
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; give a .pth state dict or a Hugging Face SegFormer folder")
    if path.is_dir():
        net, file_meta = _hf_folder(path, model, classes)
    elif path.suffix in (".safetensors", ".bin") and (path.parent / "config.json").is_file():
        net, file_meta = _hf_folder(path.parent, model, classes)  # a save_pretrained folder's weights file
    elif path.suffix in STATE_DICT_SUFFIXES:
        net, file_meta = _state_dict(path, model, classes), {}
    else:
        raise ConfigError(
            f"{path}: unknown weights format {path.suffix!r}; `edgeseg import` reads a state dict "
            f"({', '.join(STATE_DICT_SUFFIXES)}) or a Hugging Face SegFormer folder (config.json + model.safetensors)"
        )
    changes = {**file_meta, **{k: tuple(v) for k, v in (("mean", mean), ("std", std), ("input_size", input_size)) if v}}
    if changes:
        net.metadata = net.metadata.replace(**changes)
    return net.eval()


def _state_dict(path: Path, model: str | None, classes: Sequence[str] | None) -> nn.Module:
    from edgeseg.models import create_model, list_models

    if path.suffix == ".safetensors" and CHECKPOINT_KEY in (safetensors_header(path) or {}):
        raise ConfigError(f"{path} is already an edgeseg checkpoint: convert it directly (`edgeseg convert {path} --target ...`)")
    if model is None:
        raise ConfigError(
            f"{path} is a bare state dict and does not say which architecture it holds: give --model "
            f"(torchvision's lraspp_mobilenet_v3_large is lraspp_mobilenetv3_large; one of {', '.join(list_models())})"
        )
    state = read_state_dict(path)
    net = create_model(model, **_class_options(classes, _num_classes(create_model(model, num_classes=1), state)))
    load_weights(net, path)
    return net


def _num_classes(probe: nn.Module, state: dict) -> int | None:
    """The class count of ``state``: the output width of the parameters whose first dimension is the
    class count in ``probe`` (a one-class build); None when the file has none of them."""
    widths = {
        int(state[k].shape[0])
        for k, v in probe.state_dict().items()
        if k in state and v.ndim >= 1 and v.shape[0] == 1 and state[k].shape[1:] == v.shape[1:]
    }
    return widths.pop() if len(widths) == 1 else None


def _class_options(classes: Sequence[str] | None, found: int | None) -> dict:
    if classes is None:
        return {"num_classes": found} if found else {}
    if found is not None and len(classes) != found:
        raise ConfigError(
            f"--classes names {len(classes)} classes but the weights' classifier predicts {found}; "
            "give one name per output channel, in the order the model was trained with"
        )
    return {"classes": tuple(classes)}


def _hf_folder(path: Path, model: str | None, classes: Sequence[str] | None) -> tuple[nn.Module, dict]:
    from edgeseg.models.hf_segformer import MODEL_NAME, load_hf_segformer

    if not (path / "config.json").is_file():
        found = sorted(p.name for p in path.iterdir())[:10]
        raise ConfigError(
            f"{path} is a folder without config.json (it holds {found}); `edgeseg import` reads a Hugging "
            "Face SegFormer save_pretrained folder (config.json + model.safetensors), or give the .pth file itself"
        )
    if model is not None and model != MODEL_NAME:
        raise ConfigError(f"{path} is a Hugging Face SegFormer folder: it imports as {MODEL_NAME}, not --model {model}")
    net = load_hf_segformer(path, classes=tuple(classes) if classes else None)
    return net, _hf_preprocessing(path)


def _hf_preprocessing(folder: Path) -> dict:
    """mean, std and input size from a ``preprocessor_config.json`` (SegformerImageProcessor)."""
    config_path = folder / "preprocessor_config.json"
    if not config_path.is_file():
        return {}
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON: {exc}") from exc
    found = {}
    if config.get("image_mean") and config.get("image_std"):
        found["mean"], found["std"] = tuple(config["image_mean"]), tuple(config["image_std"])
    size = config.get("size")
    if isinstance(size, dict) and "height" in size and "width" in size:
        found["input_size"] = (int(size["height"]), int(size["width"]))
    return found
