# Map: search one shard for the queries of every task and split (ids and distances). Reduce: merge the shards'
# lists into a global top-k and read the kept neighbours' texts by row (their whole documents with
# retrieve.neighbor_text: document).
# {split} is test (the evaluated documents) or valid (held-out documents for choosing a method's parameter).


rule search_shard:
    input:
        index=R("index/{corpus}/{embedder}/{faiss_index}/{shard}.faiss"),
        chunks=R("chunks/{corpus}/{embedder}/{shard}.parquet"),
        queries=expand(R("embeddings/{{corpus}}/{{embedder}}/queries/{split}/{task}.npy"), split=SPLITS, task=ALL_TASKS),
        test=expand(R("corpus/{{corpus}}/{split}/{task}.parquet"), split=SPLITS, task=ALL_TASKS),
        docs=shard_docs,
        vectors=shard_vectors,
    output:
        expand(
            R("neighbors/{{corpus}}/{{embedder}}/{{faiss_index}}/{split}/{task}/{{shard}}.parquet"),
            split=SPLITS,
            task=ALL_TASKS,
        ),
    log:
        R("logs/search/{corpus}/{embedder}/{faiss_index}/{shard}.log"),
    benchmark:
        R("benchmarks/search/{corpus}/{embedder}/{faiss_index}/{shard}.tsv")
    conda:
        "../../envs/tttnn.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=job_res("search_shard", "mem_mb", search_mem_mb),
        runtime=rule_runtime(config, "search_shard"),
        gpu=job_res("search_shard", "gpus", config["index"]["search_gpus"]),
    params:
        retrieve={k: config["retrieve"][k] for k in ("k", "max_distance", "drop_exact")},
        nprobe=config["index"]["nprobe"],
        rerank=config["index"]["rerank"],
    script:
        "../scripts/search_shard.py"


rule retrieve:
    input:
        parts=expand(
            R("neighbors/{{corpus}}/{{embedder}}/{{faiss_index}}/{{split}}/{{task}}/{shard}.parquet"), shard=SHARDS
        ),
        chunks=expand(R("chunks/{{corpus}}/{{embedder}}/{shard}.parquet"), shard=SHARDS),
        docs=all_shard_docs,
        test=R("corpus/{corpus}/{split}/{task}.parquet"),
    output:
        R("neighbors/{corpus}/{embedder}/{faiss_index}/{split}/{task}.parquet"),
    log:
        R("logs/retrieve/{corpus}/{embedder}/{faiss_index}/{split}/{task}.log"),
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=job_res("retrieve", "mem_mb", 2000),
        runtime=rule_runtime(config, "retrieve"),
    params:
        k=config["retrieve"]["k"],
    script:
        "../scripts/retrieve.py"


# The index-size ablation: the same queries against the first {nshards} shards only (reusing the map outputs).
rule retrieve_subset:
    input:
        parts=subset_parts,
        chunks=expand(R("chunks/{{corpus}}/{{embedder}}/{shard}.parquet"), shard=SHARDS),
        docs=all_shard_docs,
        test=R("corpus/{corpus}/{split}/{task}.parquet"),
    output:
        R("neighbors/{corpus}/{embedder}/{faiss_index}/{split}/shards-{nshards}/{task}.parquet"),
    log:
        R("logs/retrieve/{corpus}/{embedder}/{faiss_index}/{split}/shards-{nshards}/{task}.log"),
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=job_res("retrieve_subset", "mem_mb", 2000),
        runtime=rule_runtime(config, "retrieve_subset"),
    params:
        k=config["retrieve"]["k"],
    script:
        "../scripts/retrieve.py"


# retrieve.k against the whole index, from the chunk tables' metadata: jobs that take k steps without reading
# the neighbours (dynamic evaluation) wait for this instead of running k steps of an impossible setting.
rule check_k:
    input:
        chunks=expand(R("chunks/{{corpus}}/{{embedder}}/{shard}.parquet"), shard=SHARDS),
    output:
        R("checks/{corpus}/{embedder}/k-{k}.ok"),
    log:
        R("logs/check_k/{corpus}/{embedder}/k-{k}.log"),
    wildcard_constraints:
        k=r"\d+",
    conda:
        "../../envs/tttnn.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/check_k.py"
