# E4 -- ICD Fig. 8 (experiments/stability.py): buffer IS and energy gap over training, per variant.

AB_CURVES = [c["variant"] for c in PARAMS["stability"]["curves"]]

STABILITY_TARGETS = [f"{PREFIX}results/figures/stability.png", f"{PREFIX}results/figures/stability.pdf"]


rule plot_stability:
    """results/figures/stability.{png,pdf} (E4, ICD Fig. 8): buffer IS and energy gap over training."""
    input:
        runs=train_files(AB_CURVES),
    output:
        png=report(STABILITY_TARGETS[0], caption="../report/stability.rst",
                   category="E04 Training stability (ICD Fig. 8)"),
        pdf=STABILITY_TARGETS[1],
    log:
        f"{PREFIX}logs/plot_stability.log",
    params:
        dirs=train_dirs(AB_CURVES),
        rule=PARAMS["stability_rule"],
        labels=[c["label"] for c in PARAMS["stability"]["curves"]],
    threads: 1
    shell:
        "{CLI} plot-stability {ARGS} --train-dirs {params.dirs} --out {output.png} > {log} 2>&1"
