# E6 -- IGEBM Tab. 2 / Fig. 8, ICD Tab. 1 (experiments/ood.py): AUROC of -E(x), CIFAR-10 test vs OOD sets.
from ebm_repro.datasets_ood import OOD_DATASETS, data_name
from ebm_repro.experiments.ood import SETS as OOD_SETS

OOD_VARIANTS = [r["variant"] for r in PARAMS["ood"]["rows"]]
# downloaded sets (paper) or their generated stand-ins (smoke): <set key> -> its test.npz
OOD_FILES = {k: f"{PREFIX}data/{data_name(OOD_SETS[k].source, SETTING)}/test.npz"
             for k in PARAMS["ood"]["sets"] if OOD_SETS[k].source}

CAT_OOD = "E06 OOD detection (IGEBM Tab. 2, Fig. 8; ICD Tab. 1)"
REPORT_TABLES["ood"] = CAT_OOD

OOD_TARGETS = [f"{PREFIX}results/tables/ood.md", f"{PREFIX}results/figures/ood_hist.png",
               f"{PREFIX}results/figures/ood_hist.pdf"]


wildcard_constraints:
    ood_set="|".join(OOD_DATASETS),


rule prepare_ood_set:
    """Download (paper: SVHN test, DTD, CIFAR-100 test; md5-checked) or generate (smoke: stand-ins) one OOD set."""
    output:
        test=f"{PREFIX}data/{{ood_set}}/test.npz",
        checksums=f"{PREFIX}data/{{ood_set}}/checksums.json",
    log:
        f"{PREFIX}logs/prepare_ood_set_{{ood_set}}.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/ood/prepare_ood_set_{{ood_set}}.tsv"
    params:
        out=lambda w, output: outdir(output.test),
    threads: 1
    shell:
        "{PY} -m ebm_repro.datasets_ood --set {wildcards.ood_set} --out {params.out} > {log} 2>&1"


rule score_ood:
    """E6: -E(x) of each ood.rows model on the CIFAR-10 test images and on every OOD set (no sampling)."""
    input:
        models=[f"{TRAIN_DIR}/{v}/model.pt" for v in OOD_VARIANTS],
        in_test=f"{PREFIX}data/{run_config(OOD_VARIANTS[0]).dataset}/test.npz",  # ood.check: one dataset
        sets=list(OOD_FILES.values()),
    output:
        scores=f"{PREFIX}results/ood/scores.npz",
        meta=f"{PREFIX}results/ood/scores.json",
    log:
        f"{PREFIX}logs/score_ood.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/ood/score_ood.tsv"
    params:
        block=PARAMS["ood"],
        hashes=[run_config(v).hash() for v in OOD_VARIANTS],
        set_files=" ".join(f"{k}={p}" for k, p in OOD_FILES.items()),
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} score-ood {ARGS} --threads {threads} --models {input.models} --in-test {input.in_test} "
        "--set-files {params.set_files} --out {output.scores} > {log} 2>&1"


rule report_ood:
    """results/tables/ood.md (E6, IGEBM Tab. 2 / ICD Tab. 1) and figures/ood_hist.{png,pdf} (IGEBM Fig. 8)."""
    input:
        scores=rules.score_ood.output.scores,
        meta=rules.score_ood.output.meta,
    output:
        table=OOD_TARGETS[0],  # shown as HTML: REPORT_TABLES
        png=report(OOD_TARGETS[1], caption="../report/ood_hist.rst", category=CAT_OOD),
        pdf=OOD_TARGETS[2],
        auroc=f"{PREFIX}results/ood/auroc.json",
    log:
        f"{PREFIX}logs/report_ood.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/ood/report_ood.tsv"
    threads: 1
    shell:
        "{CLI} report-ood {ARGS} --scores {input.scores} --table {output.table} --auroc {output.auroc} "
        "--figure {output.png} > {log} 2>&1"
