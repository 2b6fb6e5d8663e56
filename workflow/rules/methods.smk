# Baselines and ablations of the paper, one rule each, for every trained model (methods.models). `methods.jobs`
# cuts them into jobs: per_task, one job per (model, task) (the paper's scale: a task's job fits a GPU job's time
# limit, a failure redoes one task); per_model, one job per model over every task of corpus.tasks (one model load
# and start-up; a run restricted with `tasks` reuses it). Either way each task's file holds the same records: a
# method treats documents one by one with per-document seeds, and interpolation's alpha is chosen per task
# afterwards (summarize_methods). A job writes one JSONL line per document as it finishes (resumable,
# fingerprinted) and publishes its files together, with the same metric code as TTT. With cluster blocks
# (cluster.max_runtime, cluster.block_docs), one job per block of a task's documents, merged per task.


rule incontext:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        neighbors=method_files(R(f"neighbors/{RETRIEVAL}/test/{{task}}.parquet")),
        test=method_files(R(f"corpus/{CORPUS}/test/{{task}}.parquet")),
    output:
        method_output("baselines/{run}/{model}/incontext"),
    log:
        method_job_file("logs", "incontext/{run}/{model}", ".log"),
    benchmark:
        method_job_file("benchmarks", "incontext/{run}/{model}", ".tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_res("incontext", "mem_mb"),
        runtime=model_res("incontext", "runtime"),
        gpu=model_res("incontext", "gpus"),
    params:
        ttt=model_ttt_no_training,
        method="incontext",
        methods=method_params("incontext"),
        retrieve=RETRIEVE_QUERY,
        **block_params("incontext"),
    script:
        "../scripts/method.py"


rule interpolation:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        neighbors=method_files(R(f"neighbors/{RETRIEVAL}/test/{{task}}.parquet")),
        test=method_files(R(f"corpus/{CORPUS}/test/{{task}}.parquet")),
    output:
        method_output("baselines/{run}/{model}/interpolation"),
    log:
        method_job_file("logs", "interpolation/{run}/{model}", ".log"),
    benchmark:
        method_job_file("benchmarks", "interpolation/{run}/{model}", ".tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_res("interpolation", "mem_mb"),
        runtime=model_res("interpolation", "runtime"),
        gpu=model_res("interpolation", "gpus"),
    params:
        ttt=model_ttt_no_training,
        method="interpolation",
        methods=method_params("interpolation"),
        retrieve=RETRIEVE_QUERY,
        **block_params("interpolation"),
    script:
        "../scripts/method.py"


rule interpolation_valid:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        neighbors=method_files(R(f"neighbors/{RETRIEVAL}/valid/{{task}}.parquet")),
        test=method_files(R(f"corpus/{CORPUS}/valid/{{task}}.parquet")),
    output:
        method_output("baselines/{run}/{model}/interpolation_valid"),
    log:
        method_job_file("logs", "interpolation_valid/{run}/{model}", ".log"),
    benchmark:
        method_job_file("benchmarks", "interpolation_valid/{run}/{model}", ".tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_res("interpolation_valid", "mem_mb"),
        runtime=model_res("interpolation_valid", "runtime"),
        gpu=model_res("interpolation_valid", "gpus"),
    params:
        ttt=model_ttt_no_training,
        method="interpolation_valid",
        methods=method_params("interpolation_valid"),
        retrieve=RETRIEVE_QUERY,
        **block_params("interpolation_valid"),
    script:
        "../scripts/method.py"


rule dynamic_eval:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        lr=lr_table_file,
        # takes k steps without reading the neighbours: waits until k is known to fit the index
        k_fits=R(f"checks/{CORPUS}/{EMBEDDER}/k-{config['retrieve']['k']}.ok"),
        test=method_files(R(f"corpus/{CORPUS}/test/{{task}}.parquet")),
    output:
        method_output("baselines/{run}/{model}/dynamic_eval"),
    log:
        method_job_file("logs", "dynamic_eval/{run}/{model}", ".log"),
    benchmark:
        method_job_file("benchmarks", "dynamic_eval/{run}/{model}", ".tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_res("dynamic_eval", "mem_mb"),
        runtime=model_res("dynamic_eval", "runtime"),
        gpu=model_res("dynamic_eval", "gpus"),
    params:
        ttt=model_ttt,
        method="dynamic_eval",
        methods=method_params("dynamic_eval"),
        retrieve=RETRIEVE_QUERY,
        **block_params("dynamic_eval"),
    script:
        "../scripts/method.py"


rule order:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        lr=lr_table_file,
        neighbors=method_files(R(f"neighbors/{RETRIEVAL}/test/{{task}}.parquet")),
        test=method_files(R(f"corpus/{CORPUS}/test/{{task}}.parquet")),
    output:
        method_output("baselines/{run}/{model}/order-{order}"),
    log:
        method_job_file("logs", "order/{run}/{model}/{order}", ".log"),
    benchmark:
        method_job_file("benchmarks", "order/{run}/{model}/{order}", ".tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_res("order", "mem_mb"),
        runtime=model_res("order", "runtime"),
        gpu=model_res("order", "gpus"),
    params:
        ttt=model_ttt,
        method="order",
        methods=method_params("order"),
        retrieve=RETRIEVE_QUERY,
        **block_params("order"),
    script:
        "../scripts/method.py"


rule index_size:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        lr=lr_table_file,
        neighbors=method_files(R(f"neighbors/{RETRIEVAL}/test/shards-{{nshards}}/{{task}}.parquet")),
        test=method_files(R(f"corpus/{CORPUS}/test/{{task}}.parquet")),
    output:
        method_output("baselines/{run}/{model}/index_size-{nshards}"),
    log:
        method_job_file("logs", "index_size/{run}/{model}/{nshards}", ".log"),
    benchmark:
        method_job_file("benchmarks", "index_size/{run}/{model}/{nshards}", ".tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_res("index_size", "mem_mb"),
        runtime=model_res("index_size", "runtime"),
        gpu=model_res("index_size", "gpus"),
    params:
        ttt=model_ttt,
        method="index_size",
        methods=method_params("index_size"),
        retrieve=RETRIEVE_QUERY,
        **block_params("index_size"),
    script:
        "../scripts/method.py"
