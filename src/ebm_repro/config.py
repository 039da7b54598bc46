"""Typed, frozen configuration resolved from params.yaml (the one source of truth).

Resolution order for a trained variant (later wins):
    recipes[recipe]  ->  presets[preset][recipe]  ->  variants[variant].overrides
    ->  variants[variant].preset_overrides[preset]  ->  settings[setting].overrides
    ->  variants[variant].setting_overrides[setting]   (e.g. a smaller smoke run for one experiment)
A variant's dataset is variants[variant].dataset (default settings[setting].dataset), replaced by
settings[setting].stand_ins[dataset] when the setting has one (smoke: generated data).
`preset` picks the hyperparameter source where paper text and authors' code disagree
(../shared/spec/methods.md); `setting` picks paper scale or the laptop-sized smoke run.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


REPO_ROOT = Path(__file__).resolve().parents[2]
PARAMS_PATH = REPO_ROOT / "params.yaml"


class ConfigError(ValueError):
    """A params.yaml value is wrong; the message names the key and the fix."""


# Hyperparameter sources where paper text and authors' code disagree (../shared/spec/methods.md):
# code = the authors' public code at the commits of docs/fidelity.md; code_2020 = ICD's paper-era first release
# (54b46ad: no residual skip, 5% buffer re-init); paper_text = what the papers' text states.
PRESETS = ("code", "code_2020", "paper_text")


# Image shape (H, W, C) of every dataset data.py can prepare; the schema's dataset names come from here.
DATASET_SHAPES: dict[str, tuple[int, int, int]] = {
    "cifar10": (32, 32, 3),
    "shapes": (32, 32, 3),          # smoke stand-in for CIFAR-10
    "mnist": (28, 28, 1),           # ICD App. D.1 (E15)
    "shapes_gray28": (28, 28, 1),   # smoke stand-in for MNIST
    "dsprites": (64, 64, 1),        # E11 (IGEBM §6); labels are grid indices (datasets_dsprites.py)
    "dsprites_gen": (64, 64, 1),    # its procedural stand-in (smoke, tests)
    # E17-E19: downloads that need an account, converted from a local path (datasets_large.py)
    "imagenet32": (32, 32, 3),      # Downsampled ImageNet 32x32 (IGEBM Fig. 11, ICD Fig. 3)
    "celebahq128": (128, 128, 3),   # CelebA-HQ at 128 (ICD Fig. 3, 4)
    "lsun_bedroom128": (128, 128, 3),  # LSUN bedroom at 128 (ICD App. B.2)
    # E19: CelebA-HQ 128 labelled by one attribute each (ICD Tab. 3), made from celebahq128
    "celebahq128_young": (128, 128, 3),
    "celebahq128_female": (128, 128, 3),
    "celebahq128_smiling": (128, 128, 3),
    "celebahq128_wavy": (128, 128, 3),
}


def stable_hash(data: Any, n: int) -> str:
    """First n hex digits of the sha256 of data as sorted-key JSON: equal settings, equal hash, any machine."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:n]


def _pos(**kw: Any) -> Any:
    """Field metadata: JSON-schema bounds for a number (exclusiveMinimum 0 by default)."""
    return field(metadata={"schema": kw or {"exclusiveMinimum": 0}})


