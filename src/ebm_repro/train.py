"""Training for IGEBM / ICD recipes: replay buffer -> Langevin -> loss -> Adam.

Learner is one training step and its state, on images or 2-D points (toy2d.py trains with it); Trainer is an
image run around it: dataset, checkpoints and resume, snapshots, logs, final model files.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Callable, Protocol

import torch
import yaml

from ebm_repro import checkpoint as ck
from ebm_repro import distributed as D
from ebm_repro.augment import make_augment
from ebm_repro.buffer import ReplayBuffer
from ebm_repro.config import BufferConfig, LossConfig, OptimConfig, RunConfig, RuntimeConfig, SamplerConfig
from ebm_repro.data import load_split
from ebm_repro.losses import training_loss
from ebm_repro.models import make_model
from ebm_repro.optim import EMA, grad_norm, make_optimizer
from ebm_repro.runtime import HotPath, pick_device, prepare_model, set_matmul_precision
from ebm_repro.sampling import make_langevin


class Recipe(Protocol):
    """What the one training step reads of a recipe (an image RecipeConfig or a 2-D toy recipe)."""
    sampler: SamplerConfig
    buffer: BufferConfig
    loss: LossConfig
    optim: OptimConfig


class TrainingDiverged(RuntimeError):
    """Energies became non-finite or exploded (ICD code: |mean E(x+)| > 10) at training step `step`."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def dequantize(x_uint8: torch.Tensor) -> torch.Tensor:
    """x = (k + u) / 256, u ~ U(0, 1) (methods.md, shared machinery); u from the RNG of x's device."""
    return (x_uint8.float() + torch.rand(x_uint8.shape, device=x_uint8.device)) / 256.0


def _grad_norm_of(loss: torch.Tensor, params: list, dist: D.Dist = D.SINGLE) -> float:
    """|d loss / d theta| of the rank-averaged gradient (the one DDP steps with; one process: its own)."""
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    gs = D.mean_tensors(dist, [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)])
    return math.sqrt(sum(float(g.pow(2).sum()) for g in gs))


