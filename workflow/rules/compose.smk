# E11 -- IGEBM §6 / Fig. 10 (src/ebm_repro/experiments/compose/): compositional generation on dSprites.
# dataset (prepare_dataset: the checksummed archive; smoke: the procedural renderer) -> one conditional EBM per
# attribute (scale, position, rotation, shape) and the latent regressor -> joint sampling of every composition in
# compose.rows -> attribute-recovery table + Fig. 10 analogue. Needs the Snakefile globals PARAMS, SETTING, PREFIX
# and common.smk's CLI / ARGS. The `cfg` params hash the compose sections a rule reads, so editing them re-runs it.

from ebm_repro.experiments.compose.config import ATTRIBUTES as COMPOSE_ATTRIBUTES, compose_config

COMPOSE = compose_config(PARAMS, SETTING)
COMPOSE_DATA = f"{PREFIX}data/{COMPOSE.dataset}"
COMPOSE_DIR = f"{PREFIX}results/compose"

CAT_COMPOSE = "E11 Compositional generation on dSprites (IGEBM §6, Fig. 10)"
REPORT_TABLES["compose"] = CAT_COMPOSE

COMPOSE_TARGETS = [
    f"{PREFIX}results/tables/compose.md",
    f"{PREFIX}results/figures/dsprites_compose.png",
    f"{PREFIX}results/figures/dsprites_compose.pdf",
]

wildcard_constraints:
    cattr="|".join(COMPOSE_ATTRIBUTES),


rule train_compose_model:
    """One conditional dSprites EBM (IGEBM DspritesNet) on its attribute, held-out combinations removed; resumes
    from results/compose/ckpt/<attribute>.pt after an interruption."""
    input:
        train=f"{COMPOSE_DATA}/train.npz",
    output:
        model=f"{COMPOSE_DIR}/models/{{cattr}}.pt",
    log:
        f"{PREFIX}logs/compose/train_compose_model_{{cattr}}.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/compose/train_compose_model_{{cattr}}.tsv"
    threads: COMPOSE.threads
    resources:
        gpu=1,
    params:
        data=lambda w, input: outdir(input.train),
        ckpt=lambda w: f"{COMPOSE_DIR}/ckpt/{w.cattr}.pt",
        cfg=lambda w: COMPOSE.train_hash(w.cattr),
    shell:
        "{CLI} compose-train {ARGS} --threads {threads} --attribute {wildcards.cattr} --data {params.data} "
        "--out {output.model} --ckpt {params.ckpt} > {log} 2>&1"


rule train_compose_regressor:
    """The measuring instrument: scale / position / rotation / shape read off an image, trained on real dSprites."""
    input:
        train=f"{COMPOSE_DATA}/train.npz",
        test=f"{COMPOSE_DATA}/test.npz",
    output:
        f"{COMPOSE_DIR}/regressor.pt",
    log:
        f"{PREFIX}logs/compose/train_compose_regressor.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/compose/train_compose_regressor.tsv"
    threads: COMPOSE.threads
    resources:
        gpu=1,
    params:
        data=lambda w, input: outdir(input.train),
        cfg=COMPOSE.section_hash("dataset", "image_size", "regressor"),
    shell:
        "{CLI} compose-regressor {ARGS} --threads {threads} --data {params.data} --out {output} > {log} 2>&1"


rule sample_compose:
    """Joint Langevin sampling of each composition (sum of energies) for in-distribution and held-out targets."""
    input:
        test=f"{COMPOSE_DATA}/test.npz",
        models=expand(f"{COMPOSE_DIR}/models/{{cattr}}.pt", cattr=COMPOSE_ATTRIBUTES),
    output:
        f"{COMPOSE_DIR}/samples.npz",
    log:
        f"{PREFIX}logs/compose/sample_compose.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/compose/sample_compose.tsv"
    threads: COMPOSE.threads
    resources:
        gpu=1,
    params:
        data=lambda w, input: outdir(input.test),
        cfg=COMPOSE.section_hash("joint", "rows", "eval", "chain_init", "held_out"),
    shell:
        "{CLI} compose-sample {ARGS} --threads {threads} --data {params.data} --models {input.models} "
        "--out {output} > {log} 2>&1"


rule evaluate_compose:
    """Attribute recovery of the samples (results/tables/compose.md) and the IGEBM Fig. 10 analogue."""
    input:
        samples=rules.sample_compose.output[0],
        regressor=rules.train_compose_regressor.output[0],
    output:
        table=COMPOSE_TARGETS[0],  # shown as HTML: REPORT_TABLES
        png=report(COMPOSE_TARGETS[1], caption="../report/dsprites_compose.rst", category=CAT_COMPOSE),
        pdf=COMPOSE_TARGETS[2],
        summary=f"{COMPOSE_DIR}/summary.json",
    log:
        f"{PREFIX}logs/compose/evaluate_compose.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/compose/evaluate_compose.tsv"
    threads: 1
    params:
        cfg=COMPOSE.section_hash("joint", "rows", "eval", "held_out", "claims"),
    shell:
        "{CLI} compose-evaluate {ARGS} --threads {threads} --samples {input.samples} --regressor {input.regressor} "
        "--table {output.table} --figure {output.png} --summary {output.summary} > {log} 2>&1"
