# tttnn: test-time training on nearest neighbours (Hardt & Sun, ICLR 2024) as a Snakemake workflow.
# `snakemake --cores 8 figures` builds everything the figures need; see README.md.


# The embedded default; a --configfile given on the command line replaces it (no key-by-key merge,
# so e.g. config/pile.yaml does not inherit the default's models).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/chunk.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/retrieve.smk"
include: "workflow/rules/tune_lr.smk"
include: "workflow/rules/ttt.smk"
include: "workflow/rules/methods.smk"
include: "workflow/rules/blocks.smk"
include: "workflow/rules/summarize.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/claims.smk"


localrules:
    all,
    figures,
    plan,
    check_k,


rule all:
    default_target: True
    input:
        all_targets(),
        missing_results(),


rule figures:
    input:
        figure_targets(),
        missing_results(),
