"""Load Hugging Face ``transformers`` SegFormer checkpoints into edgeseg's ``SegFormer``.

Reads what users already have: a ``save_pretrained`` folder (``config.json`` +
``model.safetensors`` or ``pytorch_model.bin``), a single weights file, or a state dict.
Safetensors is read as tensors only; ``.bin`` files go through ``torch.load(weights_only=True)``.
Nothing is ever unpickled as arbitrary objects, and ``config.json`` is parsed as JSON.

Key mapping, Hugging Face (transformers >= 5, ``SegformerForSemanticSegmentation``) -> edgeseg
``SegFormer``. ``i`` = stage, ``j`` = block; the ``segformer.`` prefix is optional
(``SegformerModel`` checkpoints have none). HF ``S = segformer.stages.i``, ``B = S.blocks.j``;
ours ``S = encoder.stages.i``, ``B = S.blocks.j``:

- ``S.patch_embeddings.proj``                          -> ``S.patch_embed.proj``
- ``S.patch_embeddings.layer_norm``                    -> ``S.patch_embed.norm``
- ``B.layernorm_before``                               -> ``B.attn_norm``
- ``B.attention.{q,k,v,o}_proj``                       -> ``B.attention.{query,key,value,out}``
- ``B.attention.sequence_reduction.sequence_reduction`` -> ``B.attention.reduce``
- ``B.attention.sequence_reduction.layer_norm``        -> ``B.attention.reduce_norm``
- ``B.layernorm_after``                                -> ``B.ffn_norm``
- ``B.mlp.fc1`` / ``B.mlp.dwconv.dwconv`` / ``B.mlp.fc2`` -> ``B.mix_ffn.fc1`` / ``dwconv`` / ``fc2``
- ``S.layer_norm``                                     -> ``S.norm``
- ``decode_head.linear_projections.i.proj``            -> ``decoder.projections.i``
  (HF's Linear weight ``(C, C_i)`` is reshaped to our 1x1 conv's ``(C, C_i, 1, 1)``)
- ``decode_head.linear_fuse``                          -> ``decoder.fuse``
- ``decode_head.batch_norm``                           -> ``decoder.fuse_norm``
- ``decode_head.classifier``                           -> ``decoder.classifier``

Checkpoints written by transformers 4.x (most files on the Hub, e.g.
``nvidia/segformer-b0-finetuned-ade-512-512``) use older names; they are first renamed to the
table's left column, exactly as transformers 5 does when it loads them:
``encoder.patch_embeddings.i`` -> ``stages.i.patch_embeddings``, ``encoder.block.i.j`` ->
``stages.i.blocks.j``, ``encoder.layer_norm.i`` -> ``stages.i.layer_norm``,
``attention.self.{query,key,value}`` -> ``attention.{q,k,v}_proj``, ``attention.self.sr`` /
``attention.self.layer_norm`` -> ``attention.sequence_reduction.{sequence_reduction,layer_norm}``,
``attention.output.dense`` -> ``attention.o_proj``, ``mlp.dense1/2`` -> ``mlp.fc1/2``,
``layer_norm_1/2`` -> ``layernorm_before/after``, ``decode_head.linear_c`` ->
``decode_head.linear_projections``.

Encoder-only checkpoints (ImageNet MiT backbones such as ``nvidia/mit-b0``, whose
``classifier`` head is dropped) load with ``require_decoder=False``: the decoder keeps its fresh
initialization, ready for fine-tuning.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from edgeseg.errors import CheckpointError, ConfigError
from edgeseg.metadata import ModelMetadata
from edgeseg.models.segformer import SegFormer, SegFormerConfig, build_segformer
from edgeseg.weights import read_state_dict

#: The registry name loaded models are saved under (any MiT width: the config rides along in
#: ``build_config`` as overrides of the B0 defaults).
MODEL_NAME = "segformer_b0"

# transformers 4.x names -> transformers 5 names (the renames transformers 5 applies itself).
_LEGACY_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^encoder\.patch_embeddings\.(\d+)\.", r"stages.\1.patch_embeddings."),
    (r"^encoder\.block\.(\d+)\.", r"stages.\1.blocks."),
    (r"^encoder\.layer_norm\.(\d+)\.", r"stages.\1.layer_norm."),
    (r"\.attention\.self\.query\.", ".attention.q_proj."),
    (r"\.attention\.self\.key\.", ".attention.k_proj."),
    (r"\.attention\.self\.value\.", ".attention.v_proj."),
    (r"\.attention\.self\.sr\.", ".attention.sequence_reduction.sequence_reduction."),
    (r"\.attention\.self\.layer_norm\.", ".attention.sequence_reduction.layer_norm."),
    (r"\.attention\.output\.dense\.", ".attention.o_proj."),
    (r"\.mlp\.dense1\.", ".mlp.fc1."),
    (r"\.mlp\.dense2\.", ".mlp.fc2."),
    (r"\.layer_norm_1\.", ".layernorm_before."),
    (r"\.layer_norm_2\.", ".layernorm_after."),
    (r"^decode_head\.linear_c\.", "decode_head.linear_projections."),
)

_BLOCK = r"^stages\.(\d+)\.blocks\.(\d+)\."
_OUR_BLOCK = r"encoder.stages.\1.blocks.\2."


def _as_1x1_conv(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(*weight.shape, 1, 1) if weight.ndim == 2 else weight


def _unchanged(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


# transformers 5 names (``segformer.`` prefix removed) -> ours, with a tensor transform.
# The suffix after the matched part (weight, bias, running_mean, ...) is kept as is.
KEY_MAP: tuple[tuple[str, str, Callable[[torch.Tensor], torch.Tensor]], ...] = (
    (r"^stages\.(\d+)\.patch_embeddings\.proj\.", r"encoder.stages.\1.patch_embed.proj.", _unchanged),
    (r"^stages\.(\d+)\.patch_embeddings\.layer_norm\.", r"encoder.stages.\1.patch_embed.norm.",
     _unchanged),
    (_BLOCK + r"layernorm_before\.", _OUR_BLOCK + "attn_norm.", _unchanged),
    (_BLOCK + r"attention\.q_proj\.", _OUR_BLOCK + "attention.query.", _unchanged),
    (_BLOCK + r"attention\.k_proj\.", _OUR_BLOCK + "attention.key.", _unchanged),
    (_BLOCK + r"attention\.v_proj\.", _OUR_BLOCK + "attention.value.", _unchanged),
    (_BLOCK + r"attention\.o_proj\.", _OUR_BLOCK + "attention.out.", _unchanged),
    (_BLOCK + r"attention\.sequence_reduction\.sequence_reduction\.", _OUR_BLOCK + "attention.reduce.",
     _unchanged),
    (_BLOCK + r"attention\.sequence_reduction\.layer_norm\.", _OUR_BLOCK + "attention.reduce_norm.",
     _unchanged),
    (_BLOCK + r"layernorm_after\.", _OUR_BLOCK + "ffn_norm.", _unchanged),
    (_BLOCK + r"mlp\.fc1\.", _OUR_BLOCK + "mix_ffn.fc1.", _unchanged),
    (_BLOCK + r"mlp\.dwconv\.dwconv\.", _OUR_BLOCK + "mix_ffn.dwconv.", _unchanged),
    (_BLOCK + r"mlp\.fc2\.", _OUR_BLOCK + "mix_ffn.fc2.", _unchanged),
    (r"^stages\.(\d+)\.layer_norm\.", r"encoder.stages.\1.norm.", _unchanged),
    (r"^decode_head\.linear_projections\.(\d+)\.proj\.", r"decoder.projections.\1.", _as_1x1_conv),
    (r"^decode_head\.linear_fuse\.", "decoder.fuse.", _unchanged),
    (r"^decode_head\.batch_norm\.", "decoder.fuse_norm.", _unchanged),
    (r"^decode_head\.classifier\.", "decoder.classifier.", _unchanged),
)

# The ImageNet head of SegformerForImageClassification checkpoints: not part of a segmenter.
_IGNORED = re.compile(r"^classifier\.(weight|bias)$")


def hf_key_to_edgeseg(key: str) -> str | None:
    """Our parameter name for a Hugging Face SegFormer key (either layout), or None if unknown."""
    mapped = _map_key(key)
    return mapped[0] if mapped else None


def _map_key(key: str) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]] | None:
    key = key.removeprefix("segformer.")
    for pattern, replacement in _LEGACY_RENAMES:
        key = re.sub(pattern, replacement, key)
    for pattern, replacement, transform in KEY_MAP:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key, count=1), transform
    return None


def convert_hf_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and reshape where the table says so) a HF SegFormer state dict to ours.

    Raises :class:`CheckpointError` naming the keys it does not know (a checkpoint of another
    architecture, or of the original NVlabs/mmseg code, which uses other names).
    """
    out, unknown = {}, []
    for key, tensor in state.items():
        if _IGNORED.match(key.removeprefix("segformer.")):
            continue
        mapped = _map_key(key)
        if mapped is None:
            unknown.append(key)
            continue
        new_key, transform = mapped
        out[new_key] = transform(tensor)
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} key(s) are not Hugging Face SegFormer weights: {unknown[:6]}"
            f"{' ...' if len(unknown) > 6 else ''}. load_hf_segformer reads checkpoints of "
            "transformers' SegformerForSemanticSegmentation / SegformerModel; for an edgeseg "
            "checkpoint use edgeseg.checkpoint.load_model"
        )
    return out


