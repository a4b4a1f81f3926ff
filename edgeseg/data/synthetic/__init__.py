"""Procedural multi-domain street scenes (see :mod:`.domains` for the domains and classes)."""

from edgeseg.data.folder import write_folder
from edgeseg.data.synthetic.dataset import SyntheticDataset
from edgeseg.data.synthetic.domains import (
    COARSE_CLASSES,
    DOMAIN_STYLES,
    FINE_CLASSES,
    SYNTHETIC_DOMAINS,
    domain_classes,
)

__all__ = [
    "COARSE_CLASSES",
    "DOMAIN_STYLES",
    "FINE_CLASSES",
    "SYNTHETIC_DOMAINS",
    "SyntheticDataset",
    "domain_classes",
    "write_folder",
]
