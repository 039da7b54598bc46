"""Torch-free config of classifier.py: how an image classifier is trained (params.yaml validation imports this)."""
from __future__ import annotations

from dataclasses import dataclass

from ebm_repro.config import _enum, _pos

ARCHS = ("resnet18", "small_cnn")   # plain classifiers (classifier.make_classifier)
HEADS = ("energies", "linear")      # classifiers built from an energy net (classifier.energy_classifier)


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Supervised training of an image classifier (E7's judge, E9's four Tab. 1 trainings)."""
    epochs: int = _pos()
    batch_size: int = _pos()
    optimizer: str = _enum("adam", "sgd")
    lr: float = _pos()
    momentum: float = _pos(minimum=0, maximum=0.999)   # sgd only
    weight_decay: float = _pos(minimum=0)
    schedule: str = _enum("constant", "cosine")        # cosine: lr -> 0 over all steps
    n_train: int = _pos(minimum=0)                     # 0 = the whole training split
    n_test: int = _pos(minimum=0)                      # 0 = the whole test split
    seed: int = _pos(minimum=0)
