"""Shared fixtures for the E10 particle tests: small configs derived from params.yaml."""
import dataclasses

import pytest
import torch


from ebm_repro.experiments.particle.config import particle_config
from ebm_repro.params import load_params


def replace(obj, **sections):
    """dataclasses.replace, one level down: replace(cfg, train={"lr": 0.1})."""
    return dataclasses.replace(obj, **{k: dataclasses.replace(getattr(obj, k), **v) for k, v in sections.items()})


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def params():
    return load_params()


@pytest.fixture
def smoke_cfg(params):
    return particle_config(params, "smoke")


@pytest.fixture
def physics(params):
    return particle_config(params, "paper").physics
