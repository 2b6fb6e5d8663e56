"""Rule search_shard (map): one shard searched for all queries of a task."""

from tttnn import logs, steps

logs.to_file(snakemake.log[0])
logs.set_threads(snakemake.threads)
inp = snakemake.input
with logs.cpu_slot(snakemake.threads):
    steps.search_shard(
        inp.index,
        inp.chunks,
        inp.queries,
        inp.test,
        inp.docs or None,
        snakemake.output[0],
        snakemake.params.retrieve,
        snakemake.params.nprobe,
        snakemake.wildcards.shard,
        inp.vectors or None,
        snakemake.params.rerank,
    )
