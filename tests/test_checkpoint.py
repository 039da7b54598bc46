"""Strict loading names mismatched keys; atomic writes never leave a half file; RNG states round-trip."""
import random

import numpy as np
import pytest
import torch

from ebm_repro import checkpoint as ck


def test_strict_load_names_missing_and_unexpected_keys():
    a = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    b = torch.nn.Sequential(torch.nn.Linear(2, 3))
    with pytest.raises(ck.CheckpointError, match=r"missing keys: 1\.bias, 1\.weight"):
        ck.load_state_strict(a, b.state_dict(), "ckpt")
    with pytest.raises(ck.CheckpointError, match=r"unexpected keys: 1\.bias"):
        ck.load_state_strict(b, a.state_dict(), "ckpt")
    c = torch.nn.Sequential(torch.nn.Linear(2, 4))
    with pytest.raises(ck.CheckpointError, match=r"shape mismatch: 0\.bias"):
        ck.load_state_strict(b, c.state_dict(), "ckpt")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.pt"
    ck.save(path, {"format": ck.FORMAT, "v": 1})

    def boom(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ck.atomic_write(path, boom)
    assert ck.load(path)["v"] == 1
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_truncated_checkpoint_is_refused_with_a_fix(tmp_path):
    path = tmp_path / "x.pt"
    ck.save(path, {"format": ck.FORMAT, "v": torch.zeros(1000)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ck.CheckpointError, match="unreadable.*delete it and retrain"):
        ck.load(path)


def _draws() -> tuple:
    return torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)]


def test_rng_state_round_trip_through_a_checkpoint_restores_every_stream(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    _draws()                                              # away from the seeded states
    ck.save(tmp_path / "s.pt", {"format": ck.FORMAT, "rng": ck.rng_state()})
    before = _draws()
    torch.manual_seed(7)                                  # what another process / an evaluation would leave
    np.random.seed(8)
    random.seed(9)
    ck.set_rng_state(ck.load(tmp_path / "s.pt")["rng"])
    after = _draws()
    for name, a, b in zip(("torch", "numpy", "python"), before, after):
        assert np.array_equal(np.asarray(a), np.asarray(b)), f"the {name} stream was not restored"
