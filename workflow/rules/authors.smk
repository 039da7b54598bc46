# The authors' released checkpoints, evaluated like our trained models (params.yaml `inception.authors_checkpoints`).
# An entry whose file exists when Snakemake builds the DAG is imported into results/train/authors_<variant>/
# and sampled, scored and plotted by the same commands as our rows (rules sample_model, compute_metrics,
# plot_samples); the inception table then gets an "authors' checkpoint" row beside the entry's `beside` row.
# An absent file adds no job: the table footer names the file that would add the row. dvc.yaml is generated
# without these jobs (workflow/scripts/dvc_from_snakemake.py): they are Snakemake-only.
import glob

from ebm_repro.experiments.inception import AUTHORS_SOURCE_ARCHS

AUTHORS = PARAMS["inception"].get("authors_checkpoints", [])
AUTHORS_BY_VARIANT = {e["variant"]: e for e in AUTHORS}  # config.py: at most one entry per variant


def authors_files(entry):
    """The files of an entry: a TF checkpoint prefix stands for its .index and .data-* shards."""
    path = f"{PREFIX}{entry['path']}"
    if entry["source"] == "igebm_tf":
        return [f"{path}.index"] + sorted(glob.glob(glob.escape(path) + ".data-*"))
    return [path]


def authors_fit(entry):
    """The current preset's net for the variant is one the entry's format can fill (paper_text's Fig. 15b is not)."""
    return run_config(entry["variant"]).hp.model.arch in AUTHORS_SOURCE_ARCHS[entry["source"]]


AUTHORS_PRESENT = [e for e in AUTHORS if os.path.exists(authors_files(e)[0]) and authors_fit(e)]
AUTHORS_KEYS = [f"authors_{e['variant']}/{e['mode']}" for e in AUTHORS_PRESENT]
AUTHORS_METRICS = [f"{PREFIX}results/metrics/{k}.json" for k in AUTHORS_KEYS]
AUTHORS_GRIDS = [f"{PREFIX}results/figures/samples_{k.replace('/', '_')}.png" for k in AUTHORS_KEYS]


rule import_authors_checkpoint:
    """Map the authors' variables onto our network (strict) and write our model.pt format with an `imported` record."""
    input:
        lambda w: authors_files(AUTHORS_BY_VARIANT[w.variant]),
    output:
        f"{PREFIX}results/train/authors_{{variant}}/model.pt",
    log:
        f"{PREFIX}logs/import_authors_{{variant}}.log",
    params:
        source=lambda w: AUTHORS_BY_VARIANT[w.variant]["source"],
        path=lambda w: f"{PREFIX}{AUTHORS_BY_VARIANT[w.variant]['path']}",
        trust=lambda w: " --trust-pickle" if AUTHORS_BY_VARIANT[w.variant].get("trust_pickle") else "",
        config_hash=lambda w: run_config(w.variant).hash(),  # model_args and config are written into model.pt
    threads: 1
    shell:
        "{CLI} import-checkpoint {ARGS} --source {params.source} --variant {wildcards.variant} "
        "--path {params.path} --out {output}{params.trust} > {log} 2>&1"


use rule sample_model as sample_authors_model with:
    input:
        model=rules.import_authors_checkpoint.output[0],
    output:
        f"{PREFIX}results/samples/authors_{{variant}}/{{mode}}.npz",
    log:
        f"{PREFIX}logs/sample_authors_{{variant}}_{{mode}}.log",


use rule compute_metrics as compute_authors_metrics with:
    input:
        samples=rules.sample_authors_model.output[0],
        reference=lambda w: f"{variant_data(w)}/train.npz",
        feature_net=FEATURE_NET,
    output:
        f"{PREFIX}results/metrics/authors_{{variant}}/{{mode}}.json",
    log:
        f"{PREFIX}logs/metrics_authors_{{variant}}_{{mode}}.log",


use rule plot_samples as plot_authors_samples with:
    input:
        rules.sample_authors_model.output[0],
    output:
        png=report(f"{PREFIX}results/figures/samples_authors_{{variant}}_{{mode}}.png",
                   caption="../report/samples_authors.rst", category=CAT_GENERATION),
        pdf=f"{PREFIX}results/figures/samples_authors_{{variant}}_{{mode}}.pdf",
    log:
        f"{PREFIX}logs/plot_authors_{{variant}}_{{mode}}.log",