def _enum(*values: str) -> Any:
    return field(metadata={"schema": {"enum": list(values)}})


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class ModelConfig:
    """Energy network E(x[, y]) -> (B,)."""
    arch: str = _enum("igebm_resnet32_large", "igebm_resnet32_large_fig15b", "igebm_resnet32",
                      "igebm_resnet32_wider", "icd_resnet", "icd_celeba", "mlp2d", "dsprites_net")
    width: int = _pos()               # base channels (IGEBM F=128, ICD 64)
    n_classes: int = _pos(minimum=0)  # 0 = unconditional; dsprites_net: size of the latent vector y
    spectral_norm: bool        # IGEBM: convs + hidden dense layers; ICD: off
    spectral_norm_head: bool   # SN on the final dense -> 1 too: IGEBM paper "all layers"; code: not the final one
    dropout: float = _pos(minimum=0, maximum=0.99)  # IGEBM code: 0.5 after first conv of each block
    attention: bool           # ICD: SAGAN self-attention at 8x8
    multiscale: bool          # ICD: energies at full, half, quarter resolution
    activation: str = _enum("leaky_relu", "swish")
    norm: str = _enum("none", "group", "instance")  # ICD paper: group; code: instance (C <= 128) / group
    image_size: int = _pos()
    channels: int = _pos()
    # IGEBM code (utils.py get_weight): spectral-normed weights start N(0, 1); torch: its default (Kaiming-uniform)
    sn_init: str = _enum("code", "torch")
    head_init: str = _enum("xavier", "torch")  # IGEBM code: Xavier-uniform dense head, zero bias; ICD: torch default
    cond_gain_offset: bool     # IGEBM code: conditional gain = g[y] + cb, cb a shared learned offset (conv_block)
    residual_skip: bool        # ICD HEAD: x_out = x + x_orig in CondResBlock; paper-era code (54b46ad): no skip


@dataclass(frozen=True)
class SamplerConfig:
    """Langevin dynamics x <- clamp(x + N(0, noise) - step * clip(dE/dx))."""
    n_steps: int = _pos()
    step_size: float = _pos()
    noise_std: float = _pos(minimum=0)
    grad_clip: float = _pos(minimum=0)  # per-element clip of dE/dx; 0 = off (ICD)
    clamp: bool


@dataclass(frozen=True)
class BufferConfig:
    """Replay buffer of past negatives, stored as uint8."""
    size: int = _pos()
    reinit_frac: float = _pos(minimum=0, maximum=1)
    reservoir: bool
    # code (both papers' compress/decompress_x_mod): store floor(255 x), read back k/256 + U(0, 1/256);
    # round: store round(255 x), read back k/255
    quantize: str = _enum("code", "round")


@dataclass(frozen=True)
class LossConfig:
    """Training objective: L_CD or L_ML, + L2 energy regulariser, + ICD's L_KL = L_opt + L_ent."""
    kind: str = _enum("cd", "ml")       # cd: IGEBM/ICD code; ml: IGEBM Eq. 8 (softmax-weighted)
    l2_coeff: float = _pos(minimum=0)
    kl_opt_coeff: float = _pos(minimum=0)   # ICD Eq. 6 (through the last Langevin step)
    kl_ent_coeff: float = _pos(minimum=0)   # ICD Eq. 7 (code: 0.3)
    kl_opt_chains: int = _pos()             # code: first 128 chains
    kl_all_steps: bool              # E15: backprop L_opt through every Langevin step
    ent_n_neighbours: int = _pos()          # |B| = 100 past samples
    ent_min_buffer: int = _pos(minimum=0)   # code: L_ent active once the buffer holds > 1000
    ent_bank_augment: bool          # code: the 100 past samples of L_ent are augmented first; paper: plain
    ent_bank_after_push: bool       # code: the bank is drawn after this batch's chains entered the buffer
    multiscale_reduce: str = _enum("mean", "sum")  # code: loss averages per-scale energies; paper §2.4: sum


@dataclass(frozen=True)
class AugmentConfig:
    """ICD data-augmentation transitions applied to buffer samples before each chain."""
    enabled: bool
    crop_scale_min: float = _pos(maximum=1)
    hflip: bool
    jitter_strength: float = _pos(minimum=0)  # ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) with s = strength... (see augment.py)
    jitter_p: float = _pos(minimum=0, maximum=1)
    grayscale_p: float = _pos(minimum=0, maximum=1)
    fresh_chains: bool        # also augment chains re-initialised from noise (code: only buffer draws)
    # Gaussian blur with probability blur_p, sigma ~ U(min, max): named in ICD §2.3; the code's CIFAR-10 training
    # transform has it commented out (utils.py l.217-218), its other datasets use GaussianBlur(kernel_size=5)
    blur_p: float = _pos(minimum=0, maximum=1)
    blur_kernel: int = _pos(minimum=1)
    blur_sigma_min: float = _pos()
    blur_sigma_max: float = _pos()


