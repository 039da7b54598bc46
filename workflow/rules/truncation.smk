# E15 -- ICD App. D.1 (experiments/truncation.py): MNIST, L_opt through the last vs every Langevin step.

AB_TRUNC = [r["variant"] for r in PARAMS["truncation"]["rows"]]
AB_TRUNC_DATA = [f"{PREFIX}data/{run_config(v).dataset}" for v in AB_TRUNC]

TRUNCATION_TARGETS = [f"{PREFIX}results/tables/truncation.md"]
CAT_TRUNCATION = "E15 Truncated Langevin backpropagation (ICD App. D.1, Figs. 18/19)"
REPORT_TABLES["truncation"] = CAT_TRUNCATION
GRID_CATEGORY.update({v: CAT_TRUNCATION for v in AB_TRUNC})  # ICD Figs. 18 / 19


rule time_truncation_steps:
    """E15 timing: seconds per training iteration of both truncation variants, interleaved in one process."""
    input:
        data=sorted({f"{d}/train.npz" for d in AB_TRUNC_DATA}),  # MNIST (smoke: its stand-in), once
    output:
        f"{PREFIX}results/truncation/timing.json",
    log:
        f"{PREFIX}logs/time_truncation_steps.log",
    params:
        dirs=" ".join(AB_TRUNC_DATA),  # one per truncation row
        hashes=[run_config(v).training_hash() for v in AB_TRUNC],
        steps=PARAMS["truncation"]["timing_steps"][SETTING],
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} time-truncation {ARGS} --threads {threads} --data-dirs {params.dirs} "
        "--out {output} > {log} 2>&1"


rule make_truncation_table:
    """results/tables/truncation.md (E15, ICD App. D.1): MNIST FID and s/iteration, last-step vs all-step L_opt."""
    input:
        runs=train_files(AB_TRUNC),
        metrics=single_metrics(AB_TRUNC),
        grids=[f"{PREFIX}results/figures/samples_{v}_single.png" for v in AB_TRUNC],  # Figs. 18 / 19
        timing=rules.time_truncation_steps.output[0],
    output:
        TRUNCATION_TARGETS[0],
    log:
        f"{PREFIX}logs/make_truncation_table.log",
    params:
        dirs=train_dirs(AB_TRUNC),
        rows=PARAMS["truncation"]["rows"],
    threads: 1
    shell:
        "{CLI} table-truncation {ARGS} --train-dirs {params.dirs} --metrics {input.metrics} "
        "--timing {input.timing} --out {output} > {log} 2>&1"
