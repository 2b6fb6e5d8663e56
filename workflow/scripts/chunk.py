"""Rule chunk: one shard's documents -> retrieval chunks."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
steps.chunk_shard(snakemake.input[0], snakemake.output[0], snakemake.params.chunk, snakemake.params.tokenizer)
