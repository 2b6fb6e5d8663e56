# ttt.lr: auto: the TTT learning rate chosen per model on the held-out validation documents (tttnn.methods.lr_tune).
# A checkpoint: the training rules read the chosen rate as a param once it is known (common.smk, tuned_lr).


checkpoint tune_lr:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        neighbors=expand(R(f"neighbors/{RETRIEVAL}/valid/{{task}}.parquet"), task=ALL_TASKS),
        valid=expand(R(f"corpus/{CORPUS}/valid/{{task}}.parquet"), task=ALL_TASKS),
    output:
        R("lr/{run}/{model}.csv"),
    log:
        R("logs/tune_lr/{run}/{model}.log"),
    benchmark:
        R("benchmarks/tune_lr/{run}/{model}.tsv")
    wildcard_constraints:
        model=TRAINED_RE,
    priority: 1  # every training job of the model waits for it
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_res("tune_lr", "mem_mb"),
        runtime=model_res("tune_lr", "runtime"),
        gpu=model_res("tune_lr", "gpus"),
    params:
        tune=lr_tune_params,
        query=config["retrieve"]["query"],
        split_max_tokens=config["retrieve"]["split_max_tokens"],
    script:
        "../scripts/tune_lr.py"


rule lr_table:
    input:
        lr_tables(),
    output:
        table=report(R("tables/{run}/lr.csv"), caption="../report/lr.rst", category="Tables"),
        pdf=R("figures/{run}/lr.pdf"),
        png=report(R("figures/{run}/lr.png"), caption="../report/lr.rst", category="Figures"),
    log:
        R("logs/lr_table/{run}.log"),
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/lr_table.py"
