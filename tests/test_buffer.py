"""Replay buffer: re-init fraction, uint8 round trip, FIFO and reservoir replacement, state round trip."""
import pytest
import torch

from ebm_repro.buffer import ReplayBuffer, from_uint8, to_uint8
from ebm_repro.config import BufferConfig


def test_uint8_round_trip_error_is_at_most_half_a_level():
    x = torch.rand(64, 3, 8, 8)
    assert (from_uint8(to_uint8(x)) - x).abs().max() <= 0.5 / 255 + 1e-7


def test_reinit_fraction_is_respected():
    b = ReplayBuffer(BufferConfig(size=1000, reinit_frac=0.05, reservoir=False, quantize="round"), (2,))
    b.push(torch.full((1000, 2), 0.5))
    fresh = torch.cat([b.sample(500)[1] for _ in range(40)])  # 20,000 draws
    assert abs(fresh.float().mean().item() - 0.05) < 0.006  # binomial sd = 0.0015
    x, f = b.sample(500)
    assert torch.all(x[~f] == from_uint8(to_uint8(torch.tensor(0.5))))  # kept chains come from the buffer


def test_a_filling_buffer_starts_chains_from_noise():
    b = ReplayBuffer(BufferConfig(size=100, reinit_frac=0.0, reservoir=False, quantize="round"), (4,))
    b.push(torch.zeros(10, 4))
    x, fresh = b.sample(32)
    assert fresh.all() and x.std() > 0.2


def test_fifo_replaces_the_oldest():
    b = ReplayBuffer(BufferConfig(size=10, reinit_frac=0.0, reservoir=False, quantize="round"), (1,))
    for v in range(25):
        b.push(torch.tensor([[v / 255]]))
    assert sorted(b.data[:, 0].tolist()) == list(range(15, 25))


def test_reservoir_keeps_a_uniform_sample_of_everything_seen():
    kept_old = 0
    for seed in range(200):
        b = ReplayBuffer(BufferConfig(size=10, reinit_frac=0.0, reservoir=True, quantize="round"), (1,),
                         torch.Generator().manual_seed(seed))
        for v in range(100):
            b.push(torch.tensor([[v / 255]]))
        kept_old += int((b.data[:, 0] < 50).sum())
    # reservoir: each of the 100 items survives with prob 10/100, so half the kept items are from the first 50
    assert abs(kept_old / 2000 - 0.5) < 0.05


def test_state_round_trip_continues_identically():
    cfg = BufferConfig(size=50, reinit_frac=0.1, reservoir=True, quantize="round")
    a = ReplayBuffer(cfg, (3,), torch.Generator().manual_seed(1))
    for _ in range(7):
        a.push(torch.rand(10, 3))
    b = ReplayBuffer(cfg, (3,), torch.Generator().manual_seed(99))
    b.load_state_dict(a.state_dict())
    xa, fa = a.sample(20)
    xb, fb = b.sample(20)
    assert torch.equal(xa, xb) and torch.equal(fa, fb)


def test_code_quantisation_floors_then_dequantises_on_read():
    # compress_x_mod / decompress_x_mod (both papers' train.py): k = floor(255 x), read k/256 + U(0, 1/256).
    from ebm_repro.buffer import compress

    x = torch.tensor([0.0, 0.5, 0.9999, 1.0, 0.00392])          # 255 x = 0, 127.5, 254.97, 255, 0.9996
    assert compress(x, "code").tolist() == [0, 127, 254, 255, 0]
    assert compress(x, "round").tolist() == [0, 128, 255, 255, 1]
    b = ReplayBuffer(BufferConfig(size=4000, reinit_frac=0.0, reservoir=False, quantize="code"), (1,))
    b.push(torch.full((4000, 1), 0.5))
    got = b.sample(4000)[0]
    # every read lies in [127/256, 128/256) and is uniform there: mean 127.5/256, std (1/256)/sqrt(12)
    assert got.min() >= 127 / 256 and got.max() < 128 / 256
    assert abs(got.mean().item() - 127.5 / 256) < 3 * (1 / 256) / 12 ** 0.5 / 4000 ** 0.5 + 1e-7
    assert got.std().item() == pytest.approx((1 / 256) / 12 ** 0.5, rel=0.05)
