"""E19: compositional CelebA-HQ generation (ICD §3.3, Fig. 9, App. B.3 Tab. 3).

Four conditional EBMs, each trained alone on one attribute (young, female, smiling, wavy hair; variants of
params.yaml `compose_celeba.paper.models`), are composed at sampling time: the energy of a composition is the SUM
of the models' energies at label 1 ("has the attribute"), sampled by Langevin dynamics as the authors'
celeba_combine.py `conceptcombine` does (10 rounds of 20 steps with an augmentation between rounds, then 80
refinement steps, step size 500 / number of models). A ResNet-18 attribute classifier trained in the DAG on
CelebA-HQ (Tab. 3: "a Resnet-18 classifier is trained to regress young, female, smiling, and wavy hair") scores
each composition: the share of samples in which it sees each conditioned attribute. The conjunction operator is
written here (a sum of energies, a few lines); no other composition operator is needed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.claims import Claim, number_claim

BLOCK = "compose_celeba"
ATTRS = ("young", "female", "smiling", "wavy")
PAPER_COLUMNS = {"young": "Young", "female": "Female", "smiling": "Smiling", "wavy": "Wavy"}
PAPER_KEY = "improved_cd_2021/compose_celeba_table_3"
OUTPUT = "results/tables/compose_celeba.md"


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class ComposeModel:
    attribute: str = C._enum(*ATTRS)
    variant: str                       # a conditional (n_classes 2) variant trained on celebahq128_<attribute>


@dataclass(frozen=True)
class ClassifierConfig:
    """ResNet-18 (torchvision, from scratch: no pretrained weights offline) on 4 binary attributes."""
    epochs: int = C._pos()
    batch_size: int = C._pos()
    lr: float = C._pos()
    seed: int = C._pos(minimum=0)


@dataclass(frozen=True)
class ComposeSampling:
    """celeba_combine.py conceptcombine: init_rounds x steps_per_round steps (augmenting between), then refine."""
    n_samples: int = C._pos()          # per composition (code: 64 per batch)
    batch_size: int = C._pos()
    step_size: float = C._pos()        # divided by the number of composed models (code: step_lr / len(models))
    noise_std: float = C._pos(minimum=0)
    init_rounds: int = C._pos(minimum=0)
    steps_per_round: int = C._pos()
    refine_steps: int = C._pos(minimum=0)
    seed: int = C._pos(minimum=0)


@dataclass(frozen=True)
class ComposeConfig:
    models: tuple[ComposeModel, ...]   # in order: composition k uses the first k (Young; +Female; +Smiling; +Wavy)
    classifier: ClassifierConfig
    sampling: ComposeSampling


def schema() -> dict:
    return C.setting_block_schema(ComposeConfig, smoke_required=False)


def settings(params: dict, setting: str | None = None) -> ComposeConfig:
    return C.build_setting_block(ComposeConfig, params, BLOCK, setting or params["setting"])


def check(params: dict) -> None:
    """Models: the four attributes in Tab. 3's order, each a conditional icd_celeba variant on its attribute's data."""
    cfg = settings(params, "paper")
    if tuple(m.attribute for m in cfg.models) != ATTRS:
        raise C.ConfigError(f"compose_celeba.paper.models: attributes must be {list(ATTRS)} in that order (Tab. 3)")
    for i, m in enumerate(cfg.models):
        C.check_variant(params, m.variant, f"compose_celeba.paper.models[{i}].variant")
        for setting in ("paper", "smoke"):
            rc = C.resolve(params, m.variant, setting=setting, validated=True)
            if rc.hp.model.n_classes != 2 or rc.dataset != f"celebahq128_{m.attribute}":
                raise C.ConfigError(f"compose_celeba: variant {m.variant!r} must have model.n_classes 2 and dataset "
                                    f"celebahq128_{m.attribute} ({setting}: {rc.hp.model.n_classes}, {rc.dataset})")


# ----------------------------------------------------------------------------- classifier
def attribute_targets(z) -> np.ndarray:
    """(N, 4) float targets in ATTRS order from a celebahq128 split's attribute matrix."""
    from ebm_repro.datasets_large import ATTRIBUTES

    names = [str(n) for n in z["attribute_names"]]
    cols = [(z["attributes"][:, names.index(ATTRIBUTES[a][0])] == ATTRIBUTES[a][1]) for a in ATTRS]
    return np.stack(cols, axis=1).astype(np.float32)


