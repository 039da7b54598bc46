"""Shared test setup: one torch thread (CI has 2 cores), no DVC analytics, fixed seeds."""
import os

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402,F401  before any TensorFlow ([tf] tests): TF 2.21 then torchvision 0.29 segfaults

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
