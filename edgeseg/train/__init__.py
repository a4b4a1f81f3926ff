"""Training: ``TrainConfig`` + ``train(cfg)``; also ``edgeseg train`` on the command line.

Importing this package imports torch (training needs it); ``import edgeseg`` does not.
"""

from edgeseg.train.config import TrainConfig
from edgeseg.train.trainer import BEST, LAST, TRAIN_STATE, TrainResult, train

__all__ = ["BEST", "LAST", "TRAIN_STATE", "TrainConfig", "TrainResult", "train"]
