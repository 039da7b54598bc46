# E3 / E4 / E14 / E15 -- ICD Tab. 2 (ablation), Fig. 8 (stability), Fig. 13 (KL gradient), App. D.1 (truncation).
# Which variants feed which output: params.yaml `ablation:`; they train through the generic train_model rule.
# Needs the Snakefile globals PREFIX, SETTING, PARAMS, PY and common.smk's ARGS.

AB = PARAMS["ablation"]
AB_ROWS = [r["variant"] for r in AB["ablation_rows"]]
AB_CURVES = [c["variant"] for c in AB["stability_curves"]]
AB_TRUNC = [r["variant"] for r in AB["truncation_rows"]]
TRAIN_DIR = f"{PREFIX}results/train"

ABLATION_TARGETS = [
    f"{PREFIX}results/tables/ablation.md",
    f"{PREFIX}results/figures/stability.png",
    f"{PREFIX}results/figures/stability.pdf",
    f"{PREFIX}results/figures/kl_grad.png",
    f"{PREFIX}results/figures/kl_grad.pdf",
    f"{PREFIX}results/tables/truncation.md",
]


def train_files(variants):
    """What the ablation commands read from each training folder."""
    return [f"{TRAIN_DIR}/{v}/{n}" for v in variants for n in ("train_log.csv", "train_summary.json", "config.yaml")]


def train_dirs(variants):
    return " ".join(f"{TRAIN_DIR}/{v}" for v in variants)


def single_metrics(variants):
    return [f"{PREFIX}results/metrics/{v}/single.json" for v in variants]


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
        rule=AB["stability"],
    threads: 1
    shell:
        "{PY} -m ebm_repro.ablation table-ablation {ARGS} --train-dirs {params.dirs} --metrics {input.metrics} "
        "--out {output} > {log} 2>&1"


rule plot_stability:
    """results/figures/stability.{png,pdf} (E4, ICD Fig. 8): buffer IS and energy gap over training."""
    input:
        runs=train_files(AB_CURVES),
    output:
        png=ABLATION_TARGETS[1],
        pdf=ABLATION_TARGETS[2],
    log:
        f"{PREFIX}logs/plot_stability.log",
    params:
        dirs=train_dirs(AB_CURVES),
        rule=AB["stability"],
        labels=[c["label"] for c in AB["stability_curves"]],
    threads: 1
    shell:
        "{PY} -m ebm_repro.ablation plot-stability {ARGS} --train-dirs {params.dirs} --out {output.png} > {log} 2>&1"


rule plot_kl_grad:
    """results/figures/kl_grad.{png,pdf} (E14, ICD Fig. 13): parameter-gradient norms of L_KL and L_CD."""
    input:
        runs=train_files([AB["kl_grad_variant"]]),
    output:
        png=ABLATION_TARGETS[3],
        pdf=ABLATION_TARGETS[4],
    log:
        f"{PREFIX}logs/plot_kl_grad.log",
    params:
        dirs=train_dirs([AB["kl_grad_variant"]]),
    threads: 1
    shell:
        "{PY} -m ebm_repro.ablation plot-kl-grad {ARGS} --train-dirs {params.dirs} --out {output.png} > {log} 2>&1"


AB_TRUNC_DATA = [f"{PREFIX}data/{run_config(v).dataset}" for v in AB_TRUNC]


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
        steps=AB["timing_steps"][SETTING],
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{PY} -m ebm_repro.ablation time-truncation {ARGS} --threads {threads} --data-dirs {params.dirs} "
        "--out {output} > {log} 2>&1"


rule make_truncation_table:
    """results/tables/truncation.md (E15, ICD App. D.1): MNIST FID and s/iteration, last-step vs all-step L_opt."""
    input:
        runs=train_files(AB_TRUNC),
        metrics=single_metrics(AB_TRUNC),
        grids=[f"{PREFIX}results/figures/samples_{v}_single.png" for v in AB_TRUNC],  # Figs. 18 / 19
        timing=rules.time_truncation_steps.output[0],
    output:
        ABLATION_TARGETS[5],
    log:
        f"{PREFIX}logs/make_truncation_table.log",
    params:
        dirs=train_dirs(AB_TRUNC),
        rows=AB["truncation_rows"],
    threads: 1
    shell:
        "{PY} -m ebm_repro.ablation table-truncation {ARGS} --train-dirs {params.dirs} --metrics {input.metrics} "
        "--timing {input.timing} --out {output} > {log} 2>&1"
