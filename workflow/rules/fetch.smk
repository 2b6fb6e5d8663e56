# Hub downloads run on the submit host (local rules): compute nodes often have no internet. fetch_hub
# downloads one repository's config, tokenizer and weights into resources/hub/<org--name>; prepare_model
# (a compute job: GGUF dequantization is heavy), chunk, embed and the rest read only that copy, so they
# run with HF_HUB_OFFLINE=1. `snakemake download` runs only these, e.g. on a login node before submitting.


localrules:
    fetch_hub,
    download,


rule fetch_hub:
    output:
        directory(os.path.join(RESOURCES, "hub/{repo}")),
    log:
        R("logs/fetch/{repo}.log"),
    wildcard_constraints:
        repo=HUB_RE,
    conda:
        "../../envs/tttnn.yaml"
    params:
        repo=hub_repo_id,
        weights=hub_weights,
    script:
        "../scripts/fetch.py"


rule download:
    input:
        hub_targets(),
