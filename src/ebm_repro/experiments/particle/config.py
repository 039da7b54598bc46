"""Particle-dynamics (E10) config: frozen dataclasses built from params.yaml's `particle:` block.

Layout of the block: `paper:` holds every key (paper scale); `smoke:` holds overrides merged on top.
The JSON schema is generated from these dataclasses with config.setting_block_schema.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ebm_repro.config import ConfigError, _enum, _pos, build_setting_block, setting_block_schema, stable_hash

MODELS = ("feedforward", "ebm_ld", "ebm_mppi")  # (a) regressor, (b) EBM + Langevin, (c) EBM + MPPI
# A variant kind is a base kind with the paper's Fig. 15c input and output: positions only (net.rel_scale = 0)
# and, for the regressor, the position itself as output (net.ff_residual = false). `fig15c:` in params.yaml
# says which of them run.
FIG15C = "_fig15c"
ALL_KINDS = MODELS + tuple(k + FIG15C for k in MODELS)
CONTEXT = 3  # past positions given to every model (IGEBM §5.1)


@dataclass(frozen=True)
class PhysicsConfig:
    """One ball in a square box; units: box side = 1 length unit, time in seconds."""
    box_size: float = _pos()
    radius: float = _pos()            # the ball's centre stays in [radius, box_size - radius]
    dt: float = _pos()                # seconds between two recorded positions
    substeps: int = _pos()            # integration substeps per recorded step
    drag: float = _pos(minimum=0)     # quadratic air drag c: dv/dt = -c |v| v   (1/length)
    friction: float = _pos(minimum=0)  # Coulomb rolling friction deceleration mu*g (length/s^2)
    speed_min: float = _pos(minimum=0)  # initial speed ~ U(speed_min, speed_max) (length/s)
    speed_max: float = _pos()


@dataclass(frozen=True)
class DataConfig:
    n_train: int = _pos()
    n_test: int = _pos()
    n_steps: int = _pos()   # recorded positions per trajectory
    seed: int = _pos(minimum=0)


@dataclass(frozen=True)
class NetConfig:
    """Fig. 15c: FC width -> self-attention -> Conv1D channels -> Conv1D channels -> dense."""
    width: int = _pos()
    channels: int = _pos()
    kernel_size: int = _pos()
    slope: float = _pos(minimum=0, maximum=1)  # leaky ReLU slope (IGEBM: piecewise-linear activations)
    rel_scale: float = _pos(minimum=0)  # >0: also feed (x - last observed x) / rel_scale per step; 0 = positions only
    ff_residual: bool                   # feed-forward outputs last position + rel_scale * dense (else the position)


@dataclass(frozen=True)
class LangevinConfig:
    """x <- x - step_size * clip(dE/dx) + N(0, noise_std); chains start at the last observed position."""
    n_steps: int = _pos()
    step_size: float = _pos()
    noise_std: float = _pos(minimum=0)
    grad_clip: float = _pos(minimum=0)  # per-element clip of dE/dx; 0 = off


@dataclass(frozen=True)
class MPPIConfig:
    """IGEBM Eq. 5: x <- sum_i softmax(-E(x_i)) x_i, x_i = x + N(0, noise_std), i = 1..n_samples."""
    n_steps: int = _pos()
    n_samples: int = _pos()
    noise_std: float = _pos()


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = _pos()
    lr: float = _pos()
    beta1: float = _pos(minimum=0, exclusiveMaximum=1)
    beta2: float = _pos(minimum=0, exclusiveMaximum=1)
    ml_weighting: str = _enum("softmax", "mean")  # softmax: IGEBM Eq. 8; mean: contrastive divergence
    kl_coeff: float = _pos(minimum=0)   # weight of L_KL (Eq. 9)
    l2_coeff: float = _pos(minimum=0)   # weight of L_Reg (Eq. 10)
    n_seeds: int = _pos()               # training seeds 0..n_seeds-1
    # One stopping rule for every model kind (plateau.Plateau): held-out one-step MSE every eval_every
    # iterations; stop after `patience` evaluations without a relative improvement of min_rel_improvement,
    # or at max_iters; the best-validation weights are kept.
    max_iters: int = _pos()
    eval_every: int = _pos()
    patience: int = _pos()
    min_rel_improvement: float = _pos(minimum=0, exclusiveMaximum=1)
    val_traj: int = _pos()              # the last val_traj training trajectories are held out (never the test set)
    val_windows: int = _pos()           # fixed (past, next) windows drawn once from them
    val_seed: int = _pos(minimum=0)     # draws those windows and the samplers' noise at validation


@dataclass(frozen=True)
class EvalConfig:
    horizon: int = _pos()     # rollout length (steps fed back)
    n_starts: int = _pos()    # rollout start times per test trajectory, evenly spaced
    batch_size: int = _pos()
    seed: int = _pos(minimum=0)   # sampler noise at test time
    probe_windows: int = _pos()   # diagnosis: test windows (free flight, and bounces) the seed-0 models are probed on


@dataclass(frozen=True)
class Fig15cConfig:
    """Which base kinds also run as a Fig. 15c-input variant (an extra row each)."""
    feedforward: bool
    ebm_ld: bool
    ebm_mppi: bool


def base_kind(kind: str) -> str:
    """'ebm_ld_fig15c' -> 'ebm_ld'; a base kind maps to itself; anything else is an error."""
    base = kind.removesuffix(FIG15C)
    if base not in MODELS or kind not in ALL_KINDS:
        raise ValueError(f"unknown particle model kind {kind!r}; choose one of {', '.join(ALL_KINDS)}")
    return base


@dataclass(frozen=True)
class ParticleConfig:
    threads: int = _pos()
    physics: PhysicsConfig
    data: DataConfig
    net: NetConfig
    langevin: LangevinConfig
    mppi: MPPIConfig
    train: TrainConfig
    eval: EvalConfig
    fig15c: Fig15cConfig

    @property
    def kinds(self) -> tuple[str, ...]:
        """Model kinds of this setting's DAG: the three base kinds, then the enabled Fig. 15c variants."""
        return MODELS + tuple(k + FIG15C for k in MODELS if getattr(self.fig15c, k))

    def net_for(self, kind: str) -> NetConfig:
        """The net of one kind: `net`, or for a Fig. 15c variant `net` with positions-only input and output."""
        if base_kind(kind) == kind:
            return self.net
        return dataclasses.replace(self.net, rel_scale=0.0, ff_residual=False)

    def section_hash(self, *sections: str) -> str:
        """Short stable hash of some sections (for provenance and Snakemake params)."""
        return stable_hash({s: dataclasses.asdict(getattr(self, s)) for s in sections}, 12)

    def train_hash(self, kind: str) -> str:
        """Hash of what changes one model kind's training (of the samplers, only its own)."""
        d = {s: dataclasses.asdict(getattr(self, s)) for s in ("physics", "data", "train")}
        d["net"] = dataclasses.asdict(self.net_for(kind))
        d["sampler"] = {"ebm_ld": dataclasses.asdict(self.langevin),
                        "ebm_mppi": dataclasses.asdict(self.mppi)}.get(base_kind(kind))
        return stable_hash(d, 12)


