"""Rule retrieve (reduce): per-shard neighbour lists -> global top-k per test document."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
steps.merge_shards(snakemake.input.parts, snakemake.input.test, snakemake.output[0], snakemake.params.k)
