"""The audit page: every number and claim of both papers, one row each, beside this run's value and a verdict.

`results/audit.md` (+ `.html` for the Snakemake report) is generated from the outputs, never edited by hand:
- the claims each experiment's `claims(params, prefix)` reads from its outputs (numbers within the claims.py
  tolerances; qualitative claims with the measurable criterion written beside them);
- a row for every paper_numbers.yaml number that no experiment claims: another method's number the paper prints
  for comparison is a quoted baseline, any other says why it was not run (SECTIONS: key prefix -> experiment);
- the qualitative claims of experiments not in this workflow yet (PENDING), with the criterion we propose.
Row keys: a paper_numbers.yaml path ("improved_cd_2021/ablation_table_2/4/FID"); "<path>#<qualifier>" when one
number is compared with several of our rows (or a qualitative entry holds several claims); "qualitative/<exp>/<name>".
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.claims import BASELINE, NOT_REPRODUCED, REPRODUCED, SMOKE, TOLERANCE, Claim

BLOCK = "audit"


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class KLGradCriterion:
    """ICD App. D.4 / Fig. 13 in numbers: 'non-negligible' and 'remains constant across training'."""
    min_median_ratio: float = C._pos()  # median |grad L_KL| / |grad L_CD| over training at least this
    max_drift: float = C._pos(minimum=1)  # late-half median ratio / early-half median ratio within [1/x, x]


@dataclass(frozen=True)
class AuditConfig:
    """Criteria of the qualitative claims where the paper gives no number (our choice, printed on the page)."""
    kl_grad: KLGradCriterion


def schema() -> dict:
    return C.dataclass_schema(AuditConfig)


def check(params: dict) -> None:
    """Nothing beyond the schema: the criteria are independent numbers."""


# ----------------------------------------------------------------------------- what the papers print
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


def paper_leaves(tree: dict | None = None) -> dict[str, float | str | bool]:
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

    walk(paper_numbers() if tree is None else tree, "")
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


def unclaimed_row(key: str, value, experiments: dict) -> Claim:
    """The row of a paper number no experiment claims: a quoted baseline, or why it was not run."""
    prefix, sec = section_of(key)
    below = key[len(prefix):].strip("/").split("/")
    kind = sec.kind or below[-1]
    tol = f"±{TOLERANCE[kind]:g}" if kind in TOLERANCE else "—"
    if sec.ours is not None and not set(below) & set(sec.ours):
        return Claim(key, describe(key), sec.place, value, None, "—", BASELINE, "")
    if sec.experiment in experiments:
        why = f"{sec.eid} ({TITLES[sec.eid]}): no row of params.yaml `{sec.experiment}` cites this number"
    else:
        why = f"{sec.eid} ({TITLES[sec.eid]}): {sec.absent}"
    return Claim(key, describe(key), sec.place, value, None, tol, f"not run: {why}", "")


def collect(params: dict, prefix: str, experiments: dict | None = None) -> list[Claim]:
    """Every row of the audit page, in page order (paper, then paper_numbers.yaml order, then qualitative)."""
    if experiments is None:
        from ebm_repro.experiments import EXPERIMENTS as experiments
    leaves = paper_leaves()
    rows = [c for mod in experiments.values() if hasattr(mod, "claims") for c in mod.claims(params, prefix)]
    seen: set[str] = set()
    for c in rows:
        if c.key in seen:
            raise ValueError(f"audit: two claims with key {c.key!r}; each claim must be one row")
        if not c.key.startswith("qualitative/") and leaf_of(c.key, leaves) is None:
            raise ValueError(f"audit: claim key {c.key!r} is no paper_numbers.yaml path; fix the experiment's claims()")
        seen.add(c.key)
    covered = {leaf_of(c.key, leaves) for c in rows}
    rows += [unclaimed_row(k, v, experiments) for k, v in leaves.items() if k not in covered]
    rows += [Claim(f"qualitative/{p.experiment}/{p.name}", p.claim, p.place, "claimed", None,
                   f"(proposed) {p.criterion}",
                   f"not run: {p.eid} ({TITLES[p.eid]}): no experiment in this workflow yet", "")
             for p in PENDING if p.experiment not in experiments]
    order = {k: i for i, k in enumerate(leaves)}

    def position(c: Claim) -> tuple[int, int, int]:
        paper = next((i for i, (_, short, _) in enumerate(PAPERS) if c.place.startswith(short)), len(PAPERS))
        leaf = leaf_of(c.key, leaves)
        return (paper, 0, order[leaf]) if leaf else (paper, 1, 0)

    return sorted(rows, key=position)  # stable: an experiment's own order within a number or among its claims


# ----------------------------------------------------------------------------- page
def verdict_class(verdict: str) -> str:
    return "not run" if verdict.startswith("not run") else verdict


def cell(v, ours: bool = False) -> str:
    """A table cell, '|' escaped: the paper's values as printed, our floats to 4 significant digits."""
    if v is None or v == "":
        return "—"
    if isinstance(v, bool):
        return "Yes" if v else "No"
    if isinstance(v, float) and ours:
        v = f"{v:#.4g}".rstrip(".")
    return str(v).replace("|", "\\|").replace("\n", " ")


