"""Test-time sampling protocols: closed-form step, draw and reset counts; round-robin ensemble; output quantisation."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from ebm_repro import checkpoint as ck
from ebm_repro import config as C
from ebm_repro import generate as G
from ebm_repro.models import make_model
from ebm_repro.params import load_params

ROOT = Path(__file__).resolve().parents[1]
STEPS = 20  # the counting refine adds this per refinement, like steps_per_iter Langevin steps


def ts_cfg(**kw) -> C.TestSamplingConfig:
    """The ICD code's protocol (params.yaml recipes.icd.test_sampling) with `kw` replaced."""
    base = C.resolve(load_params(ROOT / "params.yaml"), "icd", setting="paper").hp.test_sampling
    return dataclasses.replace(base, **kw)


class Counter:
    """refine() that records what each iteration receives: channel 0 counts refinements, channel 1 keeps the label."""

    def __init__(self):
        self.calls: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []

    def __call__(self, x0, y0, it):
        self.calls.append((it, x0.clone(), None if y0 is None else y0.clone()))
        x = x0.clone()
        x[:, 0] += STEPS
        if y0 is not None:
            x[:, 1] = y0.float().view(-1, 1, 1)
        return x


def refinements(x: torch.Tensor) -> torch.Tensor:
    """Refinements since the chain last started from U(0, 1) noise (channel 0 = u + STEPS * k)."""
    return torch.div(x[:, 0], STEPS, rounding_mode="floor").flatten()


