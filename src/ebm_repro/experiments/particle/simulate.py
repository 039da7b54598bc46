"""Ball-in-a-box simulator: elastic wall collisions, quadratic drag, Coulomb friction (IGEBM §5.1)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ebm_repro.experiments.particle.config import DataConfig, PhysicsConfig


def substep(p: np.ndarray, v: np.ndarray, h: float, phys: PhysicsConfig) -> tuple[np.ndarray, np.ndarray]:
    """Advance (N, 2) positions and velocities by h seconds (semi-implicit Euler, then wall reflection)."""
    speed = np.linalg.norm(v, axis=-1, keepdims=True)  # (N, 1)
    # Drag and friction only shrink the speed; the direction is kept, and friction stops, never reverses.
    new_speed = np.maximum(speed - h * (phys.drag * speed**2 + phys.friction), 0.0)
    v = v * np.divide(new_speed, speed, out=np.zeros_like(speed), where=speed > 0)
    p = p + h * v
    lo, hi = phys.radius, phys.box_size - phys.radius
    # Elastic collision: mirror the overshoot back inside and flip the normal velocity component.
    below, above = p < lo, p > hi
    p = np.where(below, 2 * lo - p, np.where(above, 2 * hi - p, p))
    v = np.where(below | above, -v, v)
    return p, v


def simulate(phys: PhysicsConfig, n: int, n_steps: int, rng: np.random.Generator,
             return_velocity: bool = False):
    """n trajectories of n_steps recorded positions -> (n, n_steps, 2) float64 [, velocities]."""
    lo, hi = phys.radius, phys.box_size - phys.radius
    p = rng.uniform(lo, hi, size=(n, 2))
    angle = rng.uniform(0, 2 * np.pi, size=n)
    speed = rng.uniform(phys.speed_min, phys.speed_max, size=n)
    v = speed[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)  # (n, 2)
    pos, vel = np.empty((n, n_steps, 2)), np.empty((n, n_steps, 2))
    pos[:, 0], vel[:, 0] = p, v
    h = phys.dt / phys.substeps
    for t in range(1, n_steps):
        for _ in range(phys.substeps):
            p, v = substep(p, v, h, phys)
        pos[:, t], vel[:, t] = p, v
    return (pos, vel) if return_velocity else pos


def make_dataset(phys: PhysicsConfig, data: DataConfig) -> dict[str, np.ndarray]:
    """Train and test trajectories from one seeded generator (train first, so n_test never changes train)."""
    rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence(data.seed).spawn(2))
    return {"train": simulate(phys, data.n_train, data.n_steps, rng_train).astype(np.float32),
            "test": simulate(phys, data.n_test, data.n_steps, rng_test).astype(np.float32)}


def save_dataset(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write train/test arrays plus a JSON metadata string to one .npz."""
    from ebm_repro.checkpoint import atomic_write

    # file handle: np.savez would otherwise append ".npz" to the name
    atomic_write(path, lambda f: np.savez_compressed(f, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays))


def load_dataset(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Inverse of save_dataset."""
    with np.load(path) as z:
        return {"train": z["train"], "test": z["test"]}, json.loads(str(z["meta"]))
