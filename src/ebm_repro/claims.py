"""Claims: one quantitative or qualitative statement of a paper, the value this run reproduced, and a verdict.

Every experiment module exposes `claims(params, prefix) -> list[Claim]` reading its own outputs under
`{prefix}results/`; the audit page (experiments/audit.py) lists them all. A claim whose output does not exist
says why ("not run: ..."); a smoke run's claims are "smoke: not comparable" -- never a made-up value.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

# Tolerances of the audit (issue 9): a reproduced number within these of the paper's counts as reproduced.
TOLERANCE = {"IS": 0.3, "FID": 3.0, "AUROC": 0.03, "share": 0.05, "accuracy": 1.0}

REPRODUCED, NOT_REPRODUCED, SMOKE = "reproduced", "not reproduced", "smoke: not comparable"
BASELINE = "quoted baseline (not a claim of this paper)"  # another method's number the paper prints to compare


@dataclass(frozen=True)
class Claim:
    """One row of the audit page."""
    key: str                  # path into paper_numbers.yaml, or "qualitative/<experiment>/<name>"
    claim: str                # the claim in the paper's words (or, for a number, what it measures)
    place: str                # where the paper makes it: "IGEBM Tab. 2", "ICD Fig. 8", "IGEBM §5.1"
    paper: float | str | None  # the paper's value (a number, or the qualitative statement's direction)
    reproduced: float | str | None  # this run's value (None when not run)
    tolerance: str            # "±0.03", or the measurable criterion of a qualitative claim
    verdict: str              # REPRODUCED | NOT_REPRODUCED | SMOKE | "not run: <reason>"
    output: str               # the table or figure the value comes from

    def as_dict(self) -> dict:
        return asdict(self)


def missing(*paths: str | Path) -> str | None:
    """Why a claim has no value: the first of the files it reads that does not exist (None when all do)."""
    for p in paths:
        if not Path(p).exists():
            return f"{p} not found (its rule has not run)"
    return None


def within(reproduced: float | None, paper: float, kind: str) -> bool:
    """|reproduced - paper| <= TOLERANCE[kind] (kind: IS, FID, AUROC, share, accuracy), the bound included."""
    # 1e-9: a value exactly on the bound stays inside despite float rounding (6.73 - 6.43 = 0.30000000000000071)
    return (reproduced is not None and math.isfinite(reproduced)
            and abs(reproduced - paper) <= TOLERANCE[kind] + 1e-9)


def number_claim(key: str, claim: str, place: str, paper: float, reproduced: float | None, kind: str,
                 output: str, setting: str, missing: str | None = None) -> Claim:
    """A numeric claim with the audit tolerance of its kind; missing = why there is no value (not run)."""
    tol = f"±{TOLERANCE[kind]:g}" + (" (accuracy points)" if kind == "accuracy" else "")
    if reproduced is None:
        verdict = f"not run: {missing or 'no output'}"
    elif setting == "smoke":
        verdict = SMOKE
    else:
        verdict = REPRODUCED if within(reproduced, paper, kind) else NOT_REPRODUCED
    return Claim(key, claim, place, paper, reproduced, tol, verdict, output)


def judged_claim(key: str, claim: str, place: str, paper: str, reproduced: str | None, criterion: str,
                 held: bool | None, output: str, setting: str, missing: str | None = None) -> Claim:
    """A qualitative claim judged by a measurable criterion; held None = not run."""
    if held is None:
        verdict = f"not run: {missing or 'no output'}"
    elif setting == "smoke":
        verdict = SMOKE
    else:
        verdict = REPRODUCED if held else NOT_REPRODUCED
    return Claim(key, claim, place, paper, reproduced, criterion, verdict, output)
