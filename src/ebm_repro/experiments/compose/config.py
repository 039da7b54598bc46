"""E11 config (torch-free, so params.yaml validation stays fast): frozen dataclasses for the `compose:` block.

Layout of the block: `paper:` holds every key (the authors' dSprites settings where their code has them);
`smoke:` holds overrides merged on top. The JSON schema is generated from these dataclasses.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ebm_repro.config import (BufferConfig, ConfigError, LossConfig, ModelConfig, OptimConfig, SamplerConfig, _enum,
                              _pos, build_setting_block, setting_block_schema, stable_hash)

# The four conditional EBMs (IGEBM train.py --cond_scale/--cond_pos/--cond_rot/--cond_shape) and the size of
# the latent vector each is conditioned on (data.py DSprites: scale; posX, posY; cos, sin of the orientation;
# one-hot shape).
ATTRIBUTES = ("scale", "position", "rotation", "shape")
LATENT_DIMS = {"scale": 1, "position": 2, "rotation": 2, "shape": 3}
FULL_SIZE = 64  # the archive's image side


@dataclass(frozen=True)
class HeldOutConfig:
    """Latent combinations removed from the EBMs' training data: scale >= scale_at_least AND posX < pos_x_below."""
    scale_at_least: float = _pos(minimum=0.5, maximum=1)
    pos_x_below: float = _pos(minimum=0, maximum=1)


@dataclass(frozen=True)
class NetConfig:
    """The dsprites_net of every attribute (models/dsprites.py)."""
    width: int = _pos()                 # code num_filters (64)
    spectral_norm: bool                 # code FLAGS.spec_norm (True): convs and the hidden dense layer
    activation: str = _enum("leaky_relu", "swish")   # the README's dSprites command passes --swish_act
    sn_init: str = _enum("code", "torch")
    head_init: str = _enum("xavier", "torch")
    cond_gain_offset: bool              # gain = y @ G + cb (code conv_block)


@dataclass(frozen=True)
class ChainInitConfig:
    """Fresh chains x = mean + std * N(0, 1) (IGEBM data.py `random` datasource; ebm_combine.py l.549)."""
    mean: float
    std: float = _pos(minimum=0)


@dataclass(frozen=True)
class IterCounts:
    """Training iterations per attribute (keys = ATTRIBUTES)."""
    scale: int = _pos()
    position: int = _pos()
    rotation: int = _pos()
    shape: int = _pos()


@dataclass(frozen=True)
class ComposeTrainConfig:
    batch_size: int = _pos()
    n_iters: IterCounts
    log_every: int = _pos()
    ckpt_every: int = _pos()           # resumable checkpoint every N iterations
    seed: int = _pos(minimum=0)


@dataclass(frozen=True)
class RegressorConfig:
    """The latent regressor/classifier that scores generated images (our measuring instrument, ICD Tab. 3's role)."""
    width: int = _pos()
    batch_size: int = _pos()
    n_iters: int = _pos()
    lr: float = _pos()
    seed: int = _pos(minimum=0)


@dataclass(frozen=True)
class JointConfig:
    """Test-time sampling of a conjunction (compose.joint_langevin): per_model = IGEBM, sum = ICD (step / K)."""
    mode: str = _enum("per_model", "sum")
    n_steps: int = _pos()
    step_size: float = _pos()
    noise_std: float = _pos(minimum=0)


@dataclass(frozen=True)
class ComposeRow:
    """One row of the table: the attribute models whose energies are summed."""
    models: tuple[str, ...]


@dataclass(frozen=True)
class ComposeEvalConfig:
    n_per_set: int = _pos()    # target latents per set (in-distribution, held-out), drawn from the test split
    batch_size: int = _pos()   # chains sampled at once
    n_figure: int = _pos()     # examples per panel of the figure
    seed: int = _pos(minimum=0)


@dataclass(frozen=True)
class ComposeClaimsConfig:
    """Thresholds of the judged claims (no paper numbers exist for dSprites)."""
    chance_frac: float = _pos(maximum=1)   # an attribute is recovered when its error <= chance_frac x chance error
    ratio: float = _pos(minimum=1)         # "no significant loss": error <= ratio x the reference error
    shape_unreliable: float = _pos(maximum=1)  # shape accuracy below this = "no definitive shapes" (IGEBM §6)