def audit_markdown(rows: list[Claim], setting: str, out: Path, prefix: str) -> str:
    """The page: summary counts per verdict, how to read it, one table per paper."""
    from collections import Counter

    from tabulate import tabulate

    counts = Counter(verdict_class(c.verdict) for c in rows)
    classes = [REPRODUCED, NOT_REPRODUCED, SMOKE, "not run", BASELINE]
    reasons = Counter(c.verdict[len("not run: "):] for c in rows if c.verdict.startswith("not run"))
    def by_id(item: tuple[str, int]) -> tuple[int, str]:  # reasons in experiment-id order
        m = re.search(r"E(\d+)", item[0])
        return (int(m[1]) if m else 99, item[0])
    lines = [f"# Audit: every claim of both papers ({setting} setting)", "",
             f"Generated by `python -m ebm_repro audit` from this run's outputs under `{prefix}results/` and "
             "`src/ebm_repro/paper_numbers.yaml`; never edited by hand (Snakemake rule `make_audit_page` rewrites it).",
             ""]
    if setting == "smoke":
        lines += ["**Smoke setting: no value on this page is comparable with the papers** (generated stand-in data, "
                  "tiny nets, a few iterations, a small classifier in place of Inception-v3). Rows with a value read "
                  "\"smoke: not comparable\"; they only show that every claim is wired to an output.", ""]
    lines += ["## Summary", "",
              tabulate([[k, counts.get(k, 0)] for k in classes] + [["total", len(rows)]],
                       headers=["verdict", "rows"], tablefmt="github"), ""]
    if reasons:
        lines += ["Not run, by reason:", "",
                  tabulate([[cell(r), n] for r, n in sorted(reasons.items(), key=by_id)],
                           headers=["reason", "rows"], tablefmt="github", disable_numparse=True), ""]
    tol = ", ".join(f"{k} ±{v:g}" for k, v in TOLERANCE.items())
    lines += ["## How to read it", "",
              f"- A number is *reproduced* when this run's value lies within the tolerance of the paper's ({tol}; "
              "share as a fraction, accuracy in percentage points). A qualitative claim is judged by the measurable "
              "criterion written in its row (our choice where the paper gives none; params.yaml `audit`).",
              "- One row per number of `paper_numbers.yaml` (null = not reported: no row; ICD Tab. 2's factor columns "
              "name its rows and are not results). A number compared with several of our rows gets one row per row "
              "(key `<path>#<our row>`).",
              f"- *{BASELINE}*: another method's number that the paper prints for comparison. It is listed so that "
              "no printed number is dropped; this workflow does not rerun other methods.",
              "- *not run*: the reason names the experiment (ids of `experiments.md`) and what is missing.",
              "- Links point to the table or figure each value comes from; each has a `.provenance.json` sidecar.", ""]
    head = ["claim (`key`)", "place", "paper", "this run", "tolerance / criterion", "verdict", "output"]
    for _, short, title in PAPERS + (("", "", "Other"),):
        mine = [c for c in rows if (c.place.startswith(short) if short else
                                    not any(c.place.startswith(s) for _, s, _ in PAPERS))]
        claimed = [c for c in mine if c.verdict != BASELINE]
        if claimed:
            body = [[f"{cell(c.claim)} (`{cell(c.key)}`)", cell(c.place), cell(c.paper), cell(c.reproduced, ours=True),
                     cell(c.tolerance), cell(c.verdict), link(c.output, out)] for c in claimed]
            lines += [f"## {title}", "", tabulate(body, headers=head, tablefmt="github", disable_numparse=True), ""]
        quoted = [[f"{cell(c.claim)} (`{cell(c.key)}`)", cell(c.place), cell(c.paper)] for c in mine
                  if c not in claimed]
        if quoted:
            lines += [f"### {short or title}: other methods' numbers it quotes (each row: {BASELINE})", "",
                      tabulate(quoted, headers=["number (`key`)", "place", "paper"], tablefmt="github",
                               disable_numparse=True), ""]
    return "\n".join(lines)


