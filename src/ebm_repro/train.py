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
from ebm_repro.augment import make_augment
from ebm_repro.buffer import ReplayBuffer
from ebm_repro.config import BufferConfig, LossConfig, OptimConfig, RunConfig, SamplerConfig
from ebm_repro.data import load_split
from ebm_repro.losses import training_loss
from ebm_repro.models import make_model
from ebm_repro.optim import EMA, grad_norm, make_optimizer
from ebm_repro.sampling import make_langevin


class Recipe(Protocol):
    """What the one training step reads of a recipe (an image RecipeConfig or a 2-D toy recipe)."""
    sampler: SamplerConfig
    buffer: BufferConfig
    loss: LossConfig
    optim: OptimConfig


class TrainingDiverged(RuntimeError):
    """Energies became non-finite or exploded (ICD code: |mean E(x+)| > 10)."""


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def dequantize(x_uint8: torch.Tensor) -> torch.Tensor:
    """x = (k + u) / 256, u ~ U(0, 1) (methods.md, shared machinery)."""
    return (x_uint8.float() + torch.rand(x_uint8.shape, device=x_uint8.device)) / 256.0


def _grad_norm_of(loss: torch.Tensor, params: list) -> float:
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return math.sqrt(sum(float(g.pow(2).sum()) for g in gs if g is not None))