@dataclass(frozen=True)
class OptimConfig:
    lr: float = _pos()
    beta1: float = _pos(minimum=0, exclusiveMaximum=1)
    beta2: float = _pos(minimum=0, exclusiveMaximum=1)
    adam_std_clip: bool      # IGEBM code: clip each grad element to 3*sqrt(v_hat)+0.1
    # tf: custom_adam.py, from step 1, v of the previous steps bias-corrected with beta2^t (t = this step);
    # lagged: from step 2, bias-corrected with beta2^(t-1)
    std_clip_form: str = _enum("tf", "lagged")
    grad_norm_clip: float = _pos(minimum=0)  # ICD code: 0.5; 0 = off
    ema_decay: float = _pos(minimum=0, exclusiveMaximum=1)  # 0 = no EMA


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = _pos()
    n_iters: int = _pos()
    ckpt_every: int = _pos()
    snapshot_every: int = _pos()     # IGEBM historical ensemble: snapshots every 300 iterations
    n_snapshots: int = _pos()        # ... of which the last 10 are kept
    log_every: int = _pos()
    max_abs_energy: float = _pos(minimum=0)  # ICD code aborts when |mean E(x+)| > 10; 0 = off
    seed: int = _pos(minimum=0)
    eval_every: int = _pos(minimum=0)    # IS/FID of the replay buffer every N steps (E4 curves); 0 = off
    eval_n_samples: int = _pos()         # buffer samples scored at each evaluation


@dataclass(frozen=True)
class TestSamplingConfig:
    """Test-time generation (generate.py): images are made in chunks of n_chains, each chunk n_iters iterations.

    protocol: fresh_chains = every chain of a chunk refined every iteration, new noise per chunk;
    chunk_buffer = IGEBM test_inception.py: a new buffer per chunk, draw_size chains drawn per iteration;
    persistent_buffer = ICD test_inception.py: ONE buffer kept across all chunks, draw_size chains per iteration.
    """
    protocol: str = _enum("fresh_chains", "chunk_buffer", "persistent_buffer")
    n_chains: int = _pos()           # images kept per chunk (code: 1000)
    draw_size: int = _pos()          # buffer protocols: chains drawn and refined per iteration (code: 512)
    draw_with_replacement: bool      # code: random.randint per draw, so a chain can be drawn twice
    n_iters: int = _pos()            # iterations per chunk (IGEBM code 2 x repeat_scale = 200; ICD command 60)
    steps_per_iter: int = _pos()
    step_size: float = _pos()
    grad_clip: float = _pos(minimum=0)
    noise_std: float = _pos(minimum=0)
    reinit_frac: float = _pos(minimum=0, maximum=1)   # IGEBM code: 1% of drawn chains reset per iteration
    label_redraw_frac: float = _pos(minimum=0, maximum=1)  # conditional: 10% labels redrawn per iteration
    final_iters_fixed: int = _pos(minimum=0)  # code `nomix`: no resets/redraws/augmentation in the last iterations
    final_sweep_parts: int = _pos(minimum=0)  # ICD code: the last iterations refine fixed slices (1000 // 2), 0 = draw
    augment_every_iter: bool   # ICD: augmentation transition on every drawn chain before its iteration
    blur_p: float = _pos(minimum=0, maximum=1)   # ICD test_inception.py: Gaussian blur with probability 0.5 ...
    blur_kernel: int = _pos(minimum=1)           # ... kernel 5 (odd) ...
    blur_sigma_min: float = _pos()               # ... sigma ~ U(0.1, 2.0)
    blur_sigma_max: float = _pos()
    quantize: str = _enum("code", "round")  # output uint8: code rescale_im floor(clip(256 x, 0, 255)); round(255 x)
    use_ema: bool


@dataclass(frozen=True)
class ScoreConfig:
    """How a recipe's samples are scored, where the two papers' codes differ (metrics.py)."""
    fid_reference: str = _enum("train", "train_10k", "train_test")  # IGEBM code: all 60k; ICD code: 10k train
    is_shuffle: bool    # ICD code shuffles the 50k images before the IS splits; IGEBM code keeps their order


