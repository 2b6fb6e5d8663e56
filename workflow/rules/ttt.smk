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
        runtime=rule_runtime(config, "prepare_model"),
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
        doc_output("ttt/{run}/{model}/{task}"),
    log:
        doc_job_file("logs", "ttt/{run}/{model}/{task}", ".log"),
    benchmark:
        doc_job_file("benchmarks", "ttt/{run}/{model}/{task}", ".tsv")
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
        **block_params("ttt"),
    script:
        "../scripts/ttt.py"


# A model without TTT (train: false) needs one evaluation per document: one job for all tasks, so a
# large model is loaded once. It does not depend on the retrieval (a new index does not redo it), so this
# longest single job can start as soon as the corpus is built and run beside embedding and search
# (priority: it is taken first among the jobs ready at that moment). With cluster blocks, one job per block of a task.
rule evaluate:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        test=eval_files(R(f"corpus/{CORPUS}/test/{{task}}.parquet")),
    output:
        eval_files(doc_output("ttt/{run}/{model}/{task}")),
    log:
        eval_job_file("logs"),
    benchmark:
        eval_job_file("benchmarks")
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
        **block_params("evaluate"),
    script:
        "../scripts/ttt.py"
