# E14 -- ICD Fig. 13 (experiments/kl_grad.py): parameter-gradient norms of L_KL and L_CD over training.

KL_GRAD_TARGETS = [f"{PREFIX}results/figures/kl_grad.png", f"{PREFIX}results/figures/kl_grad.pdf"]


rule plot_kl_grad:
    """results/figures/kl_grad.{png,pdf} (E14, ICD Fig. 13): parameter-gradient norms of L_KL and L_CD."""
    input:
        runs=train_files([PARAMS["kl_grad"]["variant"]]),
    output:
        png=report(KL_GRAD_TARGETS[0], caption="../report/kl_grad.rst",
                   category="E14 Gradient of L_KL vs L_CD (ICD Fig. 13)"),
        pdf=KL_GRAD_TARGETS[1],
    log:
        f"{PREFIX}logs/plot_kl_grad.log",
    params:
        dirs=train_dirs([PARAMS["kl_grad"]["variant"]]),
    threads: 1
    shell:
        "{CLI} plot-kl-grad {ARGS} --train-dirs {params.dirs} --out {output.png} > {log} 2>&1"