def test_persistent_buffer_step_and_draw_counts_match_the_closed_form():
    # ICD test_inception.py with small numbers: 100 chains kept, 50 drawn per iteration with replacement,
    # 12 iterations per chunk of which the last 4 sweep the two halves, 3 chunks, ONE buffer throughout.
    n, d, iters, fixed, chunks = 100, 50, 12, 4, 3
    ts = ts_cfg(n_chains=n, draw_size=d, n_iters=iters, final_iters_fixed=fixed, final_sweep_parts=2,
                augment_every_iter=False)
    torch.manual_seed(0)
    refine = Counter()
    x, _ = G.sample_chunks(ts, refine, chunks, (1, 1, 1), 0, None)
    # draws: 2 fill iterations of 50 new chains, then 50 per mixing iteration, then 4 sweeps of one half each
    sizes = [c[1].shape[0] for c in refine.calls]
    assert sizes == [d] * 2 + [d] * (iters - fixed - 2) + [n // 2] * fixed + ([d] * (iters - fixed) + [n // 2] * fixed) * 2
    # every drawn chain (after the fill) was refined before: no chain is ever reset in the ICD protocol
    assert all((c[1].flatten(1)[:, 0] >= STEPS).all() for c in refine.calls[2:])
    # per-chain refinements after chunk c: 1 (fill) + 2 per chunk (sweeps) + p per mixing draw iteration,
    # p = 1 - (1 - 1/n)^d the chance to be drawn at least once (duplicates write back once)
    p = 1 - (1 - 1 / n) ** d
    for c in range(1, chunks + 1):
        k = refinements(x[(c - 1) * n: c * n])
        draws = c * (iters - fixed) - 2
        mean, sd = 1 + 2 * c + p * draws, math.sqrt(draws * p * (1 - p) / n)
        assert abs(k.float().mean().item() - mean) < 4 * sd + 1e-9, (c, k.float().mean().item(), mean)
        assert k.min() >= 1 + 2 * c  # the sweeps reach every kept chain twice per chunk
    # persistence: the counts keep growing across chunks (a per-chunk buffer would restart at ~1 + 2 + 6p)
    assert refinements(x[2 * n:]).float().mean() > refinements(x[:n]).float().mean() + 10


def test_chunk_buffer_resets_and_label_redraws_happen_at_the_configured_rates():
    # IGEBM test_inception.py: a new buffer per chunk, reset 1% and relabel 10% of drawn chains except in the
    # last `nomix` iterations. Rates raised to 10% / 40% so the counts are large.
    n, d, iters, fixed, chunks, k_cls = 100, 50, 30, 5, 4, 10
    ts = ts_cfg(protocol="chunk_buffer", n_chains=n, draw_size=d, n_iters=iters, final_iters_fixed=fixed,
                final_sweep_parts=0, reinit_frac=0.1, label_redraw_frac=0.4, augment_every_iter=False)
    torch.manual_seed(1)
    refine = Counter()
    x, y = G.sample_chunks(ts, refine, chunks, (2, 1, 1), k_cls, None)
    resets = relabels = mixing_draws = 0
    for it, x0, y0 in refine.calls:
        if it < 2:
            assert (x0.flatten(1)[:, 0] < 1).all()  # fill: every chunk starts from noise (the buffer is per chunk)
            continue
        count, label = x0.flatten(1)[:, 0], x0.flatten(1)[:, 1].long()
        reset = count < 1  # a drawn chain was refined at least once; below 1 it was just reset to U(0, 1)
        if it >= iters - fixed:
            assert not reset.any()  # nomix: no resets ...
            assert torch.equal(label, y0)  # ... and no label redraws in the last iterations
            continue
        mixing_draws += d
        resets += int(reset.sum())
        relabels += int((label[~reset] != y0[~reset]).sum())
    kept = mixing_draws * 0.9
    assert abs(resets - 0.1 * mixing_draws) < 4 * math.sqrt(mixing_draws * 0.1 * 0.9)
    q = 0.4 * (k_cls - 1) / k_cls  # a redrawn label equals the old one with probability 1/10
    assert abs(relabels - q * kept) < 4 * math.sqrt(kept * q * (1 - q))
    # no buffer persistence: each chunk's chains started from noise within its own 30 iterations
    assert refinements(x).max() <= iters
    assert y.shape == (chunks * n,) and set(y.tolist()) <= set(range(k_cls))


def test_fresh_chains_refines_every_chain_every_iteration():
    ts = ts_cfg(protocol="fresh_chains", n_chains=30, n_iters=6, final_iters_fixed=2, reinit_frac=0.0,
                augment_every_iter=False)
    refine = Counter()
    x, _ = G.sample_chunks(ts, refine, 2, (1, 1, 1), 0, None)
    assert [c[1].shape[0] for c in refine.calls] == [30] * 12
    assert torch.equal(refinements(x), torch.full((60,), 6.0))


def test_a_chain_drawn_twice_keeps_its_last_copy():
    store = G.ChainStore()
    store.append(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    store.write(torch.tensor([2, 0, 2, 2]), torch.tensor([[1.0], [2.0], [3.0], [4.0]]), torch.tensor([5, 6, 7, 8]))
    assert store.x.flatten().tolist() == [2.0, 0.0, 4.0, 0.0] and store.y.tolist() == [6, 0, 8, 0]


def test_output_quantisation_follows_the_switch():
    x = torch.tensor([0.0, 0.5, 0.99, 0.999, 1.0])
    assert G.quantize_output(x, "code").tolist() == [0, 128, 253, 255, 255]   # floor(clip(256 x, 0, 255))
    assert G.quantize_output(x, "round").tolist() == [0, 128, 252, 255, 255]  # round(255 x)


def test_augmentation_of_draws_follows_the_switch_and_blurs():
    # With augment_every_iter, each mixing draw goes through the transition; the ICD protocol feeds it
    # floor(255 x) / 255 (the PIL round trip of the code's transform). A transition that ignored the switch,
    # or the quantisation, would be seen here.
    seen = []

    def augment(x):
        seen.append(x.clone())
        return x.flip(-1)

    ts = ts_cfg(n_chains=20, draw_size=10, n_iters=6, final_iters_fixed=2, final_sweep_parts=2)
    torch.manual_seed(0)
    G.sample_chunks(ts, lambda x0, y0, it: x0.clamp(0, 1) * 0 + 0.5037, 1, (1, 1, 3), 0, augment)
    assert len(seen) == 6 - 2 - 2  # mixing iterations after the 2 fill iterations
    assert all(torch.allclose(s, torch.full_like(s, 128 / 255)) for s in seen)  # floor(255 * 0.5037) = 128
    seen.clear()
    G.sample_chunks(dataclasses.replace(ts, augment_every_iter=False), lambda x0, y0, it: x0, 1, (1, 1, 3), 0, None)
    assert not seen
    # the blur of the transition: p = 1 smooths a checkerboard, p = 0 leaves it
    from ebm_repro.augment import Blur, make_augment
    acfg = C.resolve(load_params(ROOT / "params.yaml"), "icd", setting="paper").hp.augment
    plain = dataclasses.replace(acfg, crop_scale_min=1.0, hflip=False, jitter_p=0.0, grayscale_p=0.0)
    board = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float().expand(1, 3, 16, 16).contiguous()
    torch.manual_seed(0)
    blurred = make_augment(plain, 16, Blur(1.0, 5, 1.0, 1.0))(board)
    kept = make_augment(plain, 16, Blur(0.0, 5, 1.0, 1.0))(board)
    assert torch.allclose(kept, board, atol=1e-6)
    assert blurred[..., 4:12, 4:12].std() < 0.1 * board.std()


def _tiny_checkpoint(tmp_path: Path, n_snapshots: int) -> tuple[C.RunConfig, Path]:
    p = load_params(ROOT / "params.yaml")
    p["settings"]["smoke"]["overrides"]["model"] = {"width": 4}
    cfg = C.resolve(p, "igebm_cond", setting="smoke")
    cfg = dataclasses.replace(cfg, hp=dataclasses.replace(cfg.hp, test_sampling=dataclasses.replace(
        cfg.hp.test_sampling, n_chains=8, draw_size=4, n_iters=7, steps_per_iter=2, final_iters_fixed=1)))
    nets = [make_model(cfg.hp.model) for _ in range(n_snapshots)]
    path = tmp_path / "model.pt"
    ck.save(path, {"format": ck.FORMAT, "kind": "model", "model_args": ck.model_args(cfg.hp.model),
                   "config": cfg.to_dict(), "step": 1, "model": nets[-1].state_dict(), "ema": None,
                   "snapshots": [n.state_dict() for n in nets], "diverged": None})
    return cfg, path


def test_ensemble_visits_every_snapshot_round_robin(tmp_path, monkeypatch):
    # IGEBM test_inception.py: iteration i of a chunk uses snapshot i % 10. 7 iterations, 3 snapshots:
    # snapshot 0 at iterations 0, 3, 6 and snapshots 1, 2 at two each, per chunk; 2 Langevin steps each.
    cfg, path = _tiny_checkpoint(tmp_path, 3)
    calls = [0, 0, 0]
    real = G.load_models

    def hooked(*a, **kw):
        nets = real(*a, **kw)
        for i, net in enumerate(nets):
            net.register_forward_hook(lambda m, inp, out, i=i: calls.__setitem__(i, calls[i] + 1))
        return nets

    monkeypatch.setattr(G, "load_models", hooked)
    images, labels = G.generate(cfg, path, "ensemble", 16, device="cpu", progress=False)
    assert calls == [2 * 3 * 2, 2 * 2 * 2, 2 * 2 * 2]  # steps x iterations x chunks
    assert images.shape == (16, 32, 32, 3) and labels.min() >= 0  # a conditional model samples with labels


def test_load_models_refuses_a_checkpoint_without_usable_weights(tmp_path):
    # a run that diverged before its first checkpoint stores no weights: say so instead of a key mismatch
    cfg, path = _tiny_checkpoint(tmp_path, 1)
    c = ck.load(path)
    ck.save(path, {**c, "model": None, "diverged": {"reason": "energy gap 3.1 > bound"}})
    with pytest.raises(ck.CheckpointError, match=r"diverged before any usable checkpoint \(energy gap 3.1"):
        G.load_models(cfg, path, "single", torch.device("cpu"))
    with pytest.raises(ck.CheckpointError, match="holds 1 snapshots; the historical ensemble needs"):
        G.load_models(cfg, path, "ensemble", torch.device("cpu"))
