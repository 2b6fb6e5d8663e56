"""Rule search_shard (map): one shard searched for the queries of every task and split."""

from tttnn import logs, steps

inp, p = snakemake.input, snakemake.params
with logs.compute_job(snakemake):
    steps.search_shard(
        inp.index,
        inp.chunks,
        inp.queries,
        inp.test,
        inp.docs or None,
        snakemake.output,
        p.retrieve,
        p.nprobe,
        snakemake.wildcards.shard,
        inp.vectors or None,
        p.rerank,
        gpus=int(snakemake.resources.gpu),  # index.search_gpus: where it runs, not what it finds
    )
