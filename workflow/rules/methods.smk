# Baselines and ablations of the paper, one rule each, for every trained model (methods.models). One job
# runs a method on every task of corpus.tasks (one model load; a run restricted with `tasks` reuses it); it writes one JSONL line per document as it finishes
# (resumable, fingerprinted) and publishes the tasks' files together, with the same metric code as TTT.


rule incontext:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        neighbors=expand(R(f"neighbors/{RETRIEVAL}/test/{{task}}.parquet"), task=ALL_TASKS),
        test=expand(R(f"corpus/{CORPUS}/test/{{task}}.parquet"), task=ALL_TASKS),
    output:
        expand(R("baselines/{{run}}/{{model}}/incontext/{task}.jsonl"), task=ALL_TASKS),
    log:
        R("logs/incontext/{run}/{model}.log"),
    benchmark:
        R("benchmarks/incontext/{run}/{model}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_mem,
        runtime=config["ttt"]["runtime"],
        gpu=config["ttt"]["gpus"],
    params:
        ttt=model_ttt,
        method="incontext",
        methods=method_params("incontext"),
        retrieve=RETRIEVE_QUERY,
    script:
        "../scripts/method.py"


rule interpolation:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        neighbors=expand(R(f"neighbors/{RETRIEVAL}/test/{{task}}.parquet"), task=ALL_TASKS),
        test=expand(R(f"corpus/{CORPUS}/test/{{task}}.parquet"), task=ALL_TASKS),
    output:
        expand(R("baselines/{{run}}/{{model}}/interpolation/{task}.jsonl"), task=ALL_TASKS),
    log:
        R("logs/interpolation/{run}/{model}.log"),
    benchmark:
        R("benchmarks/interpolation/{run}/{model}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_mem,
        runtime=config["ttt"]["runtime"],
        gpu=config["ttt"]["gpus"],
    params:
        ttt=model_ttt,
        method="interpolation",
        methods=method_params("interpolation"),
        retrieve=RETRIEVE_QUERY,
    script:
        "../scripts/method.py"


rule interpolation_valid:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        neighbors=expand(R(f"neighbors/{RETRIEVAL}/valid/{{task}}.parquet"), task=ALL_TASKS),
        test=expand(R(f"corpus/{CORPUS}/valid/{{task}}.parquet"), task=ALL_TASKS),
    output:
        expand(R("baselines/{{run}}/{{model}}/interpolation_valid/{task}.jsonl"), task=ALL_TASKS),
    log:
        R("logs/interpolation_valid/{run}/{model}.log"),
    benchmark:
        R("benchmarks/interpolation_valid/{run}/{model}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_mem,
        runtime=config["ttt"]["runtime"],
        gpu=config["ttt"]["gpus"],
    params:
        ttt=model_ttt,
        method="interpolation_valid",
        methods=method_params("interpolation_valid"),
        retrieve=RETRIEVE_QUERY,
    script:
        "../scripts/method.py"


rule dynamic_eval:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        # takes k steps without reading the neighbours: waits until k is known to fit the index
        k_fits=R(f"checks/{CORPUS}/{EMBEDDER}/k-{config['retrieve']['k']}.ok"),
        test=expand(R(f"corpus/{CORPUS}/test/{{task}}.parquet"), task=ALL_TASKS),
    output:
        expand(R("baselines/{{run}}/{{model}}/dynamic_eval/{task}.jsonl"), task=ALL_TASKS),
    log:
        R("logs/dynamic_eval/{run}/{model}.log"),
    benchmark:
        R("benchmarks/dynamic_eval/{run}/{model}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_mem,
        runtime=config["ttt"]["runtime"],
        gpu=config["ttt"]["gpus"],
    params:
        ttt=model_ttt,
        method="dynamic_eval",
        methods=method_params("dynamic_eval"),
        retrieve=RETRIEVE_QUERY,
    script:
        "../scripts/method.py"


rule order:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        neighbors=expand(R(f"neighbors/{RETRIEVAL}/test/{{task}}.parquet"), task=ALL_TASKS),
        test=expand(R(f"corpus/{CORPUS}/test/{{task}}.parquet"), task=ALL_TASKS),
    output:
        expand(R("baselines/{{run}}/{{model}}/order-{{order}}/{task}.jsonl"), task=ALL_TASKS),
    log:
        R("logs/order/{run}/{model}/{order}.log"),
    benchmark:
        R("benchmarks/order/{run}/{model}/{order}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_mem,
        runtime=config["ttt"]["runtime"],
        gpu=config["ttt"]["gpus"],
    params:
        ttt=model_ttt,
        method="order",
        methods=method_params("order"),
        retrieve=RETRIEVE_QUERY,
    script:
        "../scripts/method.py"


rule index_size:
    input:
        model=os.path.join(RESOURCES, "models/{model}"),
        neighbors=expand(R(f"neighbors/{RETRIEVAL}/test/shards-{{{{nshards}}}}/{{task}}.parquet"), task=ALL_TASKS),
        test=expand(R(f"corpus/{CORPUS}/test/{{task}}.parquet"), task=ALL_TASKS),
    output:
        expand(R("baselines/{{run}}/{{model}}/index_size-{{nshards}}/{task}.jsonl"), task=ALL_TASKS),
    log:
        R("logs/index_size/{run}/{model}/{nshards}.log"),
    benchmark:
        R("benchmarks/index_size/{run}/{model}/{nshards}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=model_mem,
        runtime=config["ttt"]["runtime"],
        gpu=config["ttt"]["gpus"],
    params:
        ttt=model_ttt,
        method="index_size",
        methods=method_params("index_size"),
        retrieve=RETRIEVE_QUERY,
    script:
        "../scripts/method.py"