# ----------------------------------------------------------------------------- positives
class ImagePositives:
    """Training images, drawn with replacement and dequantised (the image-only switch of the positives).

    Indices come from the CPU generator `g`; the uint8 images move to `device` before dequantising there, so a
    dataset kept on the device (runtime.data_on_device) gives the same numbers as one on the CPU.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, g: torch.Generator,
                 device: torch.device | str = "cpu"):
        self.images, self.labels, self.g = images, labels, g  # (N, C, H, W) uint8, (N,) or None
        self.dev = torch.device(device)
        self.shape = tuple(images.shape[1:])

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """n positives x (n, C, H, W) = (k + u) / 256 and their labels (n,), or None, on `device`."""
        idx = torch.randint(0, len(self.images), (n,), generator=self.g)
        idx = idx.to(self.images.device, non_blocking=True)
        k = self.images[idx].to(self.dev, non_blocking=True)                   # (n, C, H, W) uint8
        y = None if self.labels is None else self.labels[idx].to(self.dev, non_blocking=True)
        return dequantize(k), y


class PointPositives:
    """Points from a density, draw(n, g) -> (n, D) in [0, 1]^D: no labels, no dequantisation (2-D toys)."""

    def __init__(self, draw: Callable[[int, torch.Generator], torch.Tensor], dim: int, g: torch.Generator):
        self._draw, self.shape, self.g = draw, (dim,), g

    def draw(self, n: int) -> tuple[torch.Tensor, None]:
        return self._draw(n, self.g), None


Positives = ImagePositives | PointPositives


# ----------------------------------------------------------------------------- one training step
class Learner:
    """One training step's wiring and state, for images and 2-D points alike.

    IGEBM Alg. 1 / ICD Eq. 4 + Eqs. 6-7: positives; chain starts from the replay buffer (re-init share from
    U(0, 1)), augmented when an `augment` is given (ICD, images only); Langevin; loss; Adam; EMA; the chains'
    ends back into the buffer. Only the recipe's sampler/buffer/loss/optim sections are read.
    Seeds: the caller seeds torch before building `model` and the positives' generator with `seed`; the
    buffer's generator gets `seed + 1`. `fresh_init(n, generator) -> (n, *shape)` replaces the U(0, 1) start of
    re-initialised chains (IGEBM's dSprites runs: 0.5 + 0.5 N(0, 1)); it draws from the buffer's generator.
    Under torchrun (`dist` active) `batch_size` is the global batch: each rank trains on batch_size / world chains
    and positives, and only the loss's forward/backward goes through DistributedDataParallel (gradients averaged);
    the sampler, EMA and checkpoints use the unwrapped `model`. runtime.ddp_buffer per_rank: rank r's buffer and
    torch streams are seeded from distributed.rank_seed(seed, r) (the caller seeds its positives alike); shared:
    every rank draws the global batch from the same streams and keeps its rows, and pushes every rank's chain ends.
    """

    def __init__(self, model: torch.nn.Module, positives: Positives, recipe: Recipe,
                 batch_size: int, seed: int,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None, augment_fresh: bool = True,
                 per_scale: bool = False, device: torch.device = torch.device("cpu"),
                 runtime: RuntimeConfig = RuntimeConfig(), augment_on_device: bool = False,
                 fresh_init: Callable[[int, torch.Generator], torch.Tensor] | None = None,
                 dist: D.Dist = D.SINGLE):
        self.model, self.positives, self.recipe, self.batch_size = model, positives, recipe, batch_size
        self.dev, self.rt, self.dist = device, runtime, dist
        self.shared = dist.active and runtime.ddp_buffer == "shared"
        if dist.active and batch_size % dist.world:
            raise ValueError(f"train.batch_size {batch_size} is the global batch of {dist.world} processes: "
                             f"make it a multiple of runtime.n_gpus ({dist.world})")
        own_seed = D.stream_seed(dist, seed, runtime.ddp_buffer)                 # one process: seed
        self.per_scale = per_scale  # the loss sees the (B, n_scales) energies of model.scale_energies
        self.opt = make_optimizer(recipe.optim, self.model.parameters())
        self.ema = EMA(self.model, recipe.optim.ema_decay) if recipe.optim.ema_decay > 0 else None
        self.buffer = ReplayBuffer(recipe.buffer, positives.shape, torch.Generator().manual_seed(own_seed + 1),
                                   device=device if runtime.data_on_device else "cpu")
        self.sample = make_langevin(recipe.sampler)
        self.hot = HotPath(self.model, runtime, device)
        self.augment = augment if augment is not None else _identity
        # the reference transform runs on the CPU; augment.batched_augment on the tensors' own device
        self.augment_dev = device if augment_on_device else torch.device("cpu")
        self.augment_fresh = augment_fresh  # augment.fresh_chains: ICD code augments buffer draws only
        self.fresh_init = fresh_init
        self.loss_model = model
        if dist.active:
            from torch.nn.parallel import DistributedDataParallel as DDP
            # the model is the same on every rank (same seed; DDP broadcasts rank 0's weights anyway); buffers
            # (spectral-norm vectors) follow the same updates on every rank, so they need no broadcast per forward
            self.loss_model = DDP(_LossEnergy(model, per_scale), broadcast_buffers=False,
                                  device_ids=[device.index] if device.type == "cuda" else None)
            if own_seed != seed:  # per_rank: this rank's own Langevin noise, dequantisation, dropout
                torch.manual_seed(own_seed)

    def chain_starts(self, n: int) -> torch.Tensor:
        """n chain starts: buffer draws (re-init share from U(0, 1)), augmented one chain at a time.

        With augment_fresh False (ICD code, train.py l.382-390) only the draws from the buffer go through the
        transform (the replay buffer's `_encode_sample`); re-initialised chains stay plain U(0, 1) noise.
        """
        x0, fresh = self.buffer.sample(n)                                       # (n, *shape), (n,) on the CPU
        if self.fresh_init is not None and fresh.any():  # re-initialised chains from the caller's law, not U(0, 1)
            rows = fresh.nonzero().squeeze(1)                                   # CPU indices
            x0 = x0.clone()
            x0[rows.to(x0.device)] = self.fresh_init(len(rows), self.buffer.g).to(x0.device)
        if self.augment is _identity:
            return x0.to(self.dev, non_blocking=True)
        x0 = x0.to(self.augment_dev)
        if self.augment_fresh:
            return self.augment(x0).to(self.dev, non_blocking=True)
        kept = (~fresh).nonzero().squeeze(1)                                    # CPU indices: no device sync
        if len(kept):
            kept = kept.to(x0.device, non_blocking=True)
            x0 = x0.clone()
            x0[kept] = self.augment(x0[kept])
        return x0.to(self.dev, non_blocking=True)

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights one evaluates: the EMA copy where the recipe keeps one (as ICD does), else the model."""
        return self.ema.model if self.ema else self.model

    def train_step(self, want_grad_parts: bool = False, host: bool = True) -> dict:
        """One iteration; returns its log row (mean energies, loss parts, gradient norm).

        host False (runtime.host_sync: log, between log steps): the row holds device tensors and no gradient
        norm, so the step never waits for the device; `row_to_host` turns it into the floats of host True.
        """
        r, d = self.recipe, self.dist
        B = self.batch_size // d.world                                          # this rank's chains
        if self.shared:  # the global batch's draws, as one process makes them; this rank keeps its rows
            rows = d.rows(self.batch_size)
            x_pos, y = self.positives.draw(self.batch_size)
            x_pos, y = x_pos[rows], None if y is None else y[rows]
            x0 = self.chain_starts(self.batch_size)[rows]
        else:
            x_pos, y = self.positives.draw(B)
            x0 = self.chain_starts(B)
        x_pos = x_pos.to(self.dev)                                              # (B, *shape)
        y = None if y is None else y.to(self.dev)
        x0 = x0.to(self.dev)                                                    # (B, *shape)

        # IGEBM Alg. 1: negatives for a conditional model are sampled under the positives' labels
        def energy(x):
            return self.model(x) if y is None else self.model(x, y[: x.shape[0]])

        def loss_energy(x, ddp: bool = False):
            # ICD code: the losses average the full/half/quarter energies, (B, 3); Sec. 2.4 sums them, (B,).
            # Langevin always follows the summed energy (the code differentiates energy.sum()).
            if ddp and self.dist.active:  # the CD terms' forward through DDP (L_opt's frozen one stays outside)
                return self.loss_model(x, None if y is None else y[: x.shape[0]])
            if not self.per_scale:
                return energy(x)
            return self.model.scale_energies(x, None if y is None else y[: x.shape[0]])

        def energy_fast(x):  # the Langevin steps without a graph: runtime switches (runtime.HotPath)
            return self.hot.energy(x, None if y is None else y[: x.shape[0]])

        use_kl = r.loss.kl_opt_coeff > 0 or r.loss.kl_ent_coeff > 0
        k = r.loss.kl_opt_chains if use_kl else 0
        with self.hot.chain_scope():
            res = self.sample(energy_fast, x0, kl_chains=k, kl_all_steps=r.loss.kl_all_steps,
                              energy_graph=energy, graph_scope=self.hot.graph_scope,
                              shard=(d.rank, d.world) if self.shared else None)
        # res.x is detached: the CD gradient is that of E(x+) - E(stop_grad(x-)); only res.x_kl carries a graph
        e_pos, e_neg = loss_energy(x_pos, ddp=True), loss_energy(res.x, ddp=True)  # (B,) or (B, 3)
        pushed = D.gather_rows(d, res.x) if self.shared else res.x             # shared: every rank's chain ends

        def bank():
            b = self.buffer.recent(r.loss.ent_n_neighbours)
            return (self.augment(b.to(self.augment_dev)) if r.loss.ent_bank_augment else b).to(self.dev)

        if r.loss.ent_bank_after_push:  # ICD train.py: replay_buffer.add (l.412) before the bank is drawn (l.434)
            self.buffer.push(pushed)
        terms = training_loss(r.loss, self.model, loss_energy, e_pos, e_neg, res.x_kl,
                              bank if len(self.buffer) > r.loss.ent_min_buffer else None)
        main, reg, kl, parts, loss = terms.main, terms.reg, terms.kl, terms.parts, terms.total
        self.opt.zero_grad(set_to_none=True)
        if want_grad_parts:  # E14 (ICD Fig. 13): gradient magnitude of L_CD vs L_KL
            params = [p for p in self.model.parameters() if p.requires_grad]
            parts["grad_cd"] = _grad_norm_of(main, params, d)
            parts["grad_kl"] = _grad_norm_of(kl, params, d) if kl.requires_grad else 0.0
        loss.backward()
        gn = grad_norm(self.model.parameters()) if host else _grad_norms(self.model.parameters())
        if r.optim.grad_norm_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), r.optim.grad_norm_clip)
        self.opt.step()
        if self.ema:
            self.ema.update(self.model)
        if not r.loss.ent_bank_after_push:
            self.buffer.push(pushed)
        e_pos, e_neg = e_pos.detach(), e_neg.detach()
        row = {"e_pos": e_pos.mean(), "e_neg": e_neg.mean(), "gap": e_pos.mean() - e_neg.mean(),
               "loss": loss.detach(), "loss_main": main.detach(), "loss_reg": reg.detach(), "grad_norm": gn,
               **parts}
        return self.to_host(row) if host else row

    def to_host(self, row: dict) -> dict:
        """row_to_host, averaged over ranks under torchrun (each rank's energies are those of its rows)."""
        out = row_to_host(row)
        if self.dist.active:
            keys = sorted(out)
            out = dict(zip(keys, D.all_mean(self.dist, [float(out[k]) for k in keys])))
        return out


