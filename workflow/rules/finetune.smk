# E9 -- IGEBM Tab. 1 (experiments/finetune.py): classifier from scratch vs from the EBM's weights, +- flip/crop.

from dataclasses import asdict

from ebm_repro.config import stable_hash
from ebm_repro.experiments.finetune import RUNS, finetune_config

FC = finetune_config(PARAMS, SETTING)
FT_DATA = f"{PREFIX}data/{run_config(FC.variant).dataset}"

REPORT_TABLES["finetune"] = "E09 Fine-tuning (IGEBM Tab. 1)"

FINETUNE_TARGETS = [f"{PREFIX}results/tables/finetune.md"]


wildcard_constraints:
    ft_run="|".join(RUNS),


rule train_finetune_classifier:
    """One run of IGEBM Tab. 1 (baseline / ft, +- _da): train, then test accuracy -> results/finetune/<run>.json."""
    input:
        train=f"{FT_DATA}/train.npz",
        test=f"{FT_DATA}/test.npz",
        model=lambda w: f"{TRAIN_DIR}/{FC.variant}/model.pt" if RUNS[w.ft_run][1] == "ebm" else [],
    output:
        f"{PREFIX}results/finetune/{{ft_run}}.json",
    log:
        f"{PREFIX}logs/train_finetune_classifier_{{ft_run}}.log",
    params:
        data=lambda w, input: outdir(input.train),
        model=lambda w, input: f"--model {input.model}" if input.model else "",
        config=stable_hash(asdict(FC), 12),
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} train-finetune {ARGS} --threads {threads} --run {wildcards.ft_run} --data {params.data} "
        "{params.model} --out {output} > {log} 2>&1"


rule make_finetune_table:
    """results/tables/finetune.md (E9, IGEBM Tab. 1): test accuracy of the four runs beside the paper's."""
    input:
        [f"{PREFIX}results/finetune/{run}.json" for run in RUNS],
    output:
        FINETUNE_TARGETS[0],  # shown as HTML: REPORT_TABLES
    log:
        f"{PREFIX}logs/make_finetune_table.log",
    threads: 1
    shell:
        "{CLI} table-finetune {ARGS} --results {input} --out {output} > {log} 2>&1"
