"""2-D toy check that every training recipe learns: densities, training runs, distances, figure, CLI.

Each recipe trains with the image Trainer's own step (train.Learner: make_langevin, the uint8 ReplayBuffer with
its re-init share from U(0, 1), training_loss, make_optimizer, EMA) on an mlp2d energy and points in [0, 1]^2:
IGEBM Alg. 1, ICD Eq. 4 + Eqs. 6-7. The image-only switches stay off: no dequantisation (the positives are
points), no augmentation (ICD's transitions act on images).

    python -m ebm_repro toy2d --setting smoke --out-png results/figures/toy2d.png --out-json results/toy2d/metrics.json
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ebm_repro.buffer import ReplayBuffer, from_uint8
from ebm_repro.config import ModelConfig
from ebm_repro.models import make_model
from ebm_repro.sampling import make_langevin
from ebm_repro.experiments.toy2d.config import (DENSITIES, RECIPES, DensityConfig, Toy2DConfig, ToyModelConfig,
                                    ToyRecipeConfig, temperature, toy2d_config)
from ebm_repro.train import Learner, PointPositives

MMD_BANDWIDTHS = (0.02, 0.05, 0.15)  # Gaussian kernels: mode width, mode spacing, layout scale


# ----------------------------------------------------------------------------- densities
def _gauss_means(d: DensityConfig) -> torch.Tensor:
    angle = 2 * math.pi * torch.arange(8) / 8
    return 0.5 + d.gauss_radius * torch.stack([angle.cos(), angle.sin()], 1)                # (8, 2)


def sample_density(name: str, n: int, d: DensityConfig, g: torch.Generator) -> torch.Tensor:
    """n points (n, 2) from a target density."""
    if name == "gauss8":
        k = torch.randint(0, 8, (n,), generator=g)
        return _gauss_means(d)[k] + d.gauss_std * torch.randn(n, 2, generator=g)
    if name == "rings":
        # uniform per arc length: a ring is picked with probability proportional to its radius
        outer = torch.rand(n, generator=g) < d.ring_outer / (d.ring_inner + d.ring_outer)
        r = torch.where(outer, d.ring_outer, d.ring_inner) + d.ring_std * torch.randn(n, generator=g)   # (n,)
        angle = 2 * math.pi * torch.rand(n, generator=g)
        return 0.5 + r[:, None] * torch.stack([angle.cos(), angle.sin()], 1)
    raise ValueError(f"unknown density {name!r}; choose one of {DENSITIES}")


def log_density(name: str, x: torch.Tensor, d: DensityConfig) -> torch.Tensor:
    """Unnormalised log p(x) (n,) of what sample_density draws, for x (n, 2)."""
    if name == "gauss8":
        sq = ((x[:, None, :] - _gauss_means(d)[None]) ** 2).sum(-1)                         # (n, 8)
        return torch.logsumexp(-sq / (2 * d.gauss_std ** 2), 1)
    if name == "rings":
        rho = (x - 0.5).norm(dim=1).clamp_min(1e-6)                                         # (n,)
        radii = torch.tensor([d.ring_inner, d.ring_outer])
        # p(x) = sum_i w_i N(rho; r_i, s) / (2 pi rho) with w_i proportional to r_i
        terms = radii.log() - (rho[:, None] - radii) ** 2 / (2 * d.ring_std ** 2)           # (n, 2)
        return torch.logsumexp(terms, 1) - rho.log()
    raise ValueError(f"unknown density {name!r}; choose one of {DENSITIES}")


def grid_points(n: int) -> torch.Tensor:
    """Centres (n*n, 2) of an n x n grid on [0, 1]^2, row-major with y as the row."""
    c = (torch.arange(n) + 0.5) / n
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], 1)


def cell_log_probs(name: str, d: DensityConfig, bins: int, sub: int = 4) -> torch.Tensor:
    """log P(cell) (bins*bins,) of the true density on a bins x bins grid, each cell summed over sub x sub points."""
    lp = log_density(name, grid_points(bins * sub), d).view(bins, sub, bins, sub)           # (y, sy, x, sx)
    return torch.logsumexp(lp.permute(0, 2, 1, 3).reshape(bins * bins, sub * sub), 1).log_softmax(0)


# ----------------------------------------------------------------------------- distances
def grid_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> float:
    """KL(p || q) in nats between two unnormalised log-densities on the same grid cells."""
    lp, lq = log_p.log_softmax(0), log_q.log_softmax(0)
    return float((lp.exp() * (lp - lq)).sum())


def sample_kl(x: torch.Tensor, log_p_cells: torch.Tensor, bins: int) -> float:
    """KL(true || histogram of x (n, 2)) on bins x bins cells; +1/2 per cell (Krichevsky-Trofimov) keeps it finite."""
    ij = (x.clamp(0, 1 - 1e-6) * bins).long()                                               # (n, 2): column, row
    counts = torch.bincount(ij[:, 1] * bins + ij[:, 0], minlength=bins * bins).float()
    log_q = ((counts + 0.5) / (counts.sum() + 0.5 * bins * bins)).log()
    return float((log_p_cells.exp() * (log_p_cells - log_q)).sum())


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths=MMD_BANDWIDTHS) -> float:
    """Unbiased squared MMD with a sum of Gaussian kernels (Gretton et al. 2012, Eq. 3)."""
    def k(a, b):
        d2 = torch.cdist(a, b) ** 2                                                         # (n, m)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)
    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return float((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
                 + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * k(x, y).mean())


# ----------------------------------------------------------------------------- training
class ToyEnergy(torch.nn.Module):
    """ARCHS['mlp2d'] behind a fixed affine input map: x (B, 2) in [0, 1]^2 -> net(scale * (x - 0.5)) (B,).

    Why: PyTorch's default init gives first-layer slopes ~1/sqrt(2), so on raw [0, 1] inputs the net starts
    nearly linear over the whole square and needs thousands of steps to grow features as sharp as the modes
    (std 0.03). The map puts that width at unit scale; spectral norm (IGEBM) caps every hidden layer's gain
    at 1, so for it the map is the main source of sharpness (rings, 600 steps: IGEBM's sample KL 0.18-0.34 at
    scale 16, 0.12-0.20 at 32; ICD's unchanged).
    """

    def __init__(self, m: ToyModelConfig, r: ToyRecipeConfig):
        super().__init__()
        self.scale = m.input_scale
        self.net = make_model(ModelConfig(arch="mlp2d", width=m.width, n_classes=0, spectral_norm=r.spectral_norm,
                                          spectral_norm_head=False, dropout=0.0, attention=False, multiscale=False,
                                          activation=r.activation, norm="none", image_size=1, channels=2,
                                          sn_init="torch", head_init="torch", cond_gain_offset=False,
                                          residual_skip=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.scale * (x - 0.5))


@dataclass
class ToyRun:
    """A trained toy model (the EMA copy where the recipe keeps one, as ICD evaluates) and its replay buffer."""
    model: torch.nn.Module
    buffer: ReplayBuffer
    recipe: ToyRecipeConfig
    seconds: float
    log: list


Probe = Callable[[torch.nn.Module, ReplayBuffer], dict]


def toy_learner(density: str, r: ToyRecipeConfig, cfg: Toy2DConfig) -> Learner:
    """The image Trainer's step (train.Learner) for one recipe on one density's points, seeded by train.seed."""
    tc = cfg.train
    torch.manual_seed(tc.seed)
    positives = PointPositives(lambda n, g: sample_density(density, n, cfg.density, g), 2,
                               torch.Generator().manual_seed(tc.seed))
    return Learner(ToyEnergy(cfg.model, r).train(), positives, r, tc.batch_size, tc.seed)


def train_toy(density: str, r: ToyRecipeConfig, cfg: Toy2DConfig, probe: Probe | None = None) -> ToyRun:
    """Train one recipe on one density for train.n_iters steps of Learner.train_step.

    Every train.log_every steps the log gets the mean energies, the loss and probe(model, buffer).
    """
    tc, learner = cfg.train, toy_learner(density, r, cfg)
    log, t0 = [], time.perf_counter()
    for it in range(1, tc.n_iters + 1):
        row = learner.train_step()
        if it % tc.log_every == 0 or it == tc.n_iters:
            log.append({"step": it, **{k: row[k] for k in ("e_pos", "e_neg", "loss")},
                        **(probe(learner.eval_model, learner.buffer) if probe else {})})
    return ToyRun(learner.eval_model.eval(), learner.buffer, r, time.perf_counter() - t0, log)


@torch.no_grad()
def _energy(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def kl_probe(density: str, r: ToyRecipeConfig, cfg: Toy2DConfig) -> Probe:
    """probe(model, buffer) -> KL of the replay buffer's histogram and of exp(-E/T), for learning curves."""
    pts, T = grid_points(cfg.eval.grid), temperature(r.sampler)
    log_p, log_cells = log_density(density, pts, cfg.density), cell_log_probs(density, cfg.density, cfg.eval.bins)

    def probe(model: torch.nn.Module, buffer: ReplayBuffer) -> dict:
        was_training = model.training
        model.eval()  # no spectral-norm power iteration: probing must not change the training run
        out = {"kl_buffer": sample_kl(from_uint8(buffer.data[: len(buffer)]), log_cells, cfg.eval.bins),
               "kl_energy": grid_kl(log_p, -_energy(model, pts) / T)}
        model.train(was_training)
        return out
    return probe


# ----------------------------------------------------------------------------- evaluation
def model_samples(run: ToyRun, n: int, steps: int) -> torch.Tensor:
    """Test-time sampling (IGEBM): n buffer draws, with the recipe's re-init share, refined by `steps` steps."""
    m = len(run.buffer)  # draw in chunks: buffer.sample(k > len) would return noise only
    x0 = torch.cat([run.buffer.sample(min(m, n - i))[0] for i in range(0, n, m)])           # (n, 2)
    return make_langevin(run.recipe.sampler)(run.model, x0, n_steps=steps).x


def evaluate(run: ToyRun, density: str, cfg: Toy2DConfig, seed: int = 1234) -> dict:
    """Distances to the true density: of the model's samples (histogram KL, MMD^2) and of exp(-E/T) (grid KL)."""
    e, T, pts = cfg.eval, temperature(run.recipe.sampler), grid_points(cfg.eval.grid)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        x = model_samples(run, e.n_samples, e.sample_steps)                                # (n, 2)
    x_true = sample_density(density, e.n_samples, cfg.density, torch.Generator().manual_seed(seed))
    log_q = -_energy(run.model, pts) / T                                                    # (grid^2,)
    return {"kl_samples": sample_kl(x, cell_log_probs(density, cfg.density, e.bins), e.bins),
            "mmd2": mmd2(x, x_true), "kl_energy": grid_kl(log_density(density, pts, cfg.density), log_q),
            "temperature": T, "train_seconds": run.seconds, "curve": run.log,
            "log_q": log_q.view(e.grid, e.grid), "samples": x}


def references(density: str, cfg: Toy2DConfig, seed: int = 4321) -> dict:
    """What a flat model (uniform samples) and a second true sample set score: the scale of the distances."""
    g, e = torch.Generator().manual_seed(seed), cfg.eval
    pts, n = grid_points(e.grid), e.n_samples
    log_p, cells = log_density(density, pts, cfg.density), cell_log_probs(density, cfg.density, e.bins)
    uniform = torch.rand(n, 2, generator=g)                                                  # (n, 2)
    true_a, true_b = (sample_density(density, n, cfg.density, g) for _ in range(2))
    return {"kl_samples_uniform": sample_kl(uniform, cells, e.bins),
            "kl_samples_true": sample_kl(true_a, cells, e.bins),
            "mmd2_uniform": mmd2(uniform, true_b), "mmd2_true": mmd2(true_a, true_b),
            "kl_energy_uniform": grid_kl(log_p, torch.zeros_like(log_p)),
            "log_p": log_p.view(e.grid, e.grid), "samples": true_a}


# ----------------------------------------------------------------------------- figure
def write_figure(results: dict, out_png: Path, out_pdf: Path, title: str) -> None:
    """Per density: a row of densities (true, then exp(-E/T) per recipe) over a row of samples."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ebm_repro.checkpoint import atomic_write

    cols = ("true",) + RECIPES
    fig, axes = plt.subplots(2 * len(DENSITIES), len(cols), figsize=(2.0 * len(cols), 4.3 * len(DENSITIES)),
                             squeeze=False)
    for i, dens in enumerate(DENSITIES):
        for j, name in enumerate(cols):
            res = results[dens]["reference" if name == "true" else name]
            top, bottom = axes[2 * i, j], axes[2 * i + 1, j]
            log_d = res["log_p" if name == "true" else "log_q"]                              # (grid, grid)
            top.imshow(torch.softmax(log_d.flatten(), 0).view_as(log_d).numpy(), origin="lower", extent=(0, 1, 0, 1))
            s = res["samples"].numpy()                                                        # (n, 2)
            bottom.scatter(s[:, 0], s[:, 1], s=0.5, alpha=0.5, color="k" if name == "true" else "C3",
                           rasterized=True)
            bottom.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
            if name == "true":
                top.set_title(f"{dens}: true density", fontsize=7)
                bottom.set_title("true samples", fontsize=7)
            else:
                top.set_title(f"{name}: exp(-E/T)\nKL {res['kl_energy']:.2f}", fontsize=7)
                bottom.set_title(f"samples: KL {res['kl_samples']:.2f}, MMD² {res['mmd2']:.3f}", fontsize=7)
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    for path in (Path(out_png), Path(out_pdf)):
        atomic_write(path, lambda f, p=path: fig.savefig(f, format=p.suffix[1:], dpi=120))
    plt.close(fig)


# ----------------------------------------------------------------------------- CLI
def run_all(cfg: Toy2DConfig, log: Callable[[str], None] = print) -> dict:
    """Train and evaluate every recipe on every density."""
    results = {}
    for dens in DENSITIES:
        results[dens] = {"reference": references(dens, cfg)}
        for name in RECIPES:
            r = getattr(cfg.recipes, name)
            m = results[dens][name] = evaluate(train_toy(dens, r, cfg, probe=kl_probe(dens, r, cfg)), dens, cfg)
            log(f"{dens:7s} {name:9s} kl_samples {m['kl_samples']:.3f}  mmd2 {m['mmd2']:.4f}  "
                f"kl_energy {m['kl_energy']:.2f}  ({m['train_seconds']:.1f}s)")
    return results


def metrics_json(results: dict, cfg: Toy2DConfig, setting: str) -> dict:
    """The numbers of `results` (no tensors), their definitions and the config they came from."""
    keep = {d: {k: {f: v for f, v in m.items() if not isinstance(v, torch.Tensor)} for k, m in r.items()}
            for d, r in results.items()}
    return {"setting": setting, "config_hash": cfg.hash(), "config": dataclasses.asdict(cfg), "metrics": keep,
            "definitions": {
                "kl_samples": f"KL(true || histogram of {cfg.eval.n_samples} test-time samples) in nats on "
                              f"{cfg.eval.bins}x{cfg.eval.bins} cells, +1/2 per cell",
                "mmd2": f"unbiased MMD^2, Gaussian kernels {MMD_BANDWIDTHS}, model vs true samples",
                "kl_energy": f"KL(true || exp(-E/T)) in nats, both normalised on a {cfg.eval.grid}^2 grid",
                "temperature": "T = noise_std^2 / (2 step_size) of the recipe's sampler",
                "reference": "the same distances for uniform samples / density and for a second true sample set",
                "curve": "kl_buffer: histogram KL of the replay buffer during training; kl_energy as above"}}


def cmd_toy2d(args) -> None:
    """Train and evaluate every recipe on every density; write the figure, metrics.json and provenance."""
    from ebm_repro import commands
    from ebm_repro.checkpoint import atomic_write_text
    from ebm_repro.report import write_provenance

    p = commands.load(args)
    setting = p["setting"]
    cfg = toy2d_config(p, setting)
    t0 = time.perf_counter()
    results = run_all(cfg, log=lambda s: print(s, flush=True))
    out_pdf = args.out_pdf or str(Path(args.out_png).with_suffix(".pdf"))
    write_figure(results, Path(args.out_png), Path(out_pdf),
                 f"2-D toys ({setting} setting, {cfg.train.n_iters} iterations): energy exp(-E/T) on the grid "
                 f"and test-time samples per recipe; KL in nats, true vs flat in metrics.json")
    out = metrics_json(results, cfg, setting)
    out["seconds_total"] = time.perf_counter() - t0
    atomic_write_text(Path(args.out_json), json.dumps(out, indent=1) + "\n")
    for path in (args.out_png, out_pdf, args.out_json):
        write_provenance(Path(path), [Path(args.params)], {"setting": setting, "experiment": "toy2d",
                                                         "config_hash": cfg.hash()})
    print(f"wrote {args.out_png}, {out_pdf}, {args.out_json} in {out['seconds_total']:.0f}s")
