# E5 -- IGEBM §4.2 / Fig. 2 (experiments/likelihood.py): energies of train vs test images and of q(x) samples.

LIK_VARIANTS = [r["variant"] for r in PARAMS["likelihood"]["rows"]]

CAT_LIKELIHOOD = "E05 Likelihood (IGEBM §4.2, Fig. 2)"
REPORT_TABLES["likelihood"] = CAT_LIKELIHOOD

LIKELIHOOD_TARGETS = [f"{PREFIX}results/tables/likelihood.md", f"{PREFIX}results/figures/energy_hist.png",
                      f"{PREFIX}results/figures/energy_hist.pdf"]


rule score_likelihood:
    """E5: E(x) of each likelihood.rows model on train images, test images and its own samples."""
    input:
        models=[f"{TRAIN_DIR}/{v}/model.pt" for v in LIK_VARIANTS],
        samples=[f"{PREFIX}results/samples/{v}/single.npz" for v in LIK_VARIANTS],
        data=sorted({f"{PREFIX}data/{run_config(v).dataset}/{s}.npz" for v in LIK_VARIANTS for s in ("train", "test")}),
    output:
        energies=f"{PREFIX}results/likelihood/energies.npz",
        meta=f"{PREFIX}results/likelihood/energies.json",
    log:
        f"{PREFIX}logs/score_likelihood.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/likelihood/score_likelihood.tsv"
    params:
        block=PARAMS["likelihood"],
        hashes=[run_config(v).hash() for v in LIK_VARIANTS],
        data_root=f"{PREFIX}data",
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} score-likelihood {ARGS} --threads {threads} --models {input.models} --samples {input.samples} "
        "--data-root {params.data_root} --out {output.energies} > {log} 2>&1"


rule report_likelihood:
    """results/tables/likelihood.md (E5, IGEBM §4.2) and figures/energy_hist.{png,pdf} (IGEBM Fig. 2)."""
    input:
        energies=rules.score_likelihood.output.energies,
        meta=rules.score_likelihood.output.meta,
    output:
        table=LIKELIHOOD_TARGETS[0],  # shown as HTML: REPORT_TABLES
        png=report(LIKELIHOOD_TARGETS[1], caption="../report/energy_hist.rst", category=CAT_LIKELIHOOD),
        pdf=LIKELIHOOD_TARGETS[2],
        summary=f"{PREFIX}results/likelihood/summary.json",
    log:
        f"{PREFIX}logs/report_likelihood.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/likelihood/report_likelihood.tsv"
    params:
        close_within=PARAMS["likelihood"]["close_within"],
    threads: 1
    shell:
        "{CLI} report-likelihood {ARGS} --energies {input.energies} --table {output.table} "
        "--summary {output.summary} --figure {output.png} > {log} 2>&1"
