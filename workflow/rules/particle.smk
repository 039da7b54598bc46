# E10 -- IGEBM §5.1 particle dynamics (Fig. 9): simulate -> train (model x seed) -> rollouts -> diagnose -> report.
# Needs the Snakefile globals PREFIX ("" | "smoke/"), SETTING ("paper" | "smoke"), PARAMS (validated params.yaml)
# and PY (the Python interpreter running Snakemake).
# The `cfg` params carry a hash of the particle sections a rule depends on, so editing them re-runs the rule.

from ebm_repro.experiments.particle.config import ALL_KINDS as PARTICLE_ALL_KINDS, particle_config

PARTICLE = particle_config(PARAMS, SETTING)
PARTICLE_MODELS = list(PARTICLE.kinds)  # the three base kinds, then the enabled Fig. 15c-input variants
PARTICLE_CLI = f"{PY} -m ebm_repro"  # PY: the Snakefile's interpreter (sys.executable)
PARTICLE_SEEDS = list(range(PARTICLE.train.n_seeds))

PARTICLE_TARGETS = [
    f"{PREFIX}results/tables/particle.md",
    f"{PREFIX}results/figures/particle_mse.png",
    f"{PREFIX}results/figures/particle_mse.pdf",
    f"{PREFIX}results/figures/particle_rollouts.png",
    f"{PREFIX}results/figures/particle_rollouts.pdf",
]

CAT_PARTICLE = "E10 Particle dynamics (IGEBM §5.1, Fig. 9)"
REPORT_TABLES["particle"] = CAT_PARTICLE

wildcard_constraints:
    pmodel="|".join(PARTICLE_ALL_KINDS),
    pseed=r"\d+",


rule simulate_particles:
    """4,500/500 ball-in-a-box trajectories (smoke: fewer, shorter), deterministic under data.seed."""
    output:
        data=f"{PREFIX}data/particle/trajectories.npz",
    log:
        f"{PREFIX}logs/particle/simulate_particles.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/particle/simulate_particles.tsv"
    threads: 1
    params:
        setting=SETTING,
        cfg=PARTICLE.section_hash("physics", "data"),
    shell:
        "{PARTICLE_CLI} particle-simulate --setting {params.setting} --threads {threads} "
        "--out {output.data} > {log} 2>&1"


rule train_particle_model:
    """One model (feedforward | ebm_ld | ebm_mppi [| ..._fig15c]) for one seed, trained to the plateau rule."""
    input:
        data=rules.simulate_particles.output.data,
    output:
        ckpt=f"{PREFIX}results/particle/models/{{pmodel}}_seed{{pseed}}.pt",
        history=f"{PREFIX}results/particle/models/{{pmodel}}_seed{{pseed}}.json",
    log:
        f"{PREFIX}logs/particle/train_particle_model_{{pmodel}}_seed{{pseed}}.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/particle/train_particle_model_{{pmodel}}_seed{{pseed}}.tsv"
    threads: PARTICLE.threads
    params:
        setting=SETTING,
        cfg=lambda wildcards: PARTICLE.train_hash(wildcards.pmodel),
    shell:
        "{PARTICLE_CLI} particle-train --setting {params.setting} --threads {threads} "
        "--model {wildcards.pmodel} --seed {wildcards.pseed} --data {input.data} "
        "--out {output.ckpt} --history {output.history} > {log} 2>&1"


rule evaluate_particle_rollouts:
    """Multistep rollouts of every seed of one model on the test trajectories -> MSE per step."""
    input:
        data=rules.simulate_particles.output.data,
        ckpts=expand(f"{PREFIX}results/particle/models/{{{{pmodel}}}}_seed{{pseed}}.pt", pseed=PARTICLE_SEEDS),
    output:
        rollouts=f"{PREFIX}results/particle/rollouts/{{pmodel}}.npz",
    log:
        f"{PREFIX}logs/particle/evaluate_particle_rollouts_{{pmodel}}.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/particle/evaluate_particle_rollouts_{{pmodel}}.tsv"
    threads: PARTICLE.threads
    params:
        setting=SETTING,
        cfg=lambda wildcards: PARTICLE.train_hash(wildcards.pmodel) + PARTICLE.section_hash("eval"),
    shell:
        "{PARTICLE_CLI} particle-evaluate --setting {params.setting} --threads {threads} "
        "--model {wildcards.pmodel} --data {input.data} --ckpts {input.ckpts} "
        "--out {output.rollouts} > {log} 2>&1"


rule diagnose_particle_models:
    """Box exits and speed drift of every rollout; one-step errors at wall bounces and in free flight of each
    seed-0 model; energies of each seed-0 EBM around the truth, along its step and beyond the walls."""
    input:
        data=rules.simulate_particles.output.data,
        rollouts=expand(f"{PREFIX}results/particle/rollouts/{{pmodel}}.npz", pmodel=PARTICLE_MODELS),
        ckpts=expand(f"{PREFIX}results/particle/models/{{pmodel}}_seed0.pt", pmodel=PARTICLE_MODELS),
    output:
        diagnosis=f"{PREFIX}results/particle/diagnosis.json",
        png=report(PARTICLE_TARGETS[3], caption="../report/particle_rollouts.rst", category=CAT_PARTICLE),
        pdf=PARTICLE_TARGETS[4],
    log:
        f"{PREFIX}logs/particle/diagnose_particle_models.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/particle/diagnose_particle_models.tsv"
    threads: 1
    params:
        setting=SETTING,
        cfg=PARTICLE.section_hash("physics", "langevin", "mppi", "eval", "fig15c"),
    shell:
        "{PARTICLE_CLI} particle-diagnose --setting {params.setting} --threads {threads} --data {input.data} "
        "--rollouts {input.rollouts} --ckpts {input.ckpts} --out {output.diagnosis} "
        "--figure-png {output.png} --figure-pdf {output.pdf} > {log} 2>&1"


rule make_particle_report:
    """Fig. 9 analogue (log-scale MSE per step) and the horizon table, with learning-free reference rows; the
    footer quotes the stopping rule's outcome per model and the diagnosis."""
    input:
        data=rules.simulate_particles.output.data,
        rollouts=expand(f"{PREFIX}results/particle/rollouts/{{pmodel}}.npz", pmodel=PARTICLE_MODELS),
        histories=expand(f"{PREFIX}results/particle/models/{{pmodel}}_seed{{pseed}}.json", pmodel=PARTICLE_MODELS,
                         pseed=PARTICLE_SEEDS),
        diagnosis=rules.diagnose_particle_models.output.diagnosis,
    output:
        table=PARTICLE_TARGETS[0],
        png=report(PARTICLE_TARGETS[1], caption="../report/particle_mse.rst", category=CAT_PARTICLE),
        pdf=PARTICLE_TARGETS[2],
        summary=f"{PREFIX}results/particle/summary.json",
    log:
        f"{PREFIX}logs/particle/make_particle_report.log",
    benchmark:
        f"{PREFIX}logs/benchmarks/particle/make_particle_report.tsv"
    threads: 1
    params:
        setting=SETTING,
        cfg=PARTICLE.section_hash("train", "eval", "langevin", "mppi", "fig15c"),  # the table footer quotes them
    shell:
        "{PARTICLE_CLI} particle-report --setting {params.setting} --threads {threads} "
        "--data {input.data} --rollouts {input.rollouts} --histories {input.histories} "
        "--diagnosis {input.diagnosis} --table {output.table} --figure-png {output.png} "
        "--figure-pdf {output.pdf} --summary {output.summary} > {log} 2>&1"
