"""The experiments: each regenerates a paper table or figure from the algorithm's outputs.

EXPERIMENTS is the explicit table (no registration by import side effects): name -> module. Each module has
  BLOCK                 its params.yaml block (a frozen config dataclass / schema it owns),
  schema() -> dict      that block's JSON schema (params.py assembles the whole file's),
  check(params) -> None cross-key rules of its block (variants it names exist, ...),
  add_commands(sub)     its verbs of `python -m ebm_repro`,
  claims(params, prefix) -> list[claims.Claim]   (experiments that regenerate paper numbers) the paper's
                        claims it covers, with the values read from its outputs under {prefix}results/
                        (audit page, experiments/audit.py; a missing output gives "not run: <reason>").
Experiments never import each other; the algorithm (the modules above this package) imports no experiment.
Each module imports only light modules at load time (params.yaml validation runs in every Snakemake start).
"""
from __future__ import annotations

from types import ModuleType

from ebm_repro.experiments import ablation, inception, kl_grad, particle, stability, toy2d, truncation
from ebm_repro.experiments import compose_celeba, large_data

EXPERIMENTS: dict[str, ModuleType] = {
    "inception": inception,      # E1, E2, E3 top row: IGEBM Tab. 4b, ICD Fig. 3
    "ablation": ablation,        # E3: ICD Tab. 2
    "stability": stability,      # E4: ICD Fig. 8
    "kl_grad": kl_grad,          # E14: ICD Fig. 13
    "truncation": truncation,    # E15: ICD App. D.1
    "particle": particle,        # E10: IGEBM §5.1, Fig. 9
    "toy2d": toy2d,              # 2-D check of every training recipe
    "large_data": large_data,    # E17, E18: ImageNet 32x32, CelebA-HQ 128, LSUN bedroom 128 (rows of inception)
    "compose_celeba": compose_celeba,  # E19: ICD Tab. 3
}