@dataclass(frozen=True)
class RecipeConfig:
    """Everything a training algorithm needs; one per recipe in params.yaml."""
    model: ModelConfig
    sampler: SamplerConfig
    buffer: BufferConfig
    loss: LossConfig
    augment: AugmentConfig
    optim: OptimConfig
    train: TrainConfig
    test_sampling: TestSamplingConfig
    metrics: ScoreConfig


@dataclass(frozen=True)
class RuntimeConfig:
    """How the hot path runs (train.py, generate.py, augment.py; docs/speed.md), not what it computes.

    Exact switches give the same numbers as the reference; `channels_last` and `compile` the same maths to float
    rounding (parity tests: tests/test_fast_path.py). Switches that change results (`precision` other than fp32,
    `augment: batched`) enter the training hash (RunConfig.training_hash). Defaults = the reference path.
    """
    data_on_device: bool = False     # exact: dataset (uint8) and replay buffer live on the training device
    host_sync: str = field(default="step", metadata={"schema": {"enum": ["step", "log"]}})  # exact: read losses at log steps
    channels_last: bool = False      # same maths: NHWC weights/activations (chains keep NCHW, so noise is unchanged)
    compile: bool = False            # same maths: torch.compile of the energy for the Langevin steps without a graph
    # fp32: true fp32 (TF32 off on GPUs); tf32 / bf16: the Langevin energy-gradient steps in TF32 / bf16 autocast
    precision: str = field(default="fp32", metadata={"schema": {"enum": ["fp32", "tf32", "bf16"]}})
    # torchvision: the per-image v2 transform on the CPU (reference); batched: the same distribution, one batched
    # draw on the training device (augment.batched_augment; a different random stream)
    augment: str = field(default="torchvision", metadata={"schema": {"enum": ["torchvision", "batched"]}})
    # processes (GPUs of one node) of the train rule: > 1 launches torchrun + DDP; train.batch_size stays global
    n_gpus: int = field(default=1, metadata={"schema": {"type": "integer", "minimum": 1}})
    # per_rank: one replay buffer and random stream per rank (ICD code); shared: every rank draws the whole batch's
    # chains from one buffer and stream and keeps its rows (= one process up to float rounding; for tests)
    ddp_buffer: str = field(default="per_rank", metadata={"schema": {"enum": ["per_rank", "shared"]}})

    def result_keys(self) -> dict:
        """The switches that change results (non-default values only, so the reference path's hash is unchanged)."""
        return {k: v for k, v in (("precision", self.precision), ("augment", self.augment))
                if v != getattr(RuntimeConfig, k)}


@dataclass(frozen=True)
class MetricsConfig:
    n_samples: int = _pos()
    n_splits: int = _pos()
    feature_net: str = _enum("inception", "smoke_classifier")
    batch_size: int = _pos()


@dataclass(frozen=True)
class RunConfig:
    """A fully resolved variant: what train/sample/metrics receive."""
    setting: str
    preset: str
    variant: str
    recipe: str
    dataset: str          # the prepared dataset (after the setting's stand_ins)
    prefix: str
    hp: RecipeConfig
    metrics: MetricsConfig
    runtime: RuntimeConfig = RuntimeConfig()   # params.yaml runtime[setting]; the reference path by default

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self, section: str | None = None) -> str:
        """Stable short hash of the config (or of one hp section), for provenance and resume checks."""
        d = self.to_dict() if section is None else dataclasses.asdict(getattr(self.hp, section))
        return stable_hash(d, 16)

    def training_hash(self) -> str:
        """Hash of everything that changes training (not test sampling or metrics)."""
        d = dataclasses.asdict(self.hp)
        d.pop("test_sampling")
        d.pop("metrics")
        d.update(dataset=self.dataset, recipe=self.recipe)
        if self.runtime.result_keys():  # runtime switches that change results (none on the reference path)
            d["runtime"] = self.runtime.result_keys()
        return stable_hash(d, 16)


# ----------------------------------------------------------------------------- schema
def _type_schema(tp: Any) -> dict:
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    raise TypeError(tp)


def _item_type(tp: Any) -> Any:
    """X of a `tuple[X, ...]` field (a list in params.yaml), else None."""
    args = typing.get_args(tp)
    return args[0] if typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis else None


