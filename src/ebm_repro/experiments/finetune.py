"""E9: IGEBM §4.3 / Tab. 1, CIFAR-10 classification from scratch vs fine-tuned from the EBM, +- flip/crop augmentation.

Four trainings of the same classifier (results/finetune/<run>.json), differing only in the initial weights
(fresh, or copied from the trained EBM) and in the augmentation (random crop with 4 px padding + horizontal
flip, IGEBM data.py l.203-205). The classifier is the energy net itself: `head: energies` (authors' code,
ebm_sandbox.py `construct_finetune_label`: logit_k = -E(x, k) of the conditional model, every weight trained
with Adam 1e-3) or `head: linear` (paper §4.3: the last linear layer replaced by a classification layer).
Output: results/tables/finetune.md beside the paper's 83.6 / 86.5 / 89.7 / 90.2.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.classifier_config import HEADS, ClassifierTrainConfig
from ebm_repro.config import _enum

BLOCK = "finetune"
# run name -> (Tab. 1 column, initial weights, flip+crop augmentation)
RUNS = {"baseline": ("Baseline", "scratch", False), "ft": ("FT", "ebm", False),
        "baseline_da": ("Baseline + DA", "scratch", True), "ft_da": ("FT + DA", "ebm", True)}
RESULTS = "results/finetune/{run}.json"
TABLE = "results/tables/finetune.md"
PAPER_KEY = "igebm_2019/finetune_table_1"


@dataclass(frozen=True)
class FinetuneConfig:
    variant: str                   # the EBM whose weights initialise the FT runs (its arch for all four)
    head: str = _enum(*HEADS)      # energies: -E(x, k) as logits (code) | linear: new last layer (paper text)
    train: ClassifierTrainConfig   # the same for all four runs


def schema() -> dict:
    return C.setting_block_schema(FinetuneConfig)


def finetune_config(params: dict, setting: str) -> FinetuneConfig:
    fc = C.build_setting_block(FinetuneConfig, params, BLOCK, setting)
    where = f"finetune.{setting}"
    C.check_variant(params, fc.variant, f"{where}.variant")
    n = C.resolve(params, fc.variant, setting=setting, validated=True).hp.model.n_classes
    if fc.head == "energies" and n == 0:
        raise C.ConfigError(f"{where}: head 'energies' reads the class from a conditional model's energies, but "
                            f"{fc.variant!r} is unconditional; pick a conditional variant or head 'linear'")
    if fc.head == "linear" and n > 0:
        raise C.ConfigError(f"{where}: head 'linear' (paper §4.3, features of an unsupervised model) needs an "
                            f"unconditional variant, got {fc.variant!r}; pick one or head 'energies'")
    return fc


def check(params: dict) -> None:
    for setting in ("paper", "smoke"):
        finetune_config(params, setting)


def build_classifier(cfg, fc: FinetuneConfig, init: str, model_path: Path | None, n_classes: int):
    """The classifier of one run: the variant's energy net with fc.head, fresh or with the EBM's weights.

    Returns (classifier, copied keys, the EBM file's record or None).
    """
    import torch

    from ebm_repro.classifier import copy_ebm_weights, energy_classifier, load_ebm
    from ebm_repro.models import make_model

    torch.manual_seed(fc.train.seed)  # the same fresh weights for every run (FT overwrites all but a new head)
    clf = energy_classifier(make_model(cfg.hp.model), fc.head, n_classes)
    if init == "scratch":
        return clf, [], None
    if model_path is None:
        raise ValueError("a fine-tuning run needs the EBM's model.pt (--model)")
    ebm, meta = load_ebm(cfg, Path(model_path), torch.device("cpu"))
    return clf, copy_ebm_weights(clf, ebm.state_dict()), meta


def cmd_train_finetune(a) -> None:
    """One run of Tab. 1: train the classifier (fresh or from the EBM, +- augmentation); test accuracy -> JSON."""
    import torch

    from ebm_repro.checkpoint import atomic_write_text, file_digest
    from ebm_repro.classifier import train_classifier
    from ebm_repro.runtime import pick_device
    from ebm_repro.data import DATASETS, load_split

    p = commands.load(a)
    torch.set_num_threads(a.threads)
    fc = finetune_config(p, p["setting"])
    if a.run not in RUNS:
        raise SystemExit(f"error: unknown run {a.run!r}; choose one of {sorted(RUNS)}")
    column, init, augment = RUNS[a.run]
    cfg = C.resolve(p, fc.variant)
    n_classes = len(DATASETS[cfg.dataset]["classes"])
    clf, copied, meta = build_classifier(cfg, fc, init, Path(a.model) if a.model else None, n_classes)
    data = Path(a.data)
    info = train_classifier(clf, load_split(data / "train.npz"), load_split(data / "test.npz"), fc.train, augment,
                            pick_device(a.device))
    out = {"setting": p["setting"], "preset": p["preset"], "run": a.run, "column": column, "init": init,
           "augment": augment, "variant": fc.variant, "dataset": cfg.dataset, "head": fc.head,
           "arch": cfg.hp.model.arch, "n_copied": len(copied), "copied_keys": copied,
           "ebm_step": meta["step"] if meta else None,
           "ebm_sha256": file_digest(Path(a.model)) if meta else None, "config": asdict(fc), **info}
    atomic_write_text(Path(a.out), json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("copied_keys", "history")}, indent=1))


def finetune_table(results: dict[str, dict], paper: dict) -> str:
    """results/tables/finetune.md: IGEBM Tab. 1 with this run's test accuracies."""
    from tabulate import tabulate

    cols = [RUNS[r][0] for r in RUNS]
    rows = [["test accuracy (this run, %)"] + [f"{results[r]['test_acc']:.1f}" for r in RUNS],
            ["test accuracy (paper, %)"] + [f"{paper[c]:.1f}" for c in cols],
            ["initial weights"] + [("EBM `%s` (step %s, %d tensors copied)" % (results[r]["variant"],
                                    results[r]["ebm_step"], results[r]["n_copied"])) if RUNS[r][1] == "ebm"
                                   else "fresh" for r in RUNS],
            ["train steps"] + [str(results[r]["steps"]) for r in RUNS]]
    r0 = next(iter(results.values()))
    tc, smoke = r0["config"]["train"], r0["setting"] == "smoke"
    head = ("logit_k = -E(x, k): the conditional EBM's energies over the classes (authors' code, every weight "
            "trained)" if r0["head"] == "energies" else
            "the EBM's last linear layer replaced by a fresh linear layer to the classes (paper §4.3)")
    n_train = f"{r0['n_train']} training images" + ("" if tc["n_train"] == 0 else " (a seeded subset)")
    lines = [f"# Fine-tuning the EBM for classification (IGEBM Tab. 1) ({r0['setting']} setting)", "",
             tabulate(rows, headers=["", *cols], tablefmt="github", disable_numparse=True), "", "## Notes", "",
             f"- Classifier: the `{r0['arch']}` energy net of `{r0['variant']}`; {head}. Baseline = the same net "
             f"from fresh weights (seed {tc['seed']}); FT = initialised with all of the EBM's weights.",
             f"- Training (identical for the four runs, same batch order): {tc['optimizer']} lr {tc['lr']:g} "
             f"({tc['schedule']}), weight decay {tc['weight_decay']:g}, batch {tc['batch_size']}, {tc['epochs']} "
             f"epoch(s) over {n_train} of `{r0['dataset']}`; test accuracy on {r0['n_test']} test images after the "
             f"last epoch. DA = random crop of the 4-px zero-padded image + horizontal flip (IGEBM data.py).",
             f"- Paper row: IGEBM Tab. 1 (`{PAPER_KEY}`); the paper gives no training length, optimiser or "
             f"architecture for these runs (docs/fidelity.md, E9).",
             f"- Setting `{r0['setting']}`, preset `{r0['preset']}`; parameters: params.yaml `finetune`."]
    if smoke:
        lines.append("- **Smoke setting: tiny trainings on the generated `shapes` stand-in; the numbers only show "
                     "that the DAG runs end to end. Do not compare them with the paper row.**")
    return "\n".join(lines) + "\n"


def _load_results(paths: list[str]) -> dict[str, dict]:
    results = {}
    for path in paths:
        r = json.loads(Path(path).read_text())
        results[r["run"]] = r
    missing = sorted(set(RUNS) - set(results))
    if missing:
        raise SystemExit(f"error: no results for runs {missing}; pass one JSON per run of {sorted(RUNS)}")
    return results


def cmd_table_finetune(a) -> None:
    from ebm_repro.checkpoint import atomic_write_text
    from ebm_repro.report import paper_lookup, write_provenance

    results = _load_results(a.results)
    out = Path(a.out)
    atomic_write_text(out, finetune_table(results, paper_lookup(PAPER_KEY)))
    write_provenance(out, [Path(r) for r in a.results] + [Path(a.params)],
                     {"setting": next(iter(results.values()))["setting"],
                      "test_acc": {r: v["test_acc"] for r, v in results.items()}})
    print(f"wrote {out}")


def claims(params: dict, prefix: str) -> list:
    """IGEBM Tab. 1: four test accuracies (±1 point) and the direction FT > baseline (with and without DA)."""
    from ebm_repro.claims import judged_claim, number_claim
    from ebm_repro.report import paper_lookup

    paper = paper_lookup(PAPER_KEY)
    got = {}
    for run in RUNS:
        path = Path(prefix + RESULTS.format(run=run))
        if path.is_file():
            got[run] = json.loads(path.read_text())
    setting = next(iter(got.values()))["setting"] if got else params["setting"]
    out = []
    for run, (column, _, _) in RUNS.items():
        r = got.get(run)
        out.append(number_claim(f"{PAPER_KEY}/{column}", f"CIFAR-10 test accuracy (%), {column}", "IGEBM Tab. 1",
                                paper[column], r["test_acc"] if r else None, "accuracy", f"{prefix}{TABLE}", setting,
                                missing=f"no {prefix}{RESULTS.format(run=run)}"))
    pairs = (("ft", "baseline"), ("ft_da", "baseline_da"))
    done = all(a in got and b in got for a, b in pairs)
    value = ("; ".join(f"{RUNS[a][0]} {got[a]['test_acc']:.1f} vs {RUNS[b][0]} {got[b]['test_acc']:.1f}"
                       for a, b in pairs) if done else None)
    out.append(judged_claim("qualitative/finetune/ft_beats_baseline",
                            "energy-based fine-tuning allows better generalization: the classifier initialised from "
                            "the EBM beats the one trained from scratch", "IGEBM §4.3, Tab. 1", "FT > Baseline", value,
                            "test accuracy FT > Baseline and FT + DA > Baseline + DA",
                            all(got[a]["test_acc"] > got[b]["test_acc"] for a, b in pairs) if done else None,
                            f"{prefix}{TABLE}", setting, missing="not all four runs have results"))
    return out


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-finetune", help="E9: one run of IGEBM Tab. 1 -> results/finetune/<run>.json")
    commands.add_common(p)
    p.add_argument("--run", required=True, choices=sorted(RUNS))
    p.add_argument("--data", required=True, help="dataset folder with train.npz and test.npz")
    p.add_argument("--model", default=None, help="the EBM's model.pt (FT runs)")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_train_finetune)
    p = sub.add_parser("table-finetune", help="results/tables/finetune.md (IGEBM Tab. 1)")
    commands.add_common(p)
    p.add_argument("--results", nargs="+", required=True, help="the four run JSONs")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_table_finetune)
