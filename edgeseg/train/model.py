"""The model a run trains: built from the registry with the data's classes, and a thin module
that runs one step's forward for every domain in a single call (one DDP forward per step)."""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.metadata import DomainInfo
from edgeseg.train.data import DomainData

MULTIDOMAIN_PREFIX = "multidomain_"


def is_multidomain(model_name: str) -> bool:
    return model_name.startswith(MULTIDOMAIN_PREFIX)


def build_model(name: str, options: dict, domains: list[DomainData], size: tuple[int, int]) -> nn.Module:
    """A registry model whose metadata carries the data's class names, palettes and crop size."""
    from edgeseg.models import create_model

    if "num_classes" in options or "classes" in options or "domains" in options:
        raise ConfigError("model_options must not set num_classes, classes or domains: they come from the data")
    if is_multidomain(name):
        model = create_model(name, domains=[[d.name, list(d.classes)] for d in domains], **options)
        infos = tuple(DomainInfo(d.name, d.classes, d.palette) for d in domains)
        model.metadata = model.metadata.replace(
            classes=infos[0].classes, palette=infos[0].palette, domains=infos, input_size=size
        )
    else:
        if len(domains) > 1:
            raise ConfigError(
                f"{name} has one head but {len(domains)} datasets were given "
                f"({[d.spec for d in domains]}); train a {MULTIDOMAIN_PREFIX}* model for several "
                "domains (`edgeseg models` lists them), or give one dataset"
            )
        (domain,) = domains
        model = create_model(name, num_classes=len(domain.classes), **options)
        model.metadata = model.metadata.replace(classes=domain.classes, palette=domain.palette, input_size=size)
    model.check_input_size(*size)
    return model


class DomainForward(nn.Module):
    """``{domain: images} -> {domain: logits}``: each domain's batch through the shared encoder
    and that domain's head. Wrapping this (not the model) in DDP keeps one forward per step."""

    def __init__(self, model: nn.Module, multidomain: bool) -> None:
        super().__init__()
        self.model = model
        self.multidomain = multidomain

    def forward(self, images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.multidomain:
            return {name: self.model(x) for name, x in images.items()}
        return {name: self.model(x, domain=name) for name, x in images.items()}
