# The audit page (experiments/audit.py) and the HTML pages of the Markdown tables for the Snakemake report.
# Include it after every experiment's rule file: render_report_tables reads REPORT_TABLES as the files left it.
# make_audit_page depends on the *_TARGETS list of every included rule file (looked up when the DAG is built), so
# an experiment whose rule file is not included adds no input and reads "not run" on the page.

AUDIT_TARGETS = [f"{PREFIX}results/audit.md", f"{PREFIX}results/audit.html"]
REPORT_PAGES = [f"{PREFIX}results/report/{t}.html" for t in REPORT_TABLES]


def experiment_targets(wildcards):
    """Every experiment's targets: the *_TARGETS lists the included rule files define (not this file's)."""
    return sorted({str(t) for name, targets in globals().items()
                   if name.endswith("_TARGETS") and name != "AUDIT_TARGETS" for t in targets})


rule make_audit_page:
    """results/audit.{md,html}: every paper number and claim beside this run's value and a verdict."""
    input:
        experiment_targets,
        paper="src/ebm_repro/paper_numbers.yaml",
    output:
        md=AUDIT_TARGETS[0],
        html=report(AUDIT_TARGETS[1], caption="../report/audit.rst", category="Audit: every claim of both papers"),
    log:
        f"{PREFIX}logs/make_audit_page.log",
    params:
        criteria=PARAMS["audit"],
        rule=PARAMS["stability_rule"],
    threads: 1
    shell:
        "{CLI} audit {ARGS} --out {output.md} --html {output.html} > {log} 2>&1"


rule render_report_tables:
    """results/report/<table>.html: each Markdown table as an HTML page (the Snakemake report shows HTML)."""
    input:
        [f"{PREFIX}results/tables/{t}.md" for t in REPORT_TABLES],
    output:
        [report(page, caption=f"../report/{t}.rst", category=cat)
         for page, (t, cat) in zip(REPORT_PAGES, REPORT_TABLES.items())],
    log:
        f"{PREFIX}logs/render_report_tables.log",
    threads: 1
    shell:
        "{CLI} render-html {ARGS} --md {input} --out {output} > {log} 2>&1"
