"""What the papers print: each paper_numbers.yaml table's place, meaning and experiment; pending qualitative claims.

Row keys of the audit page: a paper_numbers.yaml path ("improved_cd_2021/ablation_table_2/4/FID"); "<path>#<qualifier>"
when one number is compared with several of our rows (or a printed statement holds several claims);
"qualitative/<experiment>/<name>" for a claim the papers state in words.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """A paper_numbers.yaml subtree: where the paper prints it, what it measures, which experiment reproduces it."""
    place: str
    what: str
    eid: str                          # experiments.md id
    experiment: str | None            # its name in EXPERIMENTS (None: no experiment planned in this workflow)
    ours: tuple[str, ...] | None = None  # row names of the paper's own method; other rows are quoted baselines
    kind: str | None = None           # tolerance kind of its numbers (None: the leaf's name, IS or FID)
    parts: tuple[str, ...] = ()       # names of list positions
    absent: str = "no experiment in this workflow yet"


# Every top-level paper_numbers.yaml table (a test checks that each number falls under exactly one prefix).
SECTIONS: dict[str, Section] = {
    "igebm_2019/inception_table_4b": Section(
        "IGEBM Tab. 4b", "CIFAR-10 Inception Score", "E1/E2", "inception",
        ours=("IGEBM (single)", "IGEBM (10 historical ensemble)", "IGEBM")),
    "igebm_2019/likelihood_sec_4_2": Section(
        "IGEBM §4.2", "energy of CIFAR-10 images (mean ± std)", "E5", "likelihood", kind="energy",
        parts=("mean", "std")),
    "igebm_2019/restoration_fig_5": Section(
        "IGEBM Fig. 5", "approximate share of test images whose object changes under restoration", "E7",
        "restoration", kind="share"),
    "igebm_2019/finetune_table_1": Section(
        "IGEBM Tab. 1", "CIFAR-10 test accuracy (%), classifier fine-tuned from the EBM vs from scratch", "E9",
        "finetune", kind="accuracy"),
    "igebm_2019/ood_table_2": Section(
        "IGEBM Tab. 2", "OOD AUROC, CIFAR-10 test vs the OOD set", "E6", "ood", ours=("EBM (IGEBM)",), kind="AUROC"),
    "igebm_2019/particle_fig_9": Section("IGEBM §5.1, Fig. 9", "particle dynamics rollouts", "E10", "particle"),
    "improved_cd_2021/generation_fig_3/CIFAR-10 unconditional": Section(
        "ICD Fig. 3", "CIFAR-10 unconditional generation", "E1/E3", "inception", ours=("ICD (Ours)",)),
    "improved_cd_2021/generation_fig_3/CelebA-HQ 128 unconditional": Section(
        "ICD Fig. 3", "CelebA-HQ 128x128 unconditional generation", "E18", None, ours=("ICD (Ours)",),
        absent="no experiment in this workflow (CelebA-HQ needs a manual download; the paper: 3 days on 8 GPUs)"),
    "improved_cd_2021/generation_fig_3/ImageNet 32x32 unconditional": Section(
        "ICD Fig. 3", "ImageNet 32x32 unconditional generation", "E17", None, ours=("ICD (Ours)",),
        absent="no experiment in this workflow (ImageNet 32x32 needs a manual download)"),
    "improved_cd_2021/generation_fig_3/LSUN bedroom 128 (App. B.2)": Section(
        "ICD App. B.2", "LSUN bedroom 128x128 unconditional generation", "E18", None, ours=("ICD (Ours)",),
        absent="no experiment in this workflow (LSUN bedroom needs a manual download; 8 GPUs in the paper)"),
    "improved_cd_2021/ablation_table_2": Section(
        "ICD Tab. 2", "CIFAR-10 ablation: IS, FID and training stability per row", "E3", "ablation"),
    "improved_cd_2021/ood_table_1": Section(
        "ICD Tab. 1", "OOD AUROC of unconditional CIFAR-10 models", "E6", "ood", ours=("ICD",), kind="AUROC"),
    "improved_cd_2021/compose_celeba_table_3": Section(
        "ICD Tab. 3", "CelebA-HQ attribute recovery by a ResNet-18, compositions of the first n of Young, Female, "
        "Smiling, Wavy", "E19", None, ours=("ICD",), kind="share",
        parts=("1 attribute", "2 attributes", "3 attributes", "4 attributes"),
        absent="no experiment in this workflow (CelebA-HQ with attributes needs a manual download)"),
    "improved_cd_2021/truncation_app_d1": Section(
        "ICD App. D.1", "MNIST, L_opt backpropagated through the last vs all Langevin steps", "E15", "truncation"),
}

# Tab. 2's factor columns name a row (which components are on); they are not results, so they get no row.
ROW_LABELS = frozenset({"kl_opt", "kl_ent", "data_aug", "multiscale"})


@dataclass(frozen=True)
class Pending:
    """A qualitative claim of an experiment not in this workflow yet, with the criterion we propose for it."""
    experiment: str
    eid: str
    name: str
    claim: str
    place: str
    criterion: str


PENDING = (
    Pending("likelihood", "E5", "train_test_close", "\"The small mean difference relative to individual standard "
            "deviation indicates EBMs assigns close likelihoods on train and test sets\" (not over-fitting)",
            "IGEBM §4.2", "|mean E(train) - mean E(test)| <= 0.5 std E(train), unconditional and conditional model "
            "(paper: 0.16 and 0.15 std)"),
    Pending("cross_class", "E8", "maps_to_target", "\"energy models are still able to reliably convert these images "
            "to images of the target class\"", "IGEBM §4.2, Fig. 6",
            "a classifier labels >= 50% of the mapped test images as the target class"),
    Pending("compose", "E11", "joint_sampling", "\"we are able to effectively sample from the joint distribution "
            "without significant loss in sample quality\" (all factors except shape preserved)", "IGEBM §6, Fig. 10",
            "scale, position and rotation of joint samples recovered by a trained model above chance"),
    Pending("low_temperature", "E12", "natural_modes", "\"IGEbM converges to images with strange hues ... our "
            "approach maintains naturalistic image modes\"", "ICD §3.1, Fig. 7",
            "FID of 1000-step gradient-descent samples: ICD < IGEBM"),
    Pending("aug_chains", "E13", "chains_separate", "\"Without data-augmentation transitions, all samples converge "
            "to same image, while data augmentations enables chains to separate\"", "ICD Fig. 6, 12",
            "mean pairwise L2 distance of chains from one start: with augmentation > without"),
    Pending("neighbours", "E16", "not_copies", "\"our generated images are not merely copies of images in the "
            "dataset\"", "IGEBM §4.1, Fig. 13; ICD App. B.1, Fig. 14",
            "median L2 distance of samples to their nearest training image >= that of test images"),
)

# Experiment ids of experiments.md -> what they are, for the "not run" reasons.
TITLES = {"E1/E2": "CIFAR-10 generation", "E1/E3": "CIFAR-10 generation", "E3": "ICD ablation", "E5": "likelihood",
          "E6": "OOD detection", "E7": "image restoration", "E8": "cross-class mapping",
          "E9": "fine-tuned classifier", "E10": "particle dynamics", "E11": "dSprites composition",
          "E12": "low-temperature samples", "E13": "augmentation chains", "E15": "truncated backpropagation",
          "E16": "nearest neighbours", "E17": "ImageNet 32x32", "E18": "CelebA-HQ / LSUN 128x128",
          "E19": "CelebA-HQ composition"}

PAPERS = (("igebm_2019", "IGEBM", "IGEBM: Du & Mordatch (2019)"),
          ("improved_cd_2021", "ICD", "ICD: Du, Li, Tenenbaum & Mordatch (2021)"))


def paper_leaves() -> dict[str, float | str | bool]:
    """Every number (and printed statement) of paper_numbers.yaml by path, in file order; null = not reported."""
    from ebm_repro.report import paper_numbers

    out: dict = {}

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in ROW_LABELS:
                    walk(v, f"{path}/{k}" if path else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")
        elif node is not None:
            out[path] = node

    walk(paper_numbers(), "")
    return out


def section_of(key: str) -> tuple[str, Section]:
    """The SECTIONS entry a paper-number key falls under."""
    hits = [(p, s) for p, s in SECTIONS.items() if key == p or key.startswith(p + "/")]
    if len(hits) != 1:
        raise KeyError(f"paper number {key!r} falls under {len(hits)} audit SECTIONS prefixes; add exactly one")
    return hits[0]


def leaf_of(key: str, leaves: dict) -> str | None:
    """The paper_numbers.yaml path a row key refers to (None: a qualitative/... key)."""
    base = key.split("#", 1)[0]
    return base if base in leaves else None


def describe(key: str) -> str:
    """A number's meaning from its path: 'CIFAR-10 Inception Score: unconditional / PixelCNN / IS'."""
    prefix, sec = section_of(key)
    parts = key[len(prefix):].strip("/").split("/")
    named = [sec.parts[int(p)] if p.isdigit() and sec.parts and int(p) < len(sec.parts) else
             (f"row {int(p) + 1}" if p.isdigit() else p) for p in parts]
    return f"{sec.what}: {' / '.join(named)}" if parts != [""] else sec.what
