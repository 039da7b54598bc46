"""2-D toy config (torch-free, so params.yaml validation stays fast): frozen dataclasses for `toy2d:`.

Layout of the block: `paper:` holds every key (full-size run); `smoke:` holds overrides merged on top.
The JSON schema is generated from these dataclasses with config.setting_block_schema.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ebm_repro.config import (BufferConfig, ConfigError, LossConfig, OptimConfig, SamplerConfig, _enum, _pos,
                              build_setting_block, setting_block_schema, stable_hash)

DENSITIES = ("gauss8", "rings")
RECIPES = ("igebm_cd", "igebm_ml", "icd_cd", "icd_kl")


@dataclass(frozen=True)
class DensityConfig:
    """The targets, centred in [0, 1]^2: 8 equal Gaussians on a circle; two rings, uniform per arc length."""
    gauss_radius: float = _pos(maximum=0.45)
    gauss_std: float = _pos()
    ring_inner: float = _pos(maximum=0.45)
    ring_outer: float = _pos(maximum=0.45)
    ring_std: float = _pos()


@dataclass(frozen=True)
class ToyModelConfig:
    width: int = _pos()          # hidden units of the mlp2d energy
    input_scale: float = _pos()  # the net sees input_scale * (x - 0.5) (see ToyEnergy)


@dataclass(frozen=True)
class ToyRecipeConfig:
    """One training recipe: the image recipe's sampler/buffer/loss/optim sections, on an MLP energy."""
    spectral_norm: bool
    activation: str = _enum("leaky_relu", "swish")
    sampler: SamplerConfig
    buffer: BufferConfig
    loss: LossConfig
    optim: OptimConfig


@dataclass(frozen=True)
class ToyRecipes:
    igebm_cd: ToyRecipeConfig
    igebm_ml: ToyRecipeConfig
    icd_cd: ToyRecipeConfig
    icd_kl: ToyRecipeConfig


@dataclass(frozen=True)
class ToyTrainConfig:
    batch_size: int = _pos()
    n_iters: int = _pos()
    log_every: int = _pos()      # learning-curve points (buffer and energy KL) in metrics.json
    seed: int = _pos(minimum=0)


@dataclass(frozen=True)
class ToyEvalConfig:
    grid: int = _pos(minimum=8)      # cells per side of the grid on which exp(-E/T) is normalised
    bins: int = _pos(minimum=2)      # cells per side of the sample histogram (kl_samples)
    n_samples: int = _pos(minimum=2)  # model samples, and true samples for the MMD and the figure
    sample_steps: int = _pos(minimum=0)  # Langevin steps on buffer draws at test time


@dataclass(frozen=True)
class Toy2DConfig:
    threads: int = _pos()
    density: DensityConfig
    model: ToyModelConfig
    train: ToyTrainConfig
    eval: ToyEvalConfig
    recipes: ToyRecipes

    def hash(self) -> str:
        """Short stable hash, a Snakemake param: editing the toy2d block re-runs the rule."""
        return stable_hash(dataclasses.asdict(self), 12)


def toy2d_schema() -> dict:
    """JSON schema of params.yaml's `toy2d:` section (`paper:` complete, `smoke:` overrides)."""
    return setting_block_schema(Toy2DConfig)


def temperature(s: SamplerConfig) -> float:
    """x + N(0, s^2) - lam dE/dx is Langevin dynamics for exp(-E / T) with T = s^2 / (2 lam).

    IGEBM Eq. 4 sets lam and s independently: its image values (lam 10, s 0.005) give T = 1.25e-6.
    """
    return s.noise_std ** 2 / (2 * s.step_size)


def check_toy2d_config(cfg: Toy2DConfig, setting: str) -> None:
    """Cross-key rules; raise ConfigError naming the key."""
    where, d = f"toy2d ({setting} setting)", cfg.density
    if not d.ring_inner < d.ring_outer:
        raise ConfigError(f"toy2d density.ring_inner must be < density.ring_outer in {where}")
    if max(d.gauss_radius + 4 * d.gauss_std, d.ring_outer + 4 * d.ring_std) > 0.5:
        raise ConfigError(f"toy2d density: radius + 4 std must stay <= 0.5, inside the sampler's clamped square, "
                          f"in {where}")
    for name in RECIPES:
        r: ToyRecipeConfig = getattr(cfg.recipes, name)
        if r.loss.kl_opt_chains > cfg.train.batch_size:
            raise ConfigError(f"toy2d recipes.{name}.loss.kl_opt_chains > train.batch_size in {where}")
        if r.buffer.size < cfg.train.batch_size:
            raise ConfigError(f"toy2d recipes.{name}.buffer.size < train.batch_size in {where}")
        if r.sampler.noise_std == 0:
            raise ConfigError(f"toy2d recipes.{name}.sampler.noise_std must be > 0: it sets the temperature "
                              f"of exp(-E/T) in {where}")
        if r.optim.ema_decay > 0 and r.optim.ema_decay ** cfg.train.n_iters > 0.01:
            raise ConfigError(f"toy2d recipes.{name}.optim.ema_decay: the EMA still holds > 1% of the initial "
                              f"weights after train.n_iters in {where}")


def toy2d_config(params: dict, setting: str) -> Toy2DConfig:
    """Resolve the toy2d block for one setting (smoke = paper + smoke overrides)."""
    cfg = build_setting_block(Toy2DConfig, params, "toy2d", setting)
    check_toy2d_config(cfg, setting)
    return cfg
