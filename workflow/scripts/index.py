"""Rule index: one shard's embeddings -> a faiss index."""

from tttnn import logs, steps

with logs.compute_job(snakemake):
    steps.index_shard(snakemake.input[0], snakemake.output[0], snakemake.params.index)
