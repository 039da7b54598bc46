# 2-D toy densities: every training recipe (IGEBM CD / ML, ICD with / without L_KL) on 8 Gaussians and two rings,
# with the true density, the learned exp(-E/T) and test-time samples side by side -- the quickest visual check.
# Needs the Snakefile globals PARAMS, SETTING, PREFIX and PY. The `cfg` param is a hash of the resolved toy2d
# block, so editing it re-runs the rule.

from ebm_repro.experiments.toy2d.config import toy2d_config

TOY2D = toy2d_config(PARAMS, SETTING)

TOY2D_TARGETS = [
    f"{PREFIX}results/figures/toy2d.png",
    f"{PREFIX}results/figures/toy2d.pdf",
    f"{PREFIX}results/toy2d/metrics.json",
]


rule train_toy2d:
    """Train and evaluate each recipe on each toy density; figure + distances (metrics.json)."""
    output:
        png=report(TOY2D_TARGETS[0], caption="../report/toy2d.rst",
                   category="Toy 2-D densities (check; no paper figure)"),
        pdf=TOY2D_TARGETS[1],
        metrics=TOY2D_TARGETS[2],
    log:
        f"{PREFIX}logs/toy2d/train_toy2d.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/toy2d/train_toy2d.tsv"
    threads: 1
    params:
        setting=SETTING,
        cfg=TOY2D.hash(),
    shell:
        f"{PY} -m ebm_repro toy2d --setting {{params.setting}} --threads {{threads}} "
        "--out-png {output.png} --out-pdf {output.pdf} --out-json {output.metrics} > {log} 2>&1"
