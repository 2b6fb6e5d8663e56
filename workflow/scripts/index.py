"""Rule index: one shard's embeddings -> a faiss index."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
logs.set_threads(snakemake.threads)
with logs.cpu_slot(snakemake.threads):
    steps.index_shard(snakemake.input[0], snakemake.output[0], snakemake.params.index)