def config_from_hf(hf_config: Mapping[str, Any]) -> tuple[SegFormerConfig, tuple[str, ...] | None]:
    """Our config and the class names (from ``id2label``) of a HF ``config.json`` dict."""
    if hf_config.get("model_type", "segformer") != "segformer":
        raise CheckpointError(
            f"config.json is for model_type {hf_config['model_type']!r}, not 'segformer'; "
            "load_hf_segformer reads SegFormer checkpoints only"
        )
    if hf_config.get("num_channels", 3) != 3 or hf_config.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(
            "only RGB SegFormers with GELU load into edgeseg; this config has "
            f"num_channels={hf_config.get('num_channels')}, hidden_act={hf_config.get('hidden_act')!r}"
        )
    if hf_config.get("reshape_last_stage", True) is False:
        raise CheckpointError(
            "reshape_last_stage=False configs are classification-only; use a segmentation checkpoint"
        )
    names = {
        "patch_sizes": "patch_sizes",
        "strides": "strides",
        "hidden_sizes": "hidden_sizes",
        "depths": "depths",
        "num_attention_heads": "num_heads",
        "sr_ratios": "sr_ratios",
        "mlp_ratios": "mlp_ratios",
        "decoder_hidden_size": "decoder_channels",
        "drop_path_rate": "drop_path_rate",
        "classifier_dropout_prob": "classifier_dropout",
    }
    config = SegFormerConfig(
        **{ours: hf_config[theirs] for theirs, ours in names.items() if theirs in hf_config}
    )
    id2label = hf_config.get("id2label")
    classes = tuple(str(id2label[k]) for k in sorted(id2label, key=int)) if id2label else None
    return config, classes


