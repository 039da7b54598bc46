"""Multistep rollouts on test trajectories, feeding each prediction back as input; MSE per horizon step."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from ebm_repro.experiments.particle.config import CONTEXT, ParticleConfig, base_kind
from ebm_repro.experiments.particle.sampling import conditional_energy, make_sampler

Predictor = Callable[[torch.Tensor], torch.Tensor]  # past (B, 3, 2) -> next (B, 2)


def make_predictor(kind: str, model: nn.Module, cfg: ParticleConfig, generator: torch.Generator) -> Predictor:
    """Next-position predictor: the regressor's output, or the sampler's final state under the EBM."""
    model.eval().requires_grad_(False)  # Langevin still differentiates w.r.t. x, never w.r.t. theta here
    if base_kind(kind) == "feedforward":
        return lambda past: model(past)
    sampler = make_sampler(kind, cfg.langevin, cfg.mppi)
    return lambda past: sampler(conditional_energy(model, past), past[:, -1], generator=generator)


def rollout(predict: Predictor, past: torch.Tensor, horizon: int) -> torch.Tensor:
    """Predict `horizon` steps from past (B, 3, 2), feeding predictions back -> (B, horizon, 2)."""
    preds = []
    for _ in range(horizon):
        with torch.no_grad():  # Langevin re-enables grad locally for dE/dx
            nxt = predict(past).detach()  # (B, 2)
        preds.append(nxt)
        past = torch.cat([past[:, 1:], nxt[:, None]], dim=1)  # (B, 3, 2): drop the oldest step
    return torch.stack(preds, dim=1)


def start_times(n_steps: int, horizon: int, n_starts: int) -> np.ndarray:
    """Evenly spaced rollout starts so that every start has `horizon` ground-truth steps after its context."""
    return np.linspace(0, n_steps - CONTEXT - horizon, n_starts).round().astype(int)


# Learning-free references for the table: the ball stands still / keeps its last velocity.
BASELINES: dict[str, Predictor] = {
    "constant_position": lambda past: past[:, -1],
    "constant_velocity": lambda past: 2 * past[:, -1] - past[:, -2],
}


def rollout_targets(test: np.ndarray, cfg: ParticleConfig) -> np.ndarray:
    """Ground truth the rollouts are scored against -> (N, n_starts, H, 2)."""
    e = cfg.eval
    starts = start_times(test.shape[1], e.horizon, e.n_starts)
    return np.stack([test[:, s + CONTEXT:s + CONTEXT + e.horizon] for s in starts], axis=1)


def rollout_predictions(kind: str, model: nn.Module | None, test: np.ndarray, cfg: ParticleConfig) -> np.ndarray:
    """Predicted positions of every (trajectory, start, horizon step) -> (N, n_starts, H, 2)."""
    e, gen = cfg.eval, torch.Generator().manual_seed(cfg.eval.seed)
    predict = BASELINES[kind] if kind in BASELINES else make_predictor(kind, model, cfg, gen)
    starts = start_times(test.shape[1], e.horizon, e.n_starts)
    out = np.empty((test.shape[0], len(starts), e.horizon, 2), dtype=test.dtype)
    for j, s in enumerate(starts):
        for b in range(0, test.shape[0], e.batch_size):
            past = torch.from_numpy(test[b:b + e.batch_size, s:s + CONTEXT])  # (B, 3, 2)
            out[b:b + len(past), j] = rollout(predict, past, e.horizon).numpy()  # (B, H, 2)
    return out


def rollout_mse(kind: str, model: nn.Module | None, test: np.ndarray, cfg: ParticleConfig) -> np.ndarray:
    """Squared error per (trajectory, start, horizon step), averaged over x and y -> (N, n_starts, H)."""
    pred = rollout_predictions(kind, model, test, cfg).astype(np.float64)
    return ((pred - rollout_targets(test, cfg)) ** 2).mean(-1)