class _LossEnergy(torch.nn.Module):
    """The energies the loss sees, as one forward() for DDP: E(x[, y]) (B,) or per-scale (B, n_scales)."""

    def __init__(self, model: torch.nn.Module, per_scale: bool):
        super().__init__()
        self.model, self.per_scale = model, per_scale

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.per_scale:
            return self.model.scale_energies(x, y)
        return self.model(x) if y is None else self.model(x, y)


def _grad_norms(params) -> torch.Tensor | None:
    """Per-tensor gradient norms (n_tensors,) on the device: optim.grad_norm without reading them."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    return torch.stack(torch._foreach_norm(grads)) if grads else None


def row_to_host(row: dict) -> dict:
    """A log row with every tensor read as a float (the one place a step waits for the device).

    A vector grad_norm (of _grad_norms) is summed as optim.grad_norm sums it, so the float is the same.
    """
    out = {}
    for k, v in row.items():
        if k == "grad_norm" and isinstance(v, torch.Tensor) and v.dim() == 1:
            out[k] = math.sqrt(sum(n ** 2 for n in v.tolist()))
        elif k == "grad_norm" and v is None:
            out[k] = 0.0
        else:
            out[k] = float(v) if isinstance(v, torch.Tensor) else v
    return out


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


# ----------------------------------------------------------------------------- image training runs
class Trainer(Learner):
    """An image run: the Learner on a dataset, plus checkpoints, snapshots, logs; `run()` trains to n_iters.

    Under torchrun every rank runs a Trainer; rank 0 alone writes files and prints. A checkpoint holds every
    rank's buffer and random streams (resume rule: `resume`).
    """

    def __init__(self, cfg: RunConfig, data_dir: Path, out_dir: Path, device: str = "auto",
                 dist: D.Dist = D.SINGLE):
        self.cfg, self.hp = cfg, cfg.hp
        self.out_dir, self.ckpt_dir = Path(out_dir), Path(out_dir) / "ckpt"
        dev, m, seed, rt = D.device_of(dist, pick_device(device)), cfg.hp.model, cfg.hp.train.seed, cfg.runtime
        own_seed = D.stream_seed(dist, seed, rt.ddp_buffer)                    # rank 0: the run's seed
        set_matmul_precision(rt, dev)
        torch.manual_seed(seed)
        images, labels = load_split(Path(data_dir) / "train.npz")
        x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()     # (N, C, H, W) uint8
        if tuple(x_all.shape[1:]) != (m.channels, m.image_size, m.image_size):
            raise ValueError(f"dataset images {tuple(x_all.shape[1:])} do not fit model.channels/"
                             f"image_size ({m.channels}, {m.image_size}, {m.image_size})")
        y_all = torch.from_numpy(labels).long() if m.n_classes else None       # (N,)
        if rt.data_on_device:  # CIFAR-10 is 150 MB as uint8
            x_all, y_all = x_all.to(dev), None if y_all is None else y_all.to(dev)
        positives = ImagePositives(x_all, y_all, torch.Generator().manual_seed(own_seed), device=dev)
        model = prepare_model(make_model(m).to(dev).train(), rt)
        super().__init__(model, positives, cfg.hp, cfg.hp.train.batch_size, seed,
                         augment=make_augment(cfg.hp.augment, m.image_size, batched=rt.augment == "batched"),
                         augment_fresh=cfg.hp.augment.fresh_chains,
                         per_scale=m.multiscale and cfg.hp.loss.multiscale_reduce == "mean", device=dev,
                         runtime=rt, augment_on_device=rt.augment == "batched", dist=dist)
        self.step, self.log, self.snapshots = 0, [], []
        # this rank's streams as seeded: a rank the checkpoint did not have starts from them (resume)
        self._fresh_streams = {"buffer_g": self.buffer.g.get_state(), "data_g": self.positives.g.get_state(),
                               "rng": ck.rng_state()}

    # ------------------------------------------------------------------ state
    def _rank_state(self) -> dict:
        return {"buffer": self.buffer.state_dict(), "data_g": self.positives.g.get_state(), "rng": ck.rng_state()}

    def state(self) -> dict | None:
        """The training state (rank 0: also every other rank's buffer and streams, under "ranks"); None on rank > 0.

        A collective under torchrun: every rank calls it at the same step.
        """
        ranks = D.gather_objects(self.dist, self._rank_state())
        if ranks is None:
            return None
        return {"format": ck.FORMAT, "kind": "train_state", "model_args": ck.model_args(self.hp.model),
                "config": self.cfg.to_dict(), "training_hash": self.cfg.training_hash(), "step": self.step,
                "model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
                "optimizer": self.opt.state_dict(), **ranks[0], "world_size": self.dist.world,
                "ranks": ranks[1:], "log": self.log, "snapshots": self.snapshots}

    def _pick_rank_state(self, s: dict) -> dict:
        """This rank's buffer and streams from a checkpoint of any world size (README "Multi-GPU training").

        Rank r takes rank r's state; under ddp_buffer shared every rank takes rank 0's. A rank the checkpoint did
        not have (more processes than when it was written) starts with a copy of rank r mod W_old's buffer and its
        own freshly seeded streams; the states of ranks beyond the current world size are dropped.
        """
        states = [{k: s[k] for k in ("buffer", "data_g", "rng")}] + list(s.get("ranks", []))
        r = 0 if self.rt.ddp_buffer == "shared" else self.dist.rank
        if r < len(states):
            return states[r]
        f = self._fresh_streams
        return {"buffer": {**states[r % len(states)]["buffer"], "g": f["buffer_g"]}, "data_g": f["data_g"],
                "rng": f["rng"]}

    def resume(self) -> bool:
        """Load ckpt/last.pt if present; refuse one written under another training config."""
        path = self.ckpt_dir / "last.pt"
        if self.dist.main:
            for stale in self.ckpt_dir.glob(".*.tmp"):  # left by a kill during an atomic write
                stale.unlink()
        if not path.exists():
            return False
        s = ck.load(path)
        if s["training_hash"] != self.cfg.training_hash():
            raise ck.CheckpointError(
                f"{path} was written under another training config (hash {s['training_hash']} vs "
                f"{self.cfg.training_hash()} now): params.yaml changed mid-run. Restore the old params or "
                f"delete {self.ckpt_dir} to start this variant over.")
        ck.check_model_args(s, self.hp.model, path)
        ck.load_state_strict(self.model, s["model"], f"checkpoint {path}")
        if self.ema:
            self.ema.load_state_dict(s["ema"])
        self.opt.load_state_dict(s["optimizer"])
        mine = self._pick_rank_state(s)
        self.buffer.load_state_dict(mine["buffer"])
        self.positives.g.set_state(mine["data_g"])
        ck.set_rng_state(mine["rng"])
        self.step, self.log, self.snapshots = s["step"], s["log"], s["snapshots"]
        return True

    def save_checkpoint(self) -> None:
        s = self.state()  # every rank: the gather of the ranks' buffers
        if self.dist.main:
            ck.save(self.ckpt_dir / "last.pt", s)

    def check_divergence(self, row: dict, step: int | None = None) -> None:
        """Raise TrainingDiverged when the row of `step` (default: the current step) diverged."""
        lim, step = self.hp.train.max_abs_energy, self.step if step is None else step
        if not all(math.isfinite(row[k]) for k in ("e_pos", "e_neg", "loss")):
            raise TrainingDiverged(f"non-finite energy or loss at step {step}: {row}", step)
        if lim > 0 and abs(row["e_pos"]) > lim:
            raise TrainingDiverged(f"|mean E(x+)| = {abs(row['e_pos']):.3g} > train.max_abs_energy = {lim} "
                                   f"at step {step}", step)

    # ------------------------------------------------------------------ loop
    def buffer_images(self, n: int) -> torch.Tensor:
        """The n most recently stored buffer samples as uint8 (N, H, W, C), without touching any RNG."""
        return self.buffer.data[: self.buffer.count][-n:].permute(0, 2, 3, 1).cpu().contiguous()

    def run(self, stop_after: int | None = None, progress: bool = True,
            evaluate: Callable[["Trainer"], dict] | None = None) -> dict:
        """Train to n_iters (or `stop_after` more steps); returns the final summary.

        `evaluate(trainer) -> dict` is called every train.eval_every steps; its numbers join the log row.
        """
        tc = self.hp.train
        end = tc.n_iters if stop_after is None else min(tc.n_iters, self.step + stop_after)
        t0, s0 = time.time(), self.step
        pending: list[tuple[int, dict]] = []  # runtime.host_sync log: rows not read yet, (step, device row)
        while self.step < end:
            eval_now = evaluate is not None and tc.eval_every > 0 and (self.step + 1) % tc.eval_every == 0
            log_now = (self.step + 1) % tc.log_every == 0 or self.step + 1 == tc.n_iters or eval_now
            # read the step's numbers whenever anything is written after it: a log row, a snapshot, a checkpoint
            n = self.step + 1
            sync_now = (self.rt.host_sync == "step" or log_now or n == end or n % tc.ckpt_every == 0
                        or n % tc.snapshot_every == 0)
            row = self.train_step(want_grad_parts=log_now, host=sync_now)
            self.step += 1
            if not sync_now:
                pending.append((self.step, row))
                continue
            try:
                for step, old in pending:  # the earliest unread step that diverged stops the run at that step
                    self.check_divergence(self.to_host(old), step)
                pending = []
                self.check_divergence(row)
            except TrainingDiverged as e:
                return self._diverged(str(e), e.step)
            if log_now:
                row.update(step=self.step, sec_per_iter=(time.time() - t0) / max(self.step - s0, 1))
                if eval_now and self.dist.main:  # rank 0's buffer; the other ranks wait at the next step
                    rng = ck.rng_state()  # evaluation must not change the training's random stream
                    row.update(evaluate(self))
                    ck.set_rng_state(rng)
                    self._keep_best(row)
                self.log.append(row)
                if progress and self.dist.main:
                    print(f"[{self.cfg.variant}] step {self.step}/{tc.n_iters} E+ {row['e_pos']:+.4f} "
                          f"E- {row['e_neg']:+.4f} loss {row['loss']:+.4f} "
                          f"{row['sec_per_iter']:.3f}s/it", flush=True)
            if self.step % tc.snapshot_every == 0 and self.step > tc.n_iters - tc.snapshot_every * tc.n_snapshots:
                self._snapshot()
            if self.step % tc.ckpt_every == 0 or self.step == tc.n_iters:
                self.save_checkpoint()
        if self.step >= tc.n_iters:
            return self.finish()
        return {"step": self.step, "finished": False}

    def _snapshot(self) -> None:
        """Keep the weights of the last n_snapshots snapshot steps (IGEBM historical ensemble)."""
        path = self.ckpt_dir / f"snap_{self.step:08d}.pt"
        self.snapshots = (self.snapshots + [path.name])[-self.hp.train.n_snapshots:]
        if not self.dist.main:
            return
        ck.save(path, {"format": ck.FORMAT, "step": self.step, "model": self.model.state_dict()})
        for old in self.ckpt_dir.glob("snap_*.pt"):
            if old.name not in self.snapshots:
                old.unlink()

    def _keep_best(self, row: dict) -> None:
        """ckpt/best.pt: the weights with the best training-time IS so far (IGEBM train.py `model_best`, ICD
        train.py `best_inception`: both codes keep it, which is how Tab. 2 scored its unstable runs)."""
        if row.get("eval_IS") is None or not math.isfinite(row["eval_IS"]):
            return
        path = self.ckpt_dir / "best.pt"
        if path.exists() and ck.load(path)["eval_IS"] >= row["eval_IS"]:
            return
        ck.save(path, {"format": ck.FORMAT, "kind": "best", "step": self.step, "eval_IS": float(row["eval_IS"]),
                       "model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None})

    def _diverged(self, reason: str, step: int) -> dict:
        """Stop: write a final model file flagged as diverged at `step`, holding the weights to score instead.

        Those are the best training-time IS checkpoint when train.eval_every made one, else the last good one.
        """
        if not self.dist.main:
            return {"step": step, "finished": True, "diverged": {"step": step, "reason": reason}}
        print(f"[{self.cfg.variant}] TRAINING DIVERGED: {reason}", flush=True)
        last, best = self.ckpt_dir / "last.pt", self.ckpt_dir / "best.pt"
        good = ck.load(last) if last.exists() else None
        info = {"step": step, "reason": reason, "last_good_step": good["step"] if good else None,
                "scored": None}
        if best.exists():
            good = ck.load(best)
            info["scored"] = f"best training-time IS ({good['eval_IS']:.2f}), step {good['step']}"
        elif good:
            info["scored"] = f"last good checkpoint, step {good['step']}"
        self._write_final(model=good["model"] if good else None, ema=good["ema"] if good else None,
                          step=good["step"] if good else 0, snapshots=[], diverged=info)
        return {"step": step, "finished": True, "diverged": info}

    def finish(self) -> dict:
        if not self.dist.main:
            return {"step": self.step, "finished": True, "rank": self.dist.rank}
        snaps = [ck.load(self.ckpt_dir / n)["model"] for n in self.snapshots]
        return self._write_final(self.model.state_dict(), self.ema.state_dict() if self.ema else None,
                                 self.step, snaps, diverged=None)

    def _write_final(self, model, ema, step, snapshots, diverged) -> dict:
        out = self.out_dir
        final = {"format": ck.FORMAT, "kind": "model", "model_args": ck.model_args(self.hp.model),
                 "config": self.cfg.to_dict(), "training_hash": self.cfg.training_hash(), "step": step,
                 "model": model, "ema": ema, "snapshots": snapshots, "diverged": diverged}
        ck.save(out / "model.pt", final)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=sorted({k for r in self.log for k in r}))
        w.writeheader()
        w.writerows(self.log)
        ck.atomic_write_text(out / "train_log.csv", buf.getvalue())
        last = self.log[-1] if self.log else {}
        summary = {"variant": self.cfg.variant, "step": step, "diverged": diverged,
                   "e_pos": last.get("e_pos"), "e_neg": last.get("e_neg"), "gap": last.get("gap"),
                   "sec_per_iter": last.get("sec_per_iter"), "config_hash": self.cfg.hash(),
                   "training_hash": self.cfg.training_hash(), "device": str(self.dev)}
        ck.atomic_write_text(out / "train_summary.json", json.dumps(summary, indent=1) + "\n")
        ck.atomic_write_text(out / "config.yaml", yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        return {**summary, "finished": True}


def buffer_evaluator(cfg: RunConfig, data_dir: Path, feature_net: Path) -> Callable[[Trainer], dict]:
    """IS / FID of the replay buffer's newest samples (the chains being trained on) with the feature net."""
    from ebm_repro.metrics import compute_inception_metrics

    from ebm_repro.data import reference_images

    mc, n = cfg.metrics, cfg.hp.train.eval_n_samples
    reference = reference_images(Path(data_dir), cfg.hp.metrics.fid_reference)

    def evaluate(t: Trainer) -> dict:
        images = t.buffer_images(n).numpy()
        m = compute_inception_metrics(images, reference, mc.feature_net, Path(feature_net),
                                      n_splits=min(mc.n_splits, max(len(images) // 10, 1)),
                                      batch_size=mc.batch_size, device=str(t.dev), kid=False)
        return {"eval_IS": m["IS_mean"], "eval_FID": m["FID"], "eval_n": len(images)}

    return evaluate


def train(cfg: RunConfig, data_dir: Path, out_dir: Path, device: str = "auto", progress: bool = True,
          stop_after: int | None = None, feature_net: Path | None = None) -> dict:
    """Train (resuming from out_dir/ckpt/last.pt when present) and write out_dir/model.pt.

    Under torchrun (RANK / WORLD_SIZE set) this process is one rank of a DDP job; otherwise a single process.
    """
    if cfg.hp.train.eval_every > 0 and feature_net is None:
        raise ValueError("train.eval_every > 0 needs the feature network (--feature-net)")
    d = D.from_env(pick_device(device))
    try:
        t = Trainer(cfg, data_dir, out_dir, device, dist=d)
        if t.resume() and progress and d.main:
            print(f"[{cfg.variant}] resumed from step {t.step}"
                  + (f" on {d.world} processes" if d.active else ""), flush=True)
        evaluate = buffer_evaluator(cfg, data_dir, feature_net) if cfg.hp.train.eval_every > 0 else None
        return t.run(stop_after=stop_after, progress=progress, evaluate=evaluate)
    finally:
        D.close(d)