def make_classifier():
    """ResNet-18 with a 4-logit head (one per attribute)."""
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=len(ATTRS))


def save_classifier(path: Path, state: dict) -> None:
    """The classifier's weights as an ebm-repro checkpoint (plain data, loads with weights_only)."""
    from ebm_repro import checkpoint as ck

    ck.save(Path(path), {"format": ck.FORMAT, "model": state, "attributes": list(ATTRS)})


def load_classifier(path: Path):
    """ResNet-18 with the saved weights (strict), in eval mode."""
    from ebm_repro import checkpoint as ck

    c = ck.load(Path(path))
    if c.get("attributes") != list(ATTRS):
        raise ck.CheckpointError(f"{path} scores {c.get('attributes')}, not {list(ATTRS)}; retrain it")
    net = make_classifier()
    ck.load_state_strict(net, c["model"], str(path))
    return net.eval()


def _logits(net, x_uint8, batch: int, device) -> "torch.Tensor":
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(x_uint8), batch):
            x = torch.as_tensor(x_uint8[i:i + batch]).permute(0, 3, 1, 2).float().to(device) / 255.0
            out.append(net(x - 0.5).cpu())
    return torch.cat(out)


def train_classifier(train_npz: Path, test_npz: Path, cfg: ClassifierConfig, device) -> tuple[dict, dict]:
    """Train on train.npz, report per-attribute test accuracy; returns (state_dict, info)."""
    import torch

    torch.manual_seed(cfg.seed)
    with np.load(train_npz, allow_pickle=False) as z:
        x, t = z["images"], attribute_targets(z)
    with np.load(test_npz, allow_pickle=False) as z:
        x_test, t_test = z["images"], attribute_targets(z)
    net = make_classifier().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = np.random.default_rng(cfg.seed)
    for _ in range(cfg.epochs):
        net.train()
        for idx in np.array_split(gen.permutation(len(x)), max(1, len(x) // cfg.batch_size)):
            xb = torch.as_tensor(x[idx]).permute(0, 3, 1, 2).float().to(device) / 255.0
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xb - 0.5), torch.as_tensor(t[idx]).to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    pred = (_logits(net, x_test, cfg.batch_size, device) > 0).numpy()
    acc = {a: float((pred[:, i] == (t_test[:, i] > 0.5)).mean()) for i, a in enumerate(ATTRS)}
    share = {a: float(t_test[:, i].mean()) for i, a in enumerate(ATTRS)}  # the majority-class baseline
    info = {"test_accuracy": acc, "test_share_with_attribute": share, "n_train": len(x), "n_test": len(x_test),
            "arch": "torchvision resnet18, from scratch", **{k: getattr(cfg, k) for k in ("epochs", "batch_size", "lr")}}
    return {k: v.cpu() for k, v in net.state_dict().items()}, info


# ----------------------------------------------------------------------------- composed sampling
def composed_energy(models: list, n: int, device):
    """E(x) = sum_i E_i(x | attribute_i present): the conjunction of concepts (ICD §3.3; Du et al. 2020)."""
    import torch

    y = torch.ones(n, dtype=torch.long, device=device)  # label 1 = has the attribute (datasets_large.ATTRIBUTES)
    return lambda x: sum(m(x, y[:len(x)]) for m in models)  # (B,)


def sample_composition(models: list, s: ComposeSampling, augment, shape: tuple[int, int, int], n: int, device):
    """n images (n, H, W, C) uint8 from the summed energy: rounds of Langevin with augmentation, then refinement."""
    import torch

    from ebm_repro.sampling import langevin_step

    energy = composed_energy(models, n, device)
    step = s.step_size / len(models)  # code: FLAGS.step_lr = FLAGS.step_lr / len(models)
    x = torch.rand(n, *shape, device=device)
    kw = dict(step_size=step, noise_std=s.noise_std, grad_clip=0.0, clamp=True)
    for _ in range(s.init_rounds):
        for _ in range(s.steps_per_round):
            x = langevin_step(energy, x, **kw).detach()
        x = augment(torch.floor(x * 255) / 255)  # code: to uint8, then the transform, then back to [0, 1]
    for _ in range(s.refine_steps):
        x = langevin_step(energy, x, **kw).detach()
    return (x.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # code: (x * 255).astype(uint8)


def attribute_shares(classifier, images: np.ndarray, k: int, batch: int, device) -> dict[str, float]:
    """Share of images in which the classifier sees each of the first k attributes."""
    seen = (_logits(classifier, images, batch, device) > 0).numpy()
    return {a: float(seen[:, i].mean()) for i, a in enumerate(ATTRS[:k])}


# ----------------------------------------------------------------------------- table
def table(result: dict | None, missing: str | None, setting: str) -> str:
    """Markdown: our shares beside ICD Tab. 3, the paper's IGEBM and JVAE rows quoted below."""
    from tabulate import tabulate

    from ebm_repro.report import fmt, paper_lookup

    paper = paper_lookup(PAPER_KEY)
    names = ["Young", "Young & Female", "Young & Female & Smiling", "Young & Female & Smiling & Wavy"]
    body = []
    for k in range(1, 5):
        ours = (result or {}).get("compositions", {}).get(str(k), {})
        cells = []
        for i, a in enumerate(ATTRS):
            if i >= k:
                cells.append("—")
                continue
            p = paper["ICD"][PAPER_COLUMNS[a]][k - 1]
            run = missing if result is None else fmt(ours.get(a), 3)
            cells.append(f"{run} (paper {fmt(p, 3)})")
        body.append([f"ICD, this run ({names[k - 1]})", *cells])
    lines = [f"# Compositional CelebA-HQ generation: attribute recovery (ICD Tab. 3; {setting} setting)", "",
             tabulate(body, headers=["Composition", *(PAPER_COLUMNS[a] for a in ATTRS)], tablefmt="github",
                      disable_numparse=True), ""]
    if result is not None:
        c = result["classifier"]
        lines += [f"Each cell: the share of {result['n_samples']} composed samples in which the attribute "
                  f"classifier sees the attribute (paper's ICD value in brackets). Classifier: ResNet-18 trained by "
                  f"this run from scratch on {c['n_train']} CelebA-HQ 128 images; test accuracy "
                  + ", ".join(f"{a} {fmt(c['test_accuracy'][a], 3)}" for a in ATTRS)
                  + " (share of test faces with the attribute: "
                  + ", ".join(f"{a} {fmt(c['test_share_with_attribute'][a], 3)}" for a in ATTRS) + ")."
                  f" Sampling: {result['sampling']}.", ""]
        if setting == "smoke":
            lines += ["**Smoke setting: tiny models on tiny stand-in data; not comparable with the paper.**", ""]
    lines += ["## Rows quoted from the paper (ICD Tab. 3, not computed here)", ""]
    quoted = [[f"{model} ({names[k - 1]})", *(fmt(paper[model][PAPER_COLUMNS[a]][k - 1], 3) if i < k else "—"
                                              for i, a in enumerate(ATTRS))]
              for model in ("JVAE", "IGEBM", "ICD") for k in range(1, 5)]
    lines += [tabulate(quoted, headers=["Model (quoted)", *(PAPER_COLUMNS[a] for a in ATTRS)], tablefmt="github",
                       disable_numparse=True), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- commands
def cmd_train_classifier(a) -> None:
    from ebm_repro import checkpoint as ck
    from ebm_repro.runtime import pick_device

    p = commands.load(a)
    state, info = train_classifier(Path(a.data) / "train.npz", Path(a.data) / "test.npz", settings(p).classifier,
                                   pick_device(a.device))
    save_classifier(Path(a.out), state)
    ck.atomic_write_text(Path(a.info), json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


def cmd_sample(a) -> None:
    import torch

    from ebm_repro import checkpoint as ck
    from ebm_repro.augment import make_augment
    from ebm_repro.generate import load_models
    from ebm_repro.report import save_grid
    from ebm_repro.runtime import pick_device

    p = commands.load(a)
    cfg, device = settings(p), pick_device(a.device)
    torch.manual_seed(cfg.sampling.seed)
    models = []
    for m, path in zip(cfg.models, a.models, strict=True):
        rc = C.resolve(p, m.variant)
        models += load_models(rc, Path(path), "single", device)  # EMA weights (code: ema_model_state_dict_0)
    mc = rc.hp.model
    # celeba_combine.py's transform between rounds: RandomResizedCrop(scale 0.08-1), flip, colour distortion of
    # strength 1 (jitter 0.8/0.8/0.8/0.4 with p 0.8, grayscale p 0.2), no blur
    augment = make_augment(dataclasses.replace(rc.hp.augment, enabled=True, crop_scale_min=0.08, hflip=True,
                                               jitter_strength=1.0, jitter_p=0.8, grayscale_p=0.2, blur_p=0.0),
                           mc.image_size)
    clf = load_classifier(Path(a.classifier)).to(device)
    s = cfg.sampling
    out, grids = {}, []
    for k in range(1, len(models) + 1):
        images = np.concatenate([sample_composition(models[:k], s, augment, (mc.channels, mc.image_size,
                                                                              mc.image_size), min(s.batch_size, s.n_samples - i), device)
                                 for i in range(0, s.n_samples, s.batch_size)])
        out[str(k)] = attribute_shares(clf, images, k, s.batch_size, device)
        grids.append(images[:8])
    result = {"compositions": out, "n_samples": s.n_samples, "setting": p["setting"],
              "classifier": json.loads(Path(a.classifier_info).read_text()),
              "sampling": f"{s.init_rounds} x {s.steps_per_round} steps with augmentation between, then "
                          f"{s.refine_steps} steps; step {s.step_size:g} / #models, noise {s.noise_std:g}"}
    ck.atomic_write_text(Path(a.out), json.dumps(result, indent=1) + "\n")
    rows = np.concatenate(grids)
    save_grid(rows, np.repeat(np.arange(1, len(grids) + 1), [len(g) for g in grids]), Path(a.figure),
              "ICD Fig. 9: composed CelebA-HQ samples (row k: the first k of young, female, smiling, wavy)",
              nrow=8, per_class=True, class_names=("", "young", "+ female", "+ smiling", "+ wavy"))
    print(json.dumps(out, indent=1))


def cmd_table(a) -> None:
    from ebm_repro import checkpoint as ck
    from ebm_repro import datasets_large as DL
    from ebm_repro.report import write_provenance

    p = commands.load(a)
    d = json.loads(Path(a.result).read_text())
    if d.get("status") == "missing":
        result, missing = None, DL.missing_cell("celebahq128", Path(d["path"]))
    else:
        result, missing = d, None
    ck.atomic_write_text(Path(a.out), table(result, missing, p["setting"]))
    write_provenance(Path(a.out), [Path(a.result), Path(a.params)], {"setting": p["setting"]})
    print(f"wrote {a.out}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-attribute-classifier", help="E19: ResNet-18 on young / female / smiling / wavy")
    commands.add_common(p)
    for arg in ("--data", "--out", "--info"):
        p.add_argument(arg, required=True)
    p.set_defaults(fn=cmd_train_classifier)
    p = sub.add_parser("sample-compose-celeba", help="E19: composed samples and their attribute shares")
    commands.add_common(p)
    p.add_argument("--models", nargs="+", required=True, help="model.pt per compose_celeba model, in order")
    for arg in ("--classifier", "--classifier-info", "--out", "--figure"):
        p.add_argument(arg, required=True)
    p.set_defaults(fn=cmd_sample)
    p = sub.add_parser("table-compose-celeba", help="results/tables/compose_celeba.md")
    commands.add_common(p)
    p.add_argument("--result", required=True, help="the shares JSON, or celebahq128's status JSON when missing")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_table)


def claims(params: dict, prefix: str) -> list[Claim]:
    """Each cell of Tab. 3's ICD rows: the share of composed samples showing the attribute (±5 points)."""
    from ebm_repro import datasets_large as DL
    from ebm_repro.report import paper_lookup

    res_path, status_path = Path(f"{prefix}results/compose_celeba/shares.json"), Path(f"{prefix}data/celebahq128/status.json")
    result = json.loads(res_path.read_text()) if res_path.exists() else None
    missing = None
    if result is None:
        status = json.loads(status_path.read_text()) if status_path.exists() else {}
        missing = (DL.missing_cell("celebahq128", Path(status["path"]))[len("not run: "):]
                   if status.get("status") == "missing" else "no output yet")
    paper = paper_lookup(PAPER_KEY)["ICD"]
    out = []
    for k in range(1, 5):
        for a in ATTRS[:k]:
            value = None if result is None else result["compositions"][str(k)][a]
            out.append(number_claim(f"{PAPER_KEY}/ICD/{PAPER_COLUMNS[a]}/{k - 1}",
                                    f"share of samples of composition {k} showing {a}", "ICD Tab. 3",
                                    paper[PAPER_COLUMNS[a]][k - 1], value, "share", OUTPUT, params["setting"], missing))
    return out