def dataclass_schema(cls: type, partial: bool = False) -> dict:
    """JSON schema of a config dataclass; `partial` = every key optional (override blocks).

    Field types: bool, int, float, str, a nested dataclass, or tuple[X, ...] of those (a non-empty list).
    """
    hints = typing.get_type_hints(cls)
    props, required = {}, []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        item = _item_type(tp)
        if dataclasses.is_dataclass(tp):
            props[f.name] = dataclass_schema(tp, partial)
        elif item is not None:
            one = dataclass_schema(item, partial) if dataclasses.is_dataclass(item) else _type_schema(item)
            props[f.name] = {"type": "array", "items": one, "minItems": 1, **f.metadata.get("schema", {})}
        else:
            props[f.name] = {**_type_schema(tp), **f.metadata.get("schema", {})}
        if f.default is dataclasses.MISSING:
            required.append(f.name)
    s = {"type": "object", "additionalProperties": False, "properties": props}
    if not partial:
        s["required"] = required
    return s


# ----------------------------------------------------------------------------- loading
def _deep_merge(base: dict, over: dict | None) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def setting_block_schema(cls: type, smoke_required: bool = True) -> dict:
    """JSON schema of a block read by build_setting_block: `paper:` complete, `smoke:` overrides of it."""
    return {"type": "object", "additionalProperties": False,
            "required": ["paper", "smoke"] if smoke_required else ["paper"],
            "properties": {"paper": dataclass_schema(cls), "smoke": dataclass_schema(cls, partial=True)}}


def build_setting_block(cls: type, params: dict, key: str, setting: str) -> Any:
    """Dataclass `cls` from params[key]: its `paper` mapping, with its `smoke` one merged over it for smoke."""
    if setting not in ("paper", "smoke"):
        raise ConfigError(f"unknown setting {setting!r}; choose paper or smoke")
    if key not in params:
        raise ConfigError(f"params.yaml has no `{key}:` block")
    block = params[key]
    return from_dict(cls, block["paper"] if setting == "paper" else _deep_merge(block["paper"], block.get("smoke")))


def _value(tp: Any, v: Any) -> Any:
    item = _item_type(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, v)
    if item is not None:
        return tuple(_value(item, x) for x in v)
    return float(v) if tp is float else v


def from_dict(cls: type, d: dict) -> Any:
    """A frozen config dataclass from its (validated) params.yaml mapping; absent optional keys keep defaults."""
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _value(hints[f.name], d[f.name]) for f in dataclasses.fields(cls) if f.name in d})


