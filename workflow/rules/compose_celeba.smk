# E19: compositional CelebA-HQ (ICD Tab. 3; src/ebm_repro/experiments/compose_celeba.py). Four conditional models
# (compose_celeba.paper.models, trained by train_model), a ResNet-18 attribute classifier, composed sampling and
# the table. Without CelebA-HQ (large_data.celebahq128) only the table job runs: it reads "not run: dataset missing".
CAT_COMPOSE_CELEBA = "E19 Compositional CelebA-HQ attributes (ICD Fig. 9, Tab. 3)"
REPORT_TABLES["compose_celeba"] = CAT_COMPOSE_CELEBA

COMPOSE_MODELS = [m["variant"] for m in PARAMS["compose_celeba"]["paper"]["models"]]
COMPOSE_DIR = f"{PREFIX}results/compose_celeba"


rule train_attribute_classifier:
    """ResNet-18 on young / female / smiling / wavy hair of CelebA-HQ 128 (scores the composed samples)."""
    input:
        train=f"{PREFIX}data/celebahq128/train.npz",
        test=f"{PREFIX}data/celebahq128/test.npz",
    output:
        model=f"{COMPOSE_DIR}/classifier.pt",
        info=f"{COMPOSE_DIR}/classifier.json",
    log:
        f"{PREFIX}logs/train_attribute_classifier.log",
    params:
        data=lambda w, input: outdir(input.train),
        classifier=lambda w: PARAMS["compose_celeba"],
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} train-attribute-classifier {ARGS} --threads {threads} --data {params.data} --out {output.model} "
        "--info {output.info} > {log} 2>&1"


rule sample_compose_celeba:
    """Sample the sum of the first k models' energies (k = 1..4) and score each sample set with the classifier."""
    input:
        models=[f"{TRAIN_DIR}/{v}/model.pt" for v in COMPOSE_MODELS],
        classifier=rules.train_attribute_classifier.output.model,
        info=rules.train_attribute_classifier.output.info,
    output:
        shares=f"{COMPOSE_DIR}/shares.json",
        png=report(f"{PREFIX}results/figures/compose_celeba.png", caption="../report/compose_celeba_figure.rst",
                   category=CAT_COMPOSE_CELEBA),
        pdf=f"{PREFIX}results/figures/compose_celeba.pdf",
    log:
        f"{PREFIX}logs/sample_compose_celeba.log",
    params:
        sampling=lambda w: PARAMS["compose_celeba"],
    threads: THREADS
    resources:
        gpu=1,
    shell:
        "{CLI} sample-compose-celeba {ARGS} --threads {threads} --models {input.models} "
        "--classifier {input.classifier} --classifier-info {input.info} --out {output.shares} "
        "--figure {output.png} > {log} 2>&1"


rule make_compose_celeba_table:
    """results/tables/compose_celeba.md: our attribute shares beside ICD Tab. 3 (or "not run: dataset missing")."""
    input:
        lambda w: rules.sample_compose_celeba.output.shares if LARGE_PRESENT["celebahq128"]
        else f"{PREFIX}data/celebahq128/status.json",
    output:
        f"{PREFIX}results/tables/compose_celeba.md",  # shown as HTML: REPORT_TABLES
    log:
        f"{PREFIX}logs/make_compose_celeba_table.log",
    params:
        present=LARGE_PRESENT["celebahq128"],
    threads: 1
    shell:
        "{CLI} table-compose-celeba {ARGS} --result {input} --out {output} > {log} 2>&1"


COMPOSE_CELEBA_TARGETS = rules.make_compose_celeba_table.output
