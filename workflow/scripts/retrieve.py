"""Rules retrieve and retrieve_subset (reduce): per-shard neighbour lists -> global top-k per test document."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
inp = snakemake.input
steps.merge_shards(inp.parts, inp.test, snakemake.output[0], snakemake.params.k, inp.chunks, inp.docs)
