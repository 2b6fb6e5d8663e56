# Models are prepared once into resources/models/: a compute job (dequantizing a GGUF takes minutes and GBs),
# reading a hub model only from its copy fetched on the submit host (resources/hub/, workflow/rules/fetch.smk).


rule prepare_model:
    input:
        model_download,
    output:
        directory(os.path.join(RESOURCES, "models/{model}")),
    log:
        R("logs/prepare_model/{model}.log"),
    benchmark:
        R("benchmarks/prepare_model/{model}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_prepare_mem,
        runtime=60,
    params:
        source=model_source,
        join_dir=os.path.join(RESOURCES, "gguf"),
    script:
        "../scripts/prepare_model.py"


rule ttt:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        lr=lr_table_file,
        neighbors=R(f"neighbors/{RETRIEVAL}/test/{{task}}.parquet"),
        test=R(f"corpus/{CORPUS}/test/{{task}}.parquet"),
    output:
        R("ttt/{run}/{model}/{task}.jsonl"),
    log:
        R("logs/ttt/{run}/{model}/{task}.log"),
    benchmark:
        R("benchmarks/ttt/{run}/{model}/{task}.tsv")
    wildcard_constraints:
        model=TRAINED_RE,
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_res("ttt", "mem_mb"),
        runtime=model_res("ttt", "runtime"),
        gpu=model_res("ttt", "gpus"),
    params:
        ttt=model_ttt,
        query=config["retrieve"]["query"],
        split_max_tokens=config["retrieve"]["split_max_tokens"],
        n_docs=model_docs,
    script:
        "../scripts/ttt.py"


# A model without TTT (train: false) needs one evaluation per document: one job for all tasks, so a
# large model is loaded once. It does not depend on the retrieval (a new index does not redo it), so this
# longest single job can start as soon as the corpus is built and run beside embedding and search
# (priority: it is taken first among the jobs ready at that moment).
rule evaluate:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        test=expand(R(f"corpus/{CORPUS}/test/{{task}}.parquet"), task=ALL_TASKS),
    output:
        expand(R("ttt/{{run}}/{{model}}/{task}.jsonl"), task=ALL_TASKS),
    log:
        R("logs/evaluate/{run}/{model}.log"),
    benchmark:
        R("benchmarks/evaluate/{run}/{model}.tsv")
    wildcard_constraints:
        model=UNTRAINED_RE,
    priority: 1
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_res("evaluate", "mem_mb"),
        runtime=model_res("evaluate", "runtime"),
        gpu=model_res("evaluate", "gpus"),
    params:
        ttt=model_ttt,
        query=config["retrieve"]["query"],
        split_max_tokens=config["retrieve"]["split_max_tokens"],
        n_docs=model_docs,
    script:
        "../scripts/ttt.py"
