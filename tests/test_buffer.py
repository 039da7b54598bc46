"""Replay buffer: re-init share and noise, uniform draws, uint8 round trip, FIFO / reservoir, state round trip."""
import math

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


# ----------------------------------------------------------------------------- draws (behaviour, any quantisation)
def _distinct_rows(n: int) -> torch.Tensor:
    """n <= 1000 rows (n, 3) on a grid of spacing 1/9: still told apart after any storage finer than 1/18."""
    i = torch.arange(n)
    return torch.stack([i % 10, i // 10 % 10, i // 100], 1) / 9


def _chi2_p_value(counts: torch.Tensor) -> float:
    """P(chi^2_{k-1} >= the Pearson statistic) for counts (k,) under equal cell probabilities."""
    counts = counts.double()
    expected = counts.sum() / len(counts)
    stat = ((counts - expected) ** 2 / expected).sum()
    return float(torch.special.gammaincc(torch.tensor((len(counts) - 1) / 2, dtype=torch.float64), stat / 2))


@pytest.mark.parametrize("quantize", ["code", "round"])
@pytest.mark.parametrize("n_pushed", [30, 130])  # a 50-row buffer still filling; one that FIFO has wrapped
def test_draws_are_uniform_over_all_stored_rows(n_pushed, quantize):
    b = ReplayBuffer(BufferConfig(size=50, reinit_frac=0.0, reservoir=False, quantize=quantize), (3,),
                     torch.Generator().manual_seed(0))
    rows = _distinct_rows(n_pushed)
    for chunk in rows.split(7):
        b.push(chunk)
    stored = rows[-min(n_pushed, 50):]                        # FIFO keeps the newest 50 (test_fifo_replaces_the_oldest)
    x = torch.cat([b.sample(10)[0] for _ in range(300)])      # 3000 chain starts
    which = torch.cdist(x, rows).argmin(1)
    assert (torch.cdist(x, rows).min(1).values < 1 / 18).all()   # every start is a stored row...
    assert set(which.tolist()) <= set(range(n_pushed - len(stored), n_pushed))   # ...one still held
    counts = torch.bincount(which - (n_pushed - len(stored)), minlength=len(stored))
    # uniform over all held rows: chi-square on 30 / 50 cells, ~60-100 draws each. Newest-first draws or
    # draws over the empty rows of a filling buffer give p < 1e-100.
    assert _chi2_p_value(counts) > 1e-3, counts.tolist()


@pytest.mark.parametrize("quantize", ["code", "round"])
def test_reinitialised_chains_are_uniform_noise_at_the_configured_share(quantize):
    frac, n = 0.2, 5000
    b = ReplayBuffer(BufferConfig(size=100, reinit_frac=frac, reservoir=False, quantize=quantize), (4,),
                     torch.Generator().manual_seed(0))
    b.push(torch.full((100, 4), 0.5))
    x, fresh = (torch.cat(t) for t in zip(*[b.sample(50) for _ in range(n // 50)]))   # (5000, 4), (5000,)
    from_buffer = ((x - 0.5).abs() < 0.01).all(1)          # a U(0, 1)^4 row lands there with prob 0.02^4
    # the chains handed out (not only the mask) are re-initialised at reinit_frac: binomial sd 0.0057
    assert abs((~from_buffer).float().mean().item() - frac) < 0.025
    assert torch.equal(fresh, ~from_buffer)                # the mask names exactly the re-initialised chains
    u = x[fresh].flatten().sort().values                   # ~4000 values
    m = len(u)
    ks = torch.maximum(torch.arange(1, m + 1) / m - u, u - torch.arange(m) / m).max()
    assert ks < 1.95 / math.sqrt(m)                        # Kolmogorov-Smirnov against U(0, 1), alpha = 0.001