# ----------------------------------------------------------------------------- positives
class ImagePositives:
    """Training images, drawn with replacement and dequantised (the image-only switch of the positives)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, g: torch.Generator):
        self.images, self.labels, self.g = images, labels, g  # (N, C, H, W) uint8, (N,) or None
        self.shape = tuple(images.shape[1:])

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """n positives x (n, C, H, W) = (k + u) / 256 and their labels (n,), or None when unconditional."""
        idx = torch.randint(0, len(self.images), (n,), generator=self.g)
        return dequantize(self.images[idx]), None if self.labels is None else self.labels[idx]


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
    """

    def __init__(self, model: torch.nn.Module, positives: Positives, recipe: Recipe,
                 batch_size: int, seed: int,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None, augment_fresh: bool = True,
                 per_scale: bool = False, device: torch.device = torch.device("cpu"),
                 fresh_init: Callable[[int, torch.Generator], torch.Tensor] | None = None):
        self.model, self.positives, self.recipe, self.batch_size = model, positives, recipe, batch_size
        self.dev = device
        self.per_scale = per_scale  # the loss sees the (B, n_scales) energies of model.scale_energies
        self.opt = make_optimizer(recipe.optim, self.model.parameters())
        self.ema = EMA(self.model, recipe.optim.ema_decay) if recipe.optim.ema_decay > 0 else None
        self.buffer = ReplayBuffer(recipe.buffer, positives.shape, torch.Generator().manual_seed(seed + 1))
        self.sample = make_langevin(recipe.sampler)
        self.augment = augment if augment is not None else _identity
        self.augment_fresh = augment_fresh  # augment.fresh_chains: ICD code augments buffer draws only
        self.fresh_init = fresh_init

    def chain_starts(self, n: int) -> torch.Tensor:
        """n chain starts: buffer draws (re-init share from U(0, 1)), augmented one chain at a time.

        With augment_fresh False (ICD code, train.py l.382-390) only the draws from the buffer go through the
        transform (the replay buffer's `_encode_sample`); re-initialised chains stay plain U(0, 1) noise.
        """
        x0, fresh = self.buffer.sample(n)                                       # (n, *shape), (n,)
        if self.fresh_init is not None and fresh.any():
            x0 = x0.clone()
            x0[fresh] = self.fresh_init(int(fresh.sum()), self.buffer.g)
        if self.augment_fresh:
            return self.augment(x0)
        kept = ~fresh
        if kept.any():
            x0 = x0.clone()
            x0[kept] = self.augment(x0[kept])
        return x0

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights one evaluates: the EMA copy where the recipe keeps one (as ICD does), else the model."""
        return self.ema.model if self.ema else self.model

    def train_step(self, want_grad_parts: bool = False) -> dict:
        """One iteration; returns its log row (mean energies, loss parts, gradient norm)."""
        r, B = self.recipe, self.batch_size
        x_pos, y = self.positives.draw(B)
        x_pos = x_pos.to(self.dev)                                              # (B, *shape)
        y = None if y is None else y.to(self.dev)
        x0 = self.chain_starts(B).to(self.dev)                                  # (B, *shape)

        # IGEBM Alg. 1: negatives for a conditional model are sampled under the positives' labels
        def energy(x):
            return self.model(x) if y is None else self.model(x, y[: x.shape[0]])

        def loss_energy(x):
            # ICD code: the losses average the full/half/quarter energies, (B, 3); Sec. 2.4 sums them, (B,).
            # Langevin always follows the summed energy (the code differentiates energy.sum()).
            if not self.per_scale:
                return energy(x)
            return self.model.scale_energies(x, None if y is None else y[: x.shape[0]])

        use_kl = r.loss.kl_opt_coeff > 0 or r.loss.kl_ent_coeff > 0
        k = r.loss.kl_opt_chains if use_kl else 0
        res = self.sample(energy, x0, kl_chains=k, kl_all_steps=r.loss.kl_all_steps)
        # res.x is detached: the CD gradient is that of E(x+) - E(stop_grad(x-)); only res.x_kl carries a graph
        e_pos, e_neg = loss_energy(x_pos), loss_energy(res.x)                  # (B,) or (B, 3)

        def bank():
            b = self.buffer.recent(r.loss.ent_n_neighbours)
            return (self.augment(b) if r.loss.ent_bank_augment else b).to(self.dev)

        if r.loss.ent_bank_after_push:  # ICD train.py: replay_buffer.add (l.412) before the bank is drawn (l.434)
            self.buffer.push(res.x)
        terms = training_loss(r.loss, self.model, loss_energy, e_pos, e_neg, res.x_kl,
                              bank if len(self.buffer) > r.loss.ent_min_buffer else None)
        main, reg, kl, parts, loss = terms.main, terms.reg, terms.kl, terms.parts, terms.total
        self.opt.zero_grad(set_to_none=True)
        if want_grad_parts:  # E14 (ICD Fig. 13): gradient magnitude of L_CD vs L_KL
            params = [p for p in self.model.parameters() if p.requires_grad]
            parts["grad_cd"] = _grad_norm_of(main, params)
            parts["grad_kl"] = _grad_norm_of(kl, params) if kl.requires_grad else 0.0
        loss.backward()
        gn = grad_norm(self.model.parameters())
        if r.optim.grad_norm_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), r.optim.grad_norm_clip)
        self.opt.step()
        if self.ema:
            self.ema.update(self.model)
        if not r.loss.ent_bank_after_push:
            self.buffer.push(res.x)
        e_pos, e_neg = e_pos.detach(), e_neg.detach()
        return {"e_pos": float(e_pos.mean()), "e_neg": float(e_neg.mean()),
                "gap": float(e_pos.mean() - e_neg.mean()), "loss": float(loss.detach()),
                "loss_main": float(main.detach()), "loss_reg": float(reg.detach()), "grad_norm": gn, **parts}


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


# ----------------------------------------------------------------------------- image training runs
class Trainer(Learner):
    """An image run: the Learner on a dataset, plus checkpoints, snapshots, logs; `run()` trains to n_iters."""

    def __init__(self, cfg: RunConfig, data_dir: Path, out_dir: Path, device: str = "auto"):
        self.cfg, self.hp = cfg, cfg.hp
        self.out_dir, self.ckpt_dir = Path(out_dir), Path(out_dir) / "ckpt"
        dev, m, seed = pick_device(device), cfg.hp.model, cfg.hp.train.seed
        torch.manual_seed(seed)
        images, labels = load_split(Path(data_dir) / "train.npz")
        x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()     # (N, C, H, W) uint8
        if tuple(x_all.shape[1:]) != (m.channels, m.image_size, m.image_size):
            raise ValueError(f"dataset images {tuple(x_all.shape[1:])} do not fit model.channels/"
                             f"image_size ({m.channels}, {m.image_size}, {m.image_size})")
        y_all = torch.from_numpy(labels).long() if m.n_classes else None       # (N,)
        positives = ImagePositives(x_all, y_all, torch.Generator().manual_seed(seed))
        super().__init__(make_model(m).to(dev).train(), positives, cfg.hp, cfg.hp.train.batch_size, seed,
                         augment=make_augment(cfg.hp.augment, m.image_size),
                         augment_fresh=cfg.hp.augment.fresh_chains, per_scale=m.multiscale and cfg.hp.loss.multiscale_reduce == "mean", device=dev)
        self.step, self.log, self.snapshots = 0, [], []

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {"format": ck.FORMAT, "kind": "train_state", "model_args": ck.model_args(self.hp.model),
                "config": self.cfg.to_dict(), "training_hash": self.cfg.training_hash(), "step": self.step,
                "model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
                "optimizer": self.opt.state_dict(), "buffer": self.buffer.state_dict(),
                "data_g": self.positives.g.get_state(), "rng": ck.rng_state(), "log": self.log,
                "snapshots": self.snapshots}

    def resume(self) -> bool:
        """Load ckpt/last.pt if present; refuse one written under another training config."""
        path = self.ckpt_dir / "last.pt"
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
        self.buffer.load_state_dict(s["buffer"])
        self.positives.g.set_state(s["data_g"])
        ck.set_rng_state(s["rng"])
        self.step, self.log, self.snapshots = s["step"], s["log"], s["snapshots"]
        return True

    def save_checkpoint(self) -> None:
        ck.save(self.ckpt_dir / "last.pt", self.state())

    def check_divergence(self, row: dict) -> None:
        lim = self.hp.train.max_abs_energy
        if not all(math.isfinite(row[k]) for k in ("e_pos", "e_neg", "loss")):
            raise TrainingDiverged(f"non-finite energy or loss at step {self.step}: {row}")
        if lim > 0 and abs(row["e_pos"]) > lim:
            raise TrainingDiverged(f"|mean E(x+)| = {abs(row['e_pos']):.3g} > train.max_abs_energy = {lim} "
                                   f"at step {self.step}")

    # ------------------------------------------------------------------ loop
    def buffer_images(self, n: int) -> torch.Tensor:
        """The n most recently stored buffer samples as uint8 (N, H, W, C), without touching any RNG."""
        return self.buffer.data[: self.buffer.count][-n:].permute(0, 2, 3, 1).contiguous()

    def run(self, stop_after: int | None = None, progress: bool = True,
            evaluate: Callable[["Trainer"], dict] | None = None) -> dict:
        """Train to n_iters (or `stop_after` more steps); returns the final summary.

        `evaluate(trainer) -> dict` is called every train.eval_every steps; its numbers join the log row.
        """
        tc = self.hp.train
        end = tc.n_iters if stop_after is None else min(tc.n_iters, self.step + stop_after)
        t0, s0 = time.time(), self.step
        while self.step < end:
            eval_now = evaluate is not None and tc.eval_every > 0 and (self.step + 1) % tc.eval_every == 0
            log_now = (self.step + 1) % tc.log_every == 0 or self.step + 1 == tc.n_iters or eval_now
            row = self.train_step(want_grad_parts=log_now)
            self.step += 1
            try:
                self.check_divergence(row)
            except TrainingDiverged as e:
                return self._diverged(str(e))
            if log_now:
                row.update(step=self.step, sec_per_iter=(time.time() - t0) / max(self.step - s0, 1))
                if eval_now:
                    rng = ck.rng_state()  # evaluation must not change the training's random stream
                    row.update(evaluate(self))
                    ck.set_rng_state(rng)
                    self._keep_best(row)
                self.log.append(row)
                if progress:
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
        ck.save(path, {"format": ck.FORMAT, "step": self.step, "model": self.model.state_dict()})
        self.snapshots = (self.snapshots + [path.name])[-self.hp.train.n_snapshots:]
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

    def _diverged(self, reason: str) -> dict:
        """Stop: write a final model file flagged as diverged, holding the weights to score instead.

        Those are the best training-time IS checkpoint when train.eval_every made one, else the last good one.
        """
        print(f"[{self.cfg.variant}] TRAINING DIVERGED: {reason}", flush=True)
        last, best = self.ckpt_dir / "last.pt", self.ckpt_dir / "best.pt"
        good = ck.load(last) if last.exists() else None
        info = {"step": self.step, "reason": reason, "last_good_step": good["step"] if good else None,
                "scored": None}
        if best.exists():
            good = ck.load(best)
            info["scored"] = f"best training-time IS ({good['eval_IS']:.2f}), step {good['step']}"
        elif good:
            info["scored"] = f"last good checkpoint, step {good['step']}"
        self._write_final(model=good["model"] if good else None, ema=good["ema"] if good else None,
                          step=good["step"] if good else 0, snapshots=[], diverged=info)
        return {"step": self.step, "finished": True, "diverged": info}

    def finish(self) -> dict:
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
    """Train (resuming from out_dir/ckpt/last.pt when present) and write out_dir/model.pt."""
    t = Trainer(cfg, data_dir, out_dir, device)
    if t.resume() and progress:
        print(f"[{cfg.variant}] resumed from step {t.step}", flush=True)
    evaluate = None
    if cfg.hp.train.eval_every > 0:
        if feature_net is None:
            raise ValueError("train.eval_every > 0 needs the feature network (--feature-net)")
        evaluate = buffer_evaluator(cfg, data_dir, feature_net)
    return t.run(stop_after=stop_after, progress=progress, evaluate=evaluate)