def particle_schema() -> dict:
    """JSON schema of params.yaml's `particle:` section."""
    return setting_block_schema(ParticleConfig)


def check_particle_config(cfg: ParticleConfig, setting: str) -> None:
    """Cross-key rules; raise ConfigError naming the key."""
    where = f"particle ({setting} setting)"
    p, d, e = cfg.physics, cfg.data, cfg.eval
    if 2 * p.radius >= p.box_size:
        raise ConfigError(f"physics.radius must be < box_size / 2 in {where}")
    if p.speed_min > p.speed_max:
        raise ConfigError(f"physics.speed_min > physics.speed_max in {where}")
    # Reflection handles one wall crossing per substep; faster balls would tunnel.
    if p.speed_max * p.dt / p.substeps >= p.box_size - 2 * p.radius:
        raise ConfigError(f"physics: speed_max * dt / substeps must be below the free box width in {where}; "
                          f"raise substeps")
    if CONTEXT + e.horizon > d.n_steps:
        raise ConfigError(f"eval.horizon ({e.horizon}) + {CONTEXT} > data.n_steps ({d.n_steps}) in {where}")
    if cfg.net.ff_residual and cfg.net.rel_scale == 0:
        raise ConfigError(f"net.ff_residual needs net.rel_scale > 0 (the residual's scale) in {where}")
    t = cfg.train
    if t.val_traj >= d.n_train:
        raise ConfigError(f"train.val_traj ({t.val_traj}) must be below data.n_train ({d.n_train}) in {where}")
    if t.eval_every > t.max_iters:
        raise ConfigError(f"train.eval_every ({t.eval_every}) exceeds train.max_iters ({t.max_iters}) in {where}")
    if d.n_steps <= CONTEXT:
        raise ConfigError(f"data.n_steps must exceed {CONTEXT} in {where}")


def particle_config(params: dict, setting: str) -> ParticleConfig:
    """Resolve the particle block for one setting (smoke = paper + smoke overrides)."""
    cfg = build_setting_block(ParticleConfig, params, "particle", setting)
    check_particle_config(cfg, setting)
    return cfg
