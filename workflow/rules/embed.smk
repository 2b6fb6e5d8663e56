# A shard is embedded in blocks into a preallocated .npy on disk; a killed job resumes at its last finished block
# (rerun it, e.g. with --rerun-incomplete). embedder.gpus asks the scheduler for GPUs (resource `gpu`). A hub
# embedder (and tokenizer) is read from its copy in resources/hub/ (fetch_hub, on the submit host).
rule embed:
    input:
        unpack(embedder_download),
        texts=R("chunks/{corpus}/{embedder}/{shard}.parquet"),
    output:
        R("embeddings/{corpus}/{embedder}/{shard}.npy"),
    log:
        R("logs/embed/{corpus}/{embedder}/{shard}.log"),
    benchmark:
        R("benchmarks/embed/{corpus}/{embedder}/{shard}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=job_res("embed", "mem_mb", config["embedder"]["mem_mb"]),
        runtime=rule_runtime(config, "embed"),
        gpu=job_res("embed", "gpus", config["embedder"]["gpus"]),
    params:
        embedder=embedder_params(),
        column="text",
    script:
        "../scripts/embed.py"


# every query set (test and validation documents of every task) in one job: one embedder load, on the embedder's
# GPU and memory (embedder.gpus, mem_mb); its runtime is its own (job_resources.embed_queries.runtime)
rule embed_queries:
    input:
        unpack(embedder_download),
        texts=expand(R("corpus/{{corpus}}/{split}/{task}.parquet"), split=SPLITS, task=ALL_TASKS),
    output:
        expand(R("embeddings/{{corpus}}/{{embedder}}/queries/{split}/{task}.npy"), split=SPLITS, task=ALL_TASKS),
    log:
        R("logs/embed/{corpus}/{embedder}/queries.log"),
    benchmark:
        R("benchmarks/embed/{corpus}/{embedder}/queries.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=job_res("embed_queries", "mem_mb", config["embedder"]["mem_mb"]),
        runtime=rule_runtime(config, "embed_queries"),
        gpu=job_res("embed_queries", "gpus", config["embedder"]["gpus"]),
    params:
        embedder=embedder_params(),
        column="query",
        retrieve={k: config["retrieve"][k] for k in ("query", "split_max_tokens")},
    script:
        "../scripts/embed.py"
