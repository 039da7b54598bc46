"""The audit page: every number and claim of both papers, one row each, beside this run's value and a verdict.

`results/audit.md` (+ `.html` for the Snakemake report) is generated from the outputs, never edited by hand:
- the claims each experiment's `claims(params, prefix)` reads from its outputs (numbers within the claims.py
  tolerances; qualitative claims with the measurable criterion written beside them);
- a row for every paper_numbers.yaml number that no experiment claims: another method's number the paper prints
  for comparison is a quoted baseline, any other says why it was not run (sections.SECTIONS: key prefix ->
  experiment);
- the qualitative claims of experiments not in this workflow yet (sections.PENDING), with a proposed criterion.
Modules: sections (what the papers print, row keys), page (the Markdown page); this file collects and writes.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.claims import BASELINE, TOLERANCE, Claim
from ebm_repro.experiments.audit.page import audit_markdown, verdict_class
from ebm_repro.experiments.audit.sections import (PAPERS, PENDING, TITLES, describe, leaf_of, paper_leaves,
                                                  section_of)

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


# ----------------------------------------------------------------------------- rows
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


# ----------------------------------------------------------------------------- commands
def cmd_audit(a) -> None:
    from ebm_repro.checkpoint import atomic_write_text
    from ebm_repro.report import markdown_html, paper_numbers_path, write_provenance

    p = commands.load(a)
    setting = p["setting"]
    prefix = p["settings"][setting]["prefix"]
    rows = collect(p, prefix)
    out = Path(a.out)
    text = audit_markdown(rows, setting, out, prefix)
    atomic_write_text(out, text + "\n")
    atomic_write_text(Path(a.html), markdown_html(text, f"Audit ({setting} setting)"))
    outputs = sorted({Path(c.output) for c in rows if c.output})
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