def infer_config(state: Mapping[str, torch.Tensor]) -> SegFormerConfig:
    """A config from the shapes of a converted (edgeseg-named) state dict, for files without a
    ``config.json``. Strides and heads do not show in weight shapes: they take the MiT values
    (strides 4/2/2/2, heads 1/2/5/8), which every published MiT-B0..B5 uses."""
    defaults = SegFormerConfig()
    stages = range(_count_indices(state, r"encoder\.stages\.(\d+)\."))
    if not stages:
        raise CheckpointError("the checkpoint has no encoder weights; is it a SegFormer checkpoint?")
    proj = [state[f"encoder.stages.{i}.patch_embed.proj.weight"] for i in stages]
    depths = [_count_indices(state, rf"encoder\.stages\.{i}\.blocks\.(\d+)\.") for i in stages]
    reduce = [state.get(f"encoder.stages.{i}.blocks.0.attention.reduce.weight") for i in stages]
    fc1 = [state[f"encoder.stages.{i}.blocks.0.mix_ffn.fc1.weight"] for i in stages]
    fuse = state.get("decoder.fuse.weight")
    try:
        return dataclasses.replace(
            defaults,
            patch_sizes=tuple(w.shape[-1] for w in proj),
            hidden_sizes=tuple(w.shape[0] for w in proj),
            depths=tuple(depths),
            sr_ratios=tuple(1 if w is None else w.shape[-1] for w in reduce),  # R = 1: no reduce conv
            mlp_ratios=tuple(f.shape[0] // p.shape[0] for f, p in zip(fc1, proj)),
            decoder_channels=fuse.shape[0] if fuse is not None else defaults.decoder_channels,
        )
    except ConfigError as exc:
        raise CheckpointError(
            f"cannot infer the SegFormer config from the weights alone ({exc}); keep the "
            "checkpoint's config.json beside it or pass config=SegFormerConfig(num_heads=...)"
        ) from exc


def _count_indices(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    return len({m.group(1) for key in state if (m := re.match(pattern, key))})


def load_hf_segformer(
    source: str | os.PathLike[str] | Mapping[str, torch.Tensor],
    *,
    config: SegFormerConfig | None = None,
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
    metadata: ModelMetadata | None = None,
    require_decoder: bool = True,
    map_location: str = "cpu",
) -> SegFormer:
    """Build a :class:`SegFormer` holding the weights of a Hugging Face SegFormer checkpoint.

    ``source``: a ``save_pretrained`` folder, a ``.safetensors`` / ``.bin`` file (a
    ``config.json`` beside it is used when present), or a state dict. The architecture comes from
    ``config``, else from ``config.json``, else from the weight shapes (see :func:`infer_config`).
    Class names come from ``metadata``, ``classes``, ``config.json``'s ``id2label``, or
    ``num_classes`` (else the classifier's width). Returns the model in eval mode.
    """
    state, hf_config = _read_source(source, map_location)
    ours = convert_hf_state_dict(state)
    file_config, file_classes = config_from_hf(hf_config) if hf_config is not None else (None, None)
    config = config or file_config or infer_config(ours)
    if metadata is None and classes is None and num_classes is None:
        classifier = ours.get("decoder.classifier.weight")
        if file_classes is not None and (classifier is None or classifier.shape[0] == len(file_classes)):
            classes = file_classes
        elif classifier is not None:
            num_classes = classifier.shape[0]
        else:
            raise CheckpointError(
                "the checkpoint has no classifier to count classes from: pass num_classes=, "
                "classes= or metadata= for the new decoder"
            )
    model = build_segformer(
        config, name=MODEL_NAME, num_classes=num_classes, classes=classes, metadata=metadata
    )
    _load_into(model, ours, require_decoder, source)
    model.build_config = _build_config(config, model.num_classes)
    return model.eval()


def _read_source(
    source: str | os.PathLike[str] | Mapping[str, torch.Tensor], map_location: str
) -> tuple[Mapping[str, torch.Tensor], dict[str, Any] | None]:
    if isinstance(source, Mapping):
        return source, None
    path = Path(source)
    config_path = path / "config.json" if path.is_dir() else path.with_name("config.json")
    if path.is_dir():
        found = [c for c in (path / "model.safetensors", path / "pytorch_model.bin") if c.exists()]
        if not found:
            raise CheckpointError(
                f"{path} holds neither model.safetensors nor pytorch_model.bin (sharded "
                "checkpoints are not supported: every SegFormer fits in one file)"
            )
        path = found[0]
    state = read_state_dict(path, map_location=map_location)
    if not config_path.exists():
        return state, None
    try:
        hf_config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON: {exc}") from exc
    return state, hf_config


def _load_into(
    model: SegFormer, state: dict[str, torch.Tensor], require_decoder: bool, source: object
) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    has_decoder = any(k.startswith("decoder.") for k in state)
    if not has_decoder and not require_decoder:
        missing = [k for k in missing if not k.startswith("decoder.")]
    where = "the state dict" if isinstance(source, Mapping) else str(source)
    if not has_decoder and require_decoder:
        raise CheckpointError(
            f"{where} holds only encoder weights (an ImageNet MiT backbone?); pass "
            "require_decoder=False to load the encoder and train the decoder from scratch"
        )
    mis_shaped = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    unexpected = sorted(set(state) - set(own))
    if missing or mis_shaped or unexpected:
        raise CheckpointError(
            f"{where} does not fit the SegFormer built from its config: missing {missing[:6]}, "
            f"unexpected {unexpected[:6]}, shape mismatches {mis_shaped[:6]}. Pass the config the "
            "checkpoint was trained with (config=SegFormerConfig(...)) or its config.json"
        )
    model.load_state_dict(state, strict=False)


def _build_config(config: SegFormerConfig, num_classes: int) -> dict[str, Any]:
    # JSON-able builder kwargs that rebuild this model via create_model(MODEL_NAME, ...).
    defaults = SegFormerConfig()
    overrides = {
        f.name: list(v) if isinstance(v, tuple) else v
        for f in dataclasses.fields(config)
        if (v := getattr(config, f.name)) != getattr(defaults, f.name)
    }
    return {"num_classes": num_classes, **overrides}


__all__ = [
    "KEY_MAP",
    "config_from_hf",
    "convert_hf_state_dict",
    "hf_key_to_edgeseg",
    "infer_config",
    "load_hf_segformer",
]