@dataclass(frozen=True)
class ComposeConfig:
    threads: int = _pos()
    dataset: str = _enum("dsprites", "dsprites_gen")   # replaced by settings[setting].stand_ins (smoke)
    image_size: int = _pos()   # the 64x64 images are average-pooled to this side
    held_out: HeldOutConfig
    model: NetConfig
    chain_init: ChainInitConfig
    sampler: SamplerConfig
    buffer: BufferConfig
    loss: LossConfig
    optim: OptimConfig
    train: ComposeTrainConfig
    regressor: RegressorConfig
    joint: JointConfig
    rows: tuple[ComposeRow, ...]
    eval: ComposeEvalConfig
    claims: ComposeClaimsConfig

    def section_hash(self, *sections: str) -> str:
        """Short stable hash of some sections (Snakemake params, provenance)."""
        return stable_hash({s: _plain(getattr(self, s)) for s in sections}, 12)

    def train_hash(self, attribute: str) -> str:
        """What changes one attribute model's training (its own iteration count only)."""
        d = {s: _plain(getattr(self, s)) for s in ("dataset", "image_size", "held_out", "model", "chain_init",
                                                    "sampler", "buffer", "loss", "optim")}
        d.update(attribute=attribute, batch_size=self.train.batch_size, seed=self.train.seed,
                 n_iters=getattr(self.train.n_iters, attribute))
        return stable_hash(d, 16)

    def model_config(self, attribute: str) -> ModelConfig:
        """The dsprites_net of one attribute model."""
        m = self.model
        return ModelConfig(arch="dsprites_net", width=m.width, n_classes=LATENT_DIMS[attribute],
                           spectral_norm=m.spectral_norm, spectral_norm_head=False, dropout=0.0, attention=False,
                           multiscale=False, activation=m.activation, norm="none", image_size=self.image_size,
                           channels=1, sn_init=m.sn_init, head_init=m.head_init, cond_gain_offset=m.cond_gain_offset,
                           residual_skip=True)


def _plain(v):
    """A config value as JSON-able data (dataclasses and tuples of them included)."""
    if dataclasses.is_dataclass(v):
        return dataclasses.asdict(v)
    return [_plain(x) for x in v] if isinstance(v, tuple) else v


def compose_schema() -> dict:
    """JSON schema of params.yaml's `compose:` section (`paper:` complete, `smoke:` overrides)."""
    return setting_block_schema(ComposeConfig)


def check_compose_config(cfg: ComposeConfig, setting: str) -> None:
    """Cross-key rules; raise ConfigError naming the key."""
    where = f"compose ({setting} setting)"
    s = cfg.image_size
    if s > FULL_SIZE or FULL_SIZE % s or s % 16:
        raise ConfigError(f"compose.image_size ({s}) must divide {FULL_SIZE} and be a multiple of 16 (dsprites_net "
                          f"halves it four times) in {where}")
    for i, row in enumerate(cfg.rows):
        bad = [m for m in row.models if m not in ATTRIBUTES]
        if bad or len(set(row.models)) != len(row.models):
            raise ConfigError(f"compose.rows[{i}].models {list(row.models)}: each of {list(ATTRIBUTES)} at most "
                              f"once in {where}")
    if len({r.models for r in cfg.rows}) != len(cfg.rows):
        raise ConfigError(f"compose.rows: a composition is listed twice in {where}")
    if cfg.buffer.size < cfg.train.batch_size:
        raise ConfigError(f"compose.buffer.size < compose.train.batch_size in {where}")
    if cfg.loss.kl_opt_coeff or cfg.loss.kl_ent_coeff:
        raise ConfigError(f"compose.loss: the IGEBM dSprites runs pass --zero_kl; set kl_opt_coeff and kl_ent_coeff "
                          f"to 0 in {where}")
    if cfg.eval.n_figure > cfg.eval.n_per_set:
        raise ConfigError(f"compose.eval.n_figure > compose.eval.n_per_set in {where}")


def compose_config(params: dict, setting: str) -> ComposeConfig:
    """Resolve the compose block for one setting (smoke = paper + smoke overrides, dataset after stand_ins)."""
    cfg = build_setting_block(ComposeConfig, params, "compose", setting)
    stand_in = params["settings"][setting].get("stand_ins", {}).get(cfg.dataset, cfg.dataset)
    if stand_in not in ("dsprites", "dsprites_gen"):
        raise ConfigError(f"settings.{setting}.stand_ins.{cfg.dataset} = {stand_in!r}: compose needs dsprites or "
                          f"dsprites_gen")
    cfg = dataclasses.replace(cfg, dataset=stand_in)
    check_compose_config(cfg, setting)
    return cfg