def check_run_config(cfg: RunConfig) -> None:
    """Cross-key rules of one resolved variant."""
    hp, where = cfg.hp, f"variant {cfg.variant!r} ({cfg.setting} setting)"
    if hp.loss.kl_opt_chains > hp.train.batch_size:
        raise ConfigError(f"loss.kl_opt_chains ({hp.loss.kl_opt_chains}) > train.batch_size "
                          f"({hp.train.batch_size}) in {where}; lower kl_opt_chains")
    if hp.buffer.size < hp.train.batch_size:
        raise ConfigError(f"buffer.size ({hp.buffer.size}) < train.batch_size ({hp.train.batch_size}) in {where}")
    ts = hp.test_sampling
    if ts.final_iters_fixed > ts.n_iters:
        raise ConfigError(f"test_sampling.final_iters_fixed > test_sampling.n_iters in {where}")
    if ts.protocol != "fresh_chains":
        if ts.draw_size > ts.n_chains:
            raise ConfigError(f"test_sampling.draw_size ({ts.draw_size}) > n_chains ({ts.n_chains}) in {where}")
        fill = -(-ts.n_chains // ts.draw_size)  # iterations that start chains from noise until the buffer is full
        if fill > ts.n_iters - ts.final_iters_fixed:
            raise ConfigError(f"test_sampling: filling the buffer takes {fill} iterations (n_chains / draw_size), "
                              f"more than n_iters - final_iters_fixed = {ts.n_iters - ts.final_iters_fixed} in "
                              f"{where}; raise n_iters or draw_size")
        if ts.final_sweep_parts and ts.n_chains % ts.final_sweep_parts:
            raise ConfigError(f"test_sampling.final_sweep_parts ({ts.final_sweep_parts}) must divide n_chains "
                              f"({ts.n_chains}) in {where}")
    if ts.blur_p > 0 and (ts.blur_kernel % 2 == 0 or ts.blur_sigma_min > ts.blur_sigma_max):
        raise ConfigError(f"test_sampling.blur_kernel must be odd and blur_sigma_min <= blur_sigma_max in {where}")
    if hp.test_sampling.use_ema and hp.optim.ema_decay == 0:
        raise ConfigError(f"test_sampling.use_ema is true but optim.ema_decay is 0 in {where}; "
                          f"set optim.ema_decay (ICD: 0.9999 paper, 0.99 code) or use_ema: false")
    if hp.model.multiscale and hp.model.image_size % 4:
        raise ConfigError(f"model.multiscale needs image_size divisible by 4 in {where}")
    if hp.model.multiscale and hp.loss.kind == "ml" and hp.loss.multiscale_reduce == "mean":
        raise ConfigError(f"loss.kind 'ml' weights whole-image energies; with model.multiscale set "
                          f"loss.multiscale_reduce: sum in {where}")
    if hp.model.spectral_norm_head and not hp.model.spectral_norm:
        raise ConfigError(f"model.spectral_norm_head needs model.spectral_norm in {where}")
    h, w, c = DATASET_SHAPES[cfg.dataset]
    if hp.model.arch != "mlp2d" and (hp.model.image_size, hp.model.image_size, hp.model.channels) != (h, w, c):
        raise ConfigError(f"model.image_size/channels ({hp.model.image_size}, {hp.model.channels}) do not fit "
                          f"dataset {cfg.dataset!r} ({h}x{w}x{c}) in {where}; set them in the variant's overrides")
    if hp.train.eval_every and hp.train.eval_n_samples > hp.buffer.size:
        raise ConfigError(f"train.eval_n_samples ({hp.train.eval_n_samples}) > buffer.size ({hp.buffer.size}) "
                          f"in {where}: the evaluation scores buffer samples")
    if hp.train.snapshot_every * hp.train.n_snapshots > hp.train.n_iters:
        raise ConfigError(f"train.snapshot_every * train.n_snapshots ({hp.train.snapshot_every} x "
                          f"{hp.train.n_snapshots}) exceeds train.n_iters ({hp.train.n_iters}) in {where}: "
                          f"the historical ensemble would not have its snapshots")


@dataclass(frozen=True)
class StabilityRule:
    """When a training run counts as stable (ICD §3.1 / Fig. 8): read by every table and figure that judges runs."""
    gap_bound: float = _pos()              # |E(x+) - E(x-)| at most this ...
    late_frac: float = _pos(maximum=1)     # ... at every logged step of the last late_frac of training


def core_schema() -> dict:
    """JSON schema of the algorithm's part of params.yaml (recipes, presets, variants, settings, stability_rule).

    params.py adds each experiment's block to it (this module knows no experiment).
    """
    recipe, override = dataclass_schema(RecipeConfig), dataclass_schema(RecipeConfig, partial=True)
    name = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}
    dataset = {"enum": sorted(DATASET_SHAPES)}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ebm-repro params.yaml",
        "type": "object",
        "additionalProperties": False,
        "required": ["setting", "preset", "recipes", "presets", "variants", "settings", "stability_rule", "runtime"],
        "properties": {
            "setting": {"enum": ["paper", "smoke"]},
            "preset": {"enum": list(PRESETS)},
            "recipes": {"type": "object", "minProperties": 1, "additionalProperties": recipe},
            "presets": {
                "type": "object", "additionalProperties": False, "required": list(PRESETS),
                "properties": {p: {"type": "object", "additionalProperties": override} for p in PRESETS},
            },
            "variants": {
                "type": "object", "minProperties": 1, "propertyNames": name,
                "additionalProperties": {
                    "type": "object", "additionalProperties": False, "required": ["recipe", "description"],
                    "properties": {"recipe": {"type": "string"}, "description": {"type": "string"},
                                   "dataset": dataset,  # default: the setting's dataset
                                   "overrides": override,
                                   # applied after the variant's overrides under one preset (a variant whose
                                   # paper text and code differ in a way its recipe's preset does not say)
                                   "preset_overrides": {"type": "object", "additionalProperties": False,
                                                        "properties": {p: override for p in PRESETS}},
                                   # applied after settings[s].overrides: per-experiment smoke shrinks
                                   "setting_overrides": {"type": "object", "additionalProperties": False,
                                                         "properties": {"paper": override, "smoke": override}}},
                },
            },
            "settings": {
                "type": "object", "additionalProperties": False, "required": ["paper", "smoke"],
                "properties": {s: {
                    "type": "object", "additionalProperties": False,
                    "required": ["prefix", "dataset", "metrics", "overrides"],
                    "properties": {
                        "prefix": {"type": "string"},
                        "dataset": dataset,
                        # datasets a variant names, replaced in this setting (smoke: generated stand-ins)
                        "stand_ins": {"type": "object", "propertyNames": dataset, "additionalProperties": dataset},
                        "threads": {"type": "integer", "minimum": 1},
                        "metrics": dataclass_schema(MetricsConfig),
                        "overrides": override,
                    },
                } for s in ("paper", "smoke")},
            },
            "stability_rule": dataclass_schema(StabilityRule),
            # how the hot path runs in each setting (RuntimeConfig); paper: every key, smoke: overrides
            "runtime": {"type": "object", "additionalProperties": False, "required": ["paper"], "properties": {
                "paper": {**dataclass_schema(RuntimeConfig), "required": [f.name for f in dataclasses.fields(RuntimeConfig)]},
                "smoke": dataclass_schema(RuntimeConfig, partial=True)}},
        },
    }