def link(output: str, page: Path) -> str:
    """A Markdown link to an output, relative to the audit page."""
    if not output:
        return "—"
    rel = os.path.relpath(output, page.parent).replace(os.sep, "/")
    return f"[{rel}]({rel})"


def cmd_audit(a) -> None:
    from ebm_repro.checkpoint import atomic_write_text
    from ebm_repro.report import markdown_html, write_provenance

    p = commands.load(a)
    setting = p["setting"]
    prefix = p["settings"][setting]["prefix"]
    rows = collect(p, prefix)
    out = Path(a.out)
    text = audit_markdown(rows, setting, out, prefix)
    atomic_write_text(out, text + "\n")
    atomic_write_text(Path(a.html), markdown_html(text, f"Audit ({setting} setting)"))
    outputs = sorted({Path(c.output) for c in rows if c.output})
    from ebm_repro.report import paper_numbers_path
    for path in (out, Path(a.html)):
        write_provenance(path, outputs + [Path(a.params), paper_numbers_path()],
                         {"setting": setting, "rows": len(rows),
                          "verdicts": {k: sum(verdict_class(c.verdict) == k for c in rows)
                                       for k in sorted({verdict_class(c.verdict) for c in rows})}})
    print(f"wrote {out} ({len(rows)} rows)")


def cmd_render_html(a) -> None:
    """Markdown tables -> standalone HTML pages (the Snakemake report shows HTML, not Markdown)."""
    from ebm_repro.checkpoint import atomic_write_text
    from ebm_repro.report import markdown_html

    if len(a.md) != len(a.out):
        raise SystemExit(f"error: {len(a.md)} --md files but {len(a.out)} --out files")
    for md, out in zip(a.md, a.out):
        text = Path(md).read_text()
        title = next((l[2:] for l in text.splitlines() if l.startswith("# ")), Path(md).stem)
        atomic_write_text(Path(out), markdown_html(text, title))
        print(f"wrote {out}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="results/audit.md: every paper claim beside this run's value and a verdict")
    commands.add_common(p)
    p.add_argument("--out", required=True, help="audit.md")
    p.add_argument("--html", required=True, help="the same page as HTML (Snakemake report)")
    p.set_defaults(fn=cmd_audit)
    p = sub.add_parser("render-html", help="Markdown tables as HTML pages for the Snakemake report")
    commands.add_common(p)
    p.add_argument("--md", nargs="+", required=True)
    p.add_argument("--out", nargs="+", required=True)
    p.set_defaults(fn=cmd_render_html)
