# E3 -- ICD Tab. 2 (experiments/ablation.py). Its variants train through the generic train_model rule.
# Needs the Snakefile globals PREFIX, PARAMS and common.smk's CLI, ARGS and run-folder helpers.

AB_ROWS = [r["variant"] for r in PARAMS["ablation"]["rows"]]

ABLATION_TARGETS = [f"{PREFIX}results/tables/ablation.md"]
REPORT_TABLES["ablation"] = "E03 ICD ablation (Tab. 2)"


rule make_ablation_table:
    """results/tables/ablation.md (E3): ICD Tab. 2's five rows, IS / FID / stability verdict beside the paper's."""
    input:
        runs=train_files(AB_ROWS),
        metrics=single_metrics(AB_ROWS),
    output:
        ABLATION_TARGETS[0],
    log:
        f"{PREFIX}logs/make_ablation_table.log",
    params:
        dirs=train_dirs(AB_ROWS),
        rule=PARAMS["stability_rule"],
    threads: 1
    shell:
        "{CLI} table-ablation {ARGS} --train-dirs {params.dirs} --metrics {input.metrics} "
        "--out {output} > {log} 2>&1"
