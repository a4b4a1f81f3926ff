"""edgeseg: lightweight semantic segmentation from training to a verified file on the device.

This module stays light on purpose: ``import edgeseg`` and ``import edgeseg.runtime`` must not
import torch, so the runtime installs on a robot with numpy and one inference backend.
Training, models and converters live in submodules that import torch when they are used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