def check_core(params: dict) -> None:
    """Cross-key rules of the algorithm's part; every variant resolved in both settings (before any job runs)."""
    for name, v in params["variants"].items():
        if v["recipe"] not in params["recipes"]:
            raise ConfigError(f"variants.{name}.recipe: unknown recipe {v['recipe']!r}; "
                              f"choose one of {sorted(params['recipes'])}")
    for r in params["presets"].values():
        for recipe in r:
            if recipe not in params["recipes"]:
                raise ConfigError(f"presets: unknown recipe {recipe!r}; choose one of {sorted(params['recipes'])}")
    for setting in ("paper", "smoke"):
        for variant in params["variants"]:
            check_run_config(resolve(params, variant, setting=setting, validated=True))


def check_variant(params: dict, variant: str, key: str) -> None:
    """A block naming a variant names one that exists (a typo would otherwise surface as a missing file)."""
    if variant not in params["variants"]:
        raise ConfigError(f"{key}: unknown variant {variant!r}; choose one of {sorted(params['variants'])}")


def stability_rule(params: dict) -> StabilityRule:
    return from_dict(StabilityRule, params["stability_rule"])


def resolve(params: dict, variant: str, setting: str | None = None, preset: str | None = None,
            validated: bool = False) -> RunConfig:
    """Resolve one variant of params.yaml into a frozen RunConfig."""
    if not validated:
        from ebm_repro.params import validate_params  # the whole file, experiments' blocks included
        validate_params(params)
    setting = setting or params["setting"]
    preset = preset or params["preset"]
    if variant not in params["variants"]:
        raise ConfigError(f"unknown variant {variant!r}; choose one of {sorted(params['variants'])}")
    v = params["variants"][variant]
    s = params["settings"][setting]
    d = _deep_merge(params["recipes"][v["recipe"]], params["presets"][preset].get(v["recipe"]))
    d = _deep_merge(d, v.get("overrides"))
    d = _deep_merge(d, v.get("preset_overrides", {}).get(preset))
    d = _deep_merge(d, s["overrides"])
    d = _deep_merge(d, v.get("setting_overrides", {}).get(setting))
    dataset = v.get("dataset", s["dataset"])
    dataset = s.get("stand_ins", {}).get(dataset, dataset)
    return RunConfig(setting=setting, preset=preset, variant=variant, recipe=v["recipe"],
                     dataset=dataset, prefix=s["prefix"], hp=from_dict(RecipeConfig, d),
                     metrics=from_dict(MetricsConfig, s["metrics"]),
                     runtime=build_setting_block(RuntimeConfig, params, "runtime", setting))
