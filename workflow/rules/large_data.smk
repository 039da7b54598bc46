# E17-E19 manual downloads (params.yaml large_data; src/ebm_repro/datasets_large.py, experiments/large_data.py).
# check_large_dataset always runs: it writes data/<name>/status.json (missing, with the message naming what to
# download and where; or present, with counts and a sha256 manifest). A folder found as Snakemake builds the DAG
# adds the conversion and, through inception.smk / compose_celeba.smk, the training and scoring jobs of its
# variants; an absent one adds none, so every other target runs. dvc.yaml is generated as if every folder were
# absent (workflow/scripts/dvc_from_snakemake.py sets EBM_REPRO_NO_LOCAL_DATA=1): it never depends on local files.
from ebm_repro import datasets_large as DL

LARGE = PARAMS["large_data"]
NO_LOCAL_DATA = os.environ.get("EBM_REPRO_NO_LOCAL_DATA") == "1"
LARGE_PATH = {n: DL.resolve_path(LARGE[n]["path"], PREFIX) for n in DL.SPECS}
LARGE_PRESENT = {n: not NO_LOCAL_DATA and DL.present(n, p) for n, p in LARGE_PATH.items()}
for _n, _ok in LARGE_PRESENT.items():
    if not _ok and not NO_LOCAL_DATA:
        print(f"[ebm-repro] {DL.missing_message(_n, LARGE_PATH[_n])}", file=sys.stderr)


def dataset_ready(dataset):
    """False only for a dataset made from a manual download whose folder is not there."""
    base = DL.base_of(dataset)
    return base is None or LARGE_PRESENT[base]


def large_status(dataset):
    return f"{PREFIX}data/{DL.base_of(dataset)}/status.json"


wildcard_constraints:
    large="|".join(DL.SPECS),
    attribute="|".join(DL.ATTRIBUTES),


rule check_large_dataset:
    """Status of a manual download: missing (and what to fetch), or layout + counts checked, sha256 manifest."""
    input:
        lambda w: [str(p) for p in DL.key_files(w.large, LARGE_PATH[w.large])] if LARGE_PRESENT[w.large] else [],
    output:
        status=f"{PREFIX}data/{{large}}/status.json",
        manifest=f"{PREFIX}data/{{large}}/manifest.sha256",
    log:
        f"{PREFIX}logs/check_large_dataset_{{large}}.log",
    params:
        present=lambda w: LARGE_PRESENT[w.large],  # rerun when the folder appears (Snakemake params trigger)
        entry=lambda w: LARGE[w.large],
    threads: 1
    shell:
        "{CLI} check-large-dataset {ARGS} --name {wildcards.large} --out {output.status} "
        "--manifest {output.manifest} > {log} 2>&1"


rule prepare_large_dataset:
    """Convert a checked download into train.npz / test.npz (images resized to the dataset's size)."""
    input:
        status=rules.check_large_dataset.output.status,
    output:
        train=f"{PREFIX}data/{{large}}/train.npz",
        test=f"{PREFIX}data/{{large}}/test.npz",
        checksums=f"{PREFIX}data/{{large}}/checksums.json",
    log:
        f"{PREFIX}logs/prepare_large_dataset_{{large}}.log",
    params:
        out=lambda w, output: outdir(output.train),
        entry=lambda w: LARGE[w.large],
    threads: 1
    shell:
        "{CLI} prepare-large-dataset {ARGS} --name {wildcards.large} --status {input.status} --out {params.out} "
        "> {log} 2>&1"


rule prepare_attribute_dataset:
    """E19: celebahq128 with labels = one attribute (the data of one conditional model)."""
    input:
        train=f"{PREFIX}data/celebahq128/train.npz",
        test=f"{PREFIX}data/celebahq128/test.npz",
    output:
        train=f"{PREFIX}data/celebahq128_{{attribute}}/train.npz",
        test=f"{PREFIX}data/celebahq128_{{attribute}}/test.npz",
        checksums=f"{PREFIX}data/celebahq128_{{attribute}}/checksums.json",
    log:
        f"{PREFIX}logs/prepare_attribute_dataset_{{attribute}}.log",
    params:
        data=lambda w, input: outdir(input.train),
        out=lambda w, output: outdir(output.train),
    threads: 1
    shell:
        "{CLI} prepare-attribute-dataset {ARGS} --attribute {wildcards.attribute} --data {params.data} --out {params.out} "
        "> {log} 2>&1"
